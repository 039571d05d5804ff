/**
 * Shared Virtual Addressing: the other user of the generic IOPF framework
 * (drivers/iommu/iommu-sva.c). Its faults never reach user space: the handler
 * queues the group on the IOPF work queue, and the work resolves each fault
 * against the process address space, then answers once.
 */
import {
  IOMMU_PAGE_RESP_INVALID,
  IOMMU_PAGE_RESP_SUCCESS,
  IommuAttachHandle,
  iommuAttachGroupHandle,
  iommuDetachGroupHandle,
  iommuIopfPut,
  type IommuDevice,
  type IommuDomain,
  type IopfGroup,
} from '../iommu/iommu.js';
import { iopfFreeGroup, iopfGroupResponse, iopfQueueFlushDev, iopfQueueWork } from './io-pgfault.js';

/** The process side of SVA (struct mm_struct + handle_mm_fault), supplied by the platform. */
export interface IommuSvaMm {
  /** Root of the process page table (vtd_s1 format, host physical). */
  readonly pgd: bigint;
  readonly addrWidth: 48 | 57;
  /** handle_mm_fault: make `addr` accessible with `perm`; false if the VMA forbids it. */
  handleMmFault(addr: bigint, perm: number): boolean;
}

/** struct iommu_sva: a bond between a device PASID and an mm. */
export class IommuSva extends IommuAttachHandle {
  constructor(
    domain: IommuDomain,
    readonly dev: IommuDevice,
    readonly pasid: number,
    readonly mm: IommuSvaMm,
  ) {
    super(domain);
  }
}

/** iommu_sva_handle_iopf's work: resolve each fault; the first failure decides the group. */
function svaResolve(group: IopfGroup, mm: IommuSvaMm): void {
  let code: 0 | 1 = IOMMU_PAGE_RESP_SUCCESS;
  for (let i = 0; i < group.faultCount; i++) {
    const f = group.faultAt(i);
    if (!mm.handleMmFault(f.prm.addr, f.prm.perm)) {
      code = IOMMU_PAGE_RESP_INVALID;
      break;
    }
  }
  iopfGroupResponse(group, code);
  iopfFreeGroup(group);
}

/**
 * iommu_sva_bind_device: attach an SVA domain for `mm` at (dev, pasid).
 * EBUSY if the PASID is taken; ENODEV if the device cannot fault.
 */
export function iommuSvaBindDevice(dev: IommuDevice, pasid: number, mm: IommuSvaMm): IommuSva {
  const domain = dev.ops.domainAllocSva(dev, mm.pgd, mm.addrWidth);
  // A fault-capable attachment: the attach below puts the device on the iopf
  // queue if it is the first (ENODEV when the driver refuses).
  domain.iopfHandler = (group) => {
    iopfQueueWork(group.faultParam.queue, group.dev, () => svaResolve(group, mm));
    return 0;
  };
  const handle = new IommuSva(domain, dev, pasid, mm);
  domain.owner = handle;
  try {
    iommuAttachGroupHandle(dev, pasid, handle);
  } catch (e) {
    dev.ops.domainFree(domain);
    throw e;
  }
  return handle;
}

/**
 * iommu_sva_unbind_device: flush the device's pending SVA work first
 * (iopf_queue_flush_dev), so every group it holds is answered, then detach
 * the domain and free it.
 */
export function iommuSvaUnbindDevice(handle: IommuSva): void {
  iopfQueueFlushDev(handle.dev);
  iommuDetachGroupHandle(handle.dev, handle.pasid);
  // Requests drained from hardware during the detach may have queued more work.
  iopfQueueFlushDev(handle.dev);
  iommuIopfPut(handle.dev, handle);
  handle.dev.ops.domainFree(handle.domain);
}
