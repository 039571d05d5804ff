/**
 * vIOMMU and vDEVICE objects (drivers/iommu/iommufd/viommu.c): a vIOMMU is
 * the VM's view of one physical IOMMU instance, made on a nest-parent paging
 * hwpt of a device behind that instance; a vDEVICE names a device inside it
 * by its virtual id (for arm_smmuv3: the vSID). Nested hwpts made on a vIOMMU
 * (hw-pagetable.ts), its vEVENTQs (veventq.ts) and its vDEVICEs hold it.
 */
import { IommuError } from '../iommu/errors.js';
import type { IommuDevice } from '../iommu/iommu.js';
import type { IommuViommu, IommuViommuInvalidateResult, IommuViommuType } from '../iommu/viommu.js';
import type { IommufdDevice } from './device.js';
import type { IommufdHwptPaging } from './hw-pagetable.js';
import { IommufdObject, type IommufdCtx } from './main.js';
import { iommufdViommuReportEvent, type IommufdVeventq } from './veventq.js';

/** The largest virt_id (the kernel keeps it in an unsigned long). */
const VIRT_ID_MAX = (1n << 64n) - 1n;

/** IOMMUFD_OBJ_VIOMMU. */
export class IommufdViommu extends IommufdObject {
  readonly type = 'viommu' as const;
  /** virt_id → vDEVICE. */
  readonly vdevs = new Map<bigint, IommufdVdevice>();
  /** One vEVENTQ per type. */
  readonly veventqs = new Map<IommuViommuType, IommufdVeventq>();
  hwpt: IommufdHwptPaging | undefined = undefined;
  driver: IommuViommu | undefined = undefined;
  /** The physical IOMMU instance (devices behind another one cannot join). */
  iommuName = '';

  constructor(
    ictx: IommufdCtx,
    readonly vtype: IommuViommuType,
  ) {
    super(ictx);
  }

  describe(): Record<string, unknown> {
    return {
      viommu_type: this.vtype,
      hwpt_id: this.hwpt?.id,
      vdevices: [...this.vdevs.values()].map((v) => v.id),
      veventqs: [...this.veventqs.values()].map((q) => q.id),
    };
  }

  destroy(): void {
    if (this.driver) this.driver.free();
    this.driver = undefined;
    if (this.hwpt) this.hwpt.users--;
    this.hwpt = undefined;
  }
}

/** IOMMUFD_OBJ_VDEVICE. */
export class IommufdVdevice extends IommufdObject {
  readonly type = 'vdevice' as const;

  constructor(
    ictx: IommufdCtx,
    readonly viommu: IommufdViommu,
    readonly idev: IommufdDevice,
    readonly virtId: bigint,
  ) {
    super(ictx);
  }

  describe(): Record<string, unknown> {
    return { viommu_id: this.viommu.id, dev_id: this.idev.id, virt_id: `0x${this.virtId.toString(16)}` };
  }

  destroy(): void {
    if (this.viommu.vdevs.get(this.virtId) === this) {
      this.viommu.vdevs.delete(this.virtId);
      this.viommu.users--;
    }
    if (vdevOf.get(this.idev) === this) vdevOf.delete(this.idev);
  }
}

/** idev->vdev: the vDEVICE of a device (the latest kernel keeps at most one per device). */
const vdevOf = new WeakMap<IommufdDevice, IommufdVdevice>();

/** iommufd_device_remove_vdev: the vDEVICE of @idev goes with it (called as the device is unbound). */
export function iommufdDeviceRemoveVdev(idev: IommufdDevice): void {
  const v = vdevOf.get(idev);
  if (v && idev.ictx.find(v.id) === v) idev.ictx.destroyObject(v.id);
}

/**
 * IOMMU_VIOMMU_ALLOC (iommufd_viommu_alloc_ioctl): a vIOMMU of @type for
 * device @dev_id on the nest-parent paging hwpt @hwpt_id. ENOENT for a bad
 * device or hwpt; EINVAL when the hwpt is not a nest parent; EOPNOTSUPP for
 * flags, or when the device's IOMMU has no such vIOMMU (not the SMMUv3 model);
 * EINVAL when the hwpt belongs to another IOMMU instance.
 */
