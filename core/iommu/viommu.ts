/**
 * The driver half of a vIOMMU (struct iommufd_viommu's driver part and its
 * struct iommufd_viommu_ops), as the IOMMU core passes it between iommufd and
 * an IOMMU driver. iommufd owns the object (core/iommufd/viommu.ts) and fills
 * in the hooks the driver calls back into (the kernel's driver.c exports:
 * iommufd_viommu_find_dev, iommufd_viommu_get_vdev_id,
 * iommufd_viommu_report_event).
 */
import type { IommuDevice, IommuDomain } from './iommu.js';

/** enum iommu_viommu_type / iommu_veventq_type, by wire name. */
export type IommuViommuType = 'arm_smmuv3';

/** What iommufd lends the driver of one vIOMMU. */
export interface IommuViommuHooks {
  /** iommufd_viommu_find_dev: the device whose vDEVICE has @virtId, or undefined. */
  findDev(virtId: bigint): IommuDevice | undefined;
  /** iommufd_viommu_get_vdev_id: the virt_id of @dev's vDEVICE on this vIOMMU, or undefined. */
  getVdevId(dev: IommuDevice): bigint | undefined;
  /**
   * iommufd_viommu_report_event: queue @data (the type's record, as le64
   * words) on the vIOMMU's vEVENTQ of @type. Returns 0, or a negative errno
   * when no such vEVENTQ exists (the event is then the host's to log).
   */
  reportEvent(type: IommuViommuType, data: readonly bigint[]): number;
}

/** The outcome of a vIOMMU cache invalidation: commands handled, and the error that stopped it. */
export interface IommuViommuInvalidateResult {
  done: number;
  /** The errno and message of the first command refused (processing stopped there). */
  error?: { errno: 'EIO' | 'EINVAL' | 'EOPNOTSUPP'; message: string };
}

/** struct iommufd_viommu's driver half with its iommufd_viommu_ops. */
export interface IommuViommu {
  readonly type: IommuViommuType;
  /** The nest-parent (stage-2) domain the vIOMMU was made on. */
  readonly s2Parent: IommuDomain;
  /** Set by iommufd once the object exists; cleared when it goes. */
  hooks: IommuViommuHooks | undefined;
  /**
   * alloc_domain_nested: a NESTED domain from the guest's @data (for
   * arm_smmuv3: the STE's two words). @flags are the hwpt flags the core
   * leaves to the driver (FAULT_ID_VALID already taken out). Throws
   * IommuError (EOPNOTSUPP for flags, EIO for bad data).
   */
  allocDomainNested(flags: number, data: readonly [bigint, bigint]): IommuDomain;
  /** cache_invalidate: run @cmds (two le64 words each) in order, stopping at the first bad one. */
  cacheInvalidate(cmds: ReadonlyArray<readonly [bigint, bigint]>): IommuViommuInvalidateResult;
  /** The vIOMMU is being destroyed (no nested domain of it remains). */
  free(): void;
}