export function iommufdViommuAlloc(ictx: IommufdCtx, req: { type: IommuViommuType; dev_id: number; hwpt_id: number; flags?: number }): IommufdViommu {
  if ((req.flags ?? 0) !== 0) throw new IommuError('EOPNOTSUPP', 'vIOMMU flags must be 0');
  const idev = ictx.get<IommufdDevice>(req.dev_id, 'device');
  const hwpt = ictx.get<IommufdHwptPaging>(req.hwpt_id, 'hwpt_paging');
  const dev = idev.phys.dev;
  if (!dev.ops.viommuAlloc) throw new IommuError('EOPNOTSUPP', `the IOMMU of device ${idev.phys.name} has no vIOMMU support`);
  if (!hwpt.nestParent) throw new IommuError('EINVAL', `hwpt ${hwpt.id} is not a nest parent`);
  return ictx.create(new IommufdViommu(ictx, req.type), (v) => {
    ictx.mayFail('domain');
    v.driver = dev.ops.viommuAlloc!(dev, hwpt.domain!, req.type);
    v.iommuName = idev.phys.iommuName;
    v.hwpt = hwpt;
    hwpt.users++;
    v.driver.hooks = {
      findDev: (virtId) => v.vdevs.get(virtId)?.idev.phys.dev,
      getVdevId: (d: IommuDevice) => {
        for (const [id, vd] of v.vdevs) if (vd.idev.phys.dev === d) return id;
        return undefined;
      },
      reportEvent: (type, data) => iommufdViommuReportEvent(v, type, data),
    };
  });
}

/**
 * IOMMU_VDEVICE_ALLOC (iommufd_vdevice_alloc_ioctl): name device @dev_id as
 * @virt_id inside vIOMMU @viommu_id. ENOENT for a bad vIOMMU or device;
 * EINVAL when the device sits behind another IOMMU instance or virt_id is out
 * of range; EEXIST when the device already has a vDEVICE or the virt_id is
 * taken on this vIOMMU.
 */
export function iommufdVdeviceAlloc(ictx: IommufdCtx, req: { viommu_id: number; dev_id: number; virt_id: bigint }): IommufdVdevice {
  if (req.virt_id < 0n || req.virt_id > VIRT_ID_MAX) throw new IommuError('EINVAL', 'virt_id must be a u64');
  const viommu = ictx.get<IommufdViommu>(req.viommu_id, 'viommu');
  const idev = ictx.get<IommufdDevice>(req.dev_id, 'device');
  if (idev.phys.iommuName !== viommu.iommuName) throw new IommuError('EINVAL', `device ${idev.phys.name} sits behind ${idev.phys.iommuName}, vIOMMU ${viommu.id} is of ${viommu.iommuName}`);
  const existing = vdevOf.get(idev);
  if (existing) throw new IommuError('EEXIST', `device ${idev.id} already has vDEVICE ${existing.id}`);
  const taken = viommu.vdevs.get(req.virt_id);
  if (taken) throw new IommuError('EEXIST', `virt_id 0x${req.virt_id.toString(16)} is vDEVICE ${taken.id} of vIOMMU ${viommu.id}`);
  return ictx.create(new IommufdVdevice(ictx, viommu, idev, req.virt_id), (vd) => {
    viommu.vdevs.set(req.virt_id, vd);
    viommu.users++;
    vdevOf.set(idev, vd);
  });
}

/**
 * IOMMU_HWPT_INVALIDATE on a vIOMMU (arm_vsmmu_cache_invalidate): run the
 * guest's commands; returns how many ran and the error that stopped them.
 * ENOENT for a bad id; EOPNOTSUPP when the data type is not the vIOMMU's.
 */
export function iommufdViommuInvalidate(
  ictx: IommufdCtx,
  viommuId: number,
  dataType: IommuViommuType,
  cmds: ReadonlyArray<readonly [bigint, bigint]>,
): IommuViommuInvalidateResult {
  const viommu = ictx.get<IommufdViommu>(viommuId, 'viommu');
  if (dataType !== viommu.vtype) throw new IommuError('EOPNOTSUPP', `vIOMMU ${viommuId} takes ${viommu.vtype} commands`);
  return viommu.driver!.cacheInvalidate(cmds);
}
