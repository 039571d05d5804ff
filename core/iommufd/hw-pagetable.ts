/**
 * Hardware page tables (drivers/iommu/iommufd/hw_pagetable.c): a PAGING hwpt
 * on an IOAS (stage 2, possibly a nest parent) or a NESTED hwpt on a nest
 * parent whose stage 1 is the guest's `vtd_s1` table. Either may deliver its
 * faults to a fault queue (FAULT_ID_VALID).
 */
import { IommuError } from '../iommu/errors.js';
import type { IommuDomain } from '../iommu/iommu.js';
import { IommufdFault } from './eventq.js';
import { IommufdIoas } from './ioas.js';
import { IommufdObject, type IommufdCtx } from './main.js';
import type { IommufdDevice } from './device.js';
import type { IommufdViommu } from './viommu.js';

export const IOMMU_HWPT_ALLOC_NEST_PARENT = 1;
export const IOMMU_HWPT_ALLOC_DIRTY_TRACKING = 2;
export const IOMMU_HWPT_FAULT_ID_VALID = 4;
export const IOMMU_HWPT_ALLOC_PASID = 8;
const PAGING_FLAGS = IOMMU_HWPT_ALLOC_NEST_PARENT | IOMMU_HWPT_ALLOC_DIRTY_TRACKING | IOMMU_HWPT_FAULT_ID_VALID | IOMMU_HWPT_ALLOC_PASID;
const NESTED_FLAGS = IOMMU_HWPT_FAULT_ID_VALID | IOMMU_HWPT_ALLOC_PASID;

/** Common part of both hwpt kinds (struct iommufd_hw_pagetable). */
export abstract class IommufdHwpt extends IommufdObject {
  abstract override readonly type: 'hwpt_paging' | 'hwpt_nested';
  domain: IommuDomain | undefined;
  fault: IommufdFault | undefined;
  flags = 0;
  /** The IOMMU instance whose devices may attach (hwpts are per IOMMU). */
  iommuName = '';

  get pasidCapable(): boolean {
    return (this.flags & IOMMU_HWPT_ALLOC_PASID) !== 0;
  }

  /** Link to `fault`: its handler becomes the domain's iopf_handler. */
  linkFault(fault: IommufdFault): void {
    this.fault = fault;
    fault.users++;
    this.domain!.iopfHandler = fault.handler;
    this.domain!.iopfRevoke = fault.revoke;
    this.domain!.iopfRevokeDone = fault.revokeDone;
  }

  unlinkFault(): void {
    if (this.fault) this.fault.users--;
    this.fault = undefined;
  }
}

/** IOMMUFD_OBJ_HWPT_PAGING. */
export class IommufdHwptPaging extends IommufdHwpt {
  readonly type = 'hwpt_paging' as const;
  ioas: IommufdIoas | undefined;
  /** Created by attaching a device straight to an IOAS; destroyed with its last attachment. */
  auto = false;

  get nestParent(): boolean {
    return (this.flags & IOMMU_HWPT_ALLOC_NEST_PARENT) !== 0;
  }

  describe(): Record<string, unknown> {
    return {
      ioas_id: this.ioas?.id,
      flags: this.flags,
      nest_parent: this.nestParent,
      fault_id: this.fault?.id,
      ...(this.auto ? { auto: true } : {}),
    };
  }

  destroy(): void {
    if (this.domain && this.ioas) this.ioas.removeDomain(this.domain);
    if (this.ioas) this.ioas.users--;
    this.ioas = undefined;
    this.unlinkFault();
    if (this.domain) this.domain.ops.domainFree(this.domain);
    this.domain = undefined;
  }
}

/** IOMMUFD_OBJ_HWPT_NESTED. */
export class IommufdHwptNested extends IommufdHwpt {
  readonly type = 'hwpt_nested' as const;
  parent: IommufdHwptPaging | undefined;
  pgtblAddr = 0n;
  addrWidth: 48 | 57 = 48;
  /** Made on a vIOMMU (arm_smmuv3): the vIOMMU, and the guest STE words. */
  viommu: IommufdViommu | undefined;
  ste: readonly [bigint, bigint] | undefined;
  /** vtd_s1 flags (VTD_S1_*). */
  s1Flags = 0;

  describe(): Record<string, unknown> {
    if (this.viommu) {
      return {
        viommu_id: this.viommu.id,
        flags: this.flags,
        data_type: 'arm_smmuv3',
        ste: (this.ste ?? [0n, 0n]).map((w) => `0x${w.toString(16)}`),
        fault_id: this.fault?.id,
      };
    }
    return {
      parent_id: this.parent?.id,
      flags: this.flags,
      data_type: 'vtd_s1',
      pgtbl_addr: `0x${this.pgtblAddr.toString(16)}`,
      addr_width: this.addrWidth,
      ...(this.s1Flags !== 0 ? { s1_flags: this.s1Flags } : {}),
      fault_id: this.fault?.id,
    };
  }

  /**
   * IOMMU_HWPT_INVALIDATE (VTD_S1), as intel_nested_cache_invalidate_user():
   * per entry, flags other than LEAF → EOPNOTSUPP; an addr not 4 KiB aligned,
   * or npages U64_MAX with a non-zero addr → EINVAL; npages U64_MAX with
   * addr 0 flushes everything; npages 0 is accepted and flushes nothing
   * (the kernel does not refuse it). LEAF (only leaf entries changed) is a
   * hint the model does not need: it caches leaf translations only.
   * Processing stops at the first bad entry. Returns the entries handled;
   * an error carries them as `done` (the kernel's entry_num).
   */
  invalidate(entries: ReadonlyArray<{ addr: bigint; npages: number | bigint; flags?: number }>): number {
    let done = 0;
    for (const e of entries) {
      const flags = e.flags ?? 0;
      if (flags & ~IOMMU_VTD_INV_FLAGS_LEAF) throw new IommuError('EOPNOTSUPP', `invalidation flags 0x${(flags & ~IOMMU_VTD_INV_FLAGS_LEAF).toString(16)} are not supported (entry ${done})`, done);
      if ((e.addr & 0xfffn) !== 0n) throw new IommuError('EINVAL', `invalidation addr must be 4 KiB aligned (entry ${done})`, done);
      const all = BigInt(e.npages) === U64_MAX;
      if (all && e.addr !== 0n) throw new IommuError('EINVAL', `npages all-ones needs addr 0 (entry ${done})`, done);
      const ops = this.domain!.ops;
      if (all) ops.cacheInvalidateUser(this.domain!, 0n, undefined);
      else if (BigInt(e.npages) !== 0n) ops.cacheInvalidateUser(this.domain!, e.addr, e.npages);
      done++;
    }
    return done;
  }

  destroy(): void {
    if (this.parent) this.parent.users--;
    this.parent = undefined;
    if (this.viommu) this.viommu.users--;
    this.viommu = undefined;
    this.unlinkFault();
    if (this.domain) this.domain.ops.domainFree(this.domain);
    this.domain = undefined;
  }
}

export interface HwptAllocRequest {
  dev_id: number;
  pt_id: number;
  flags?: number;
  data_type?: 'vtd_s1' | 'arm_smmuv3';
  data?: { flags: number; pgtbl_addr: bigint; addr_width: number } | { ste: readonly [bigint, bigint] };
  fault_id?: number;
  __reserved?: number;
}

/**
 * IOMMU_HWPT_ALLOC (iommufd_hwpt_alloc). Errnos, in the kernel's order:
 * EOPNOTSUPP for __reserved ≠ 0; EINVAL when data_type and data disagree;
 * ENOENT for a bad dev_id; EINVAL when pt_id is absent or cannot be a parent;
 * EOPNOTSUPP for flags the kind does not accept (DIRTY_TRACKING is not
 * supported; NEST_PARENT|FAULT_ID_VALID is refused); ENOENT when
 * FAULT_ID_VALID names no fault queue — the new hwpt is aborted then.
 */
export function iommufdHwptAlloc(ictx: IommufdCtx, req: HwptAllocRequest): IommufdHwpt {
  if ((req.__reserved ?? 0) !== 0) throw new IommuError('EOPNOTSUPP', '__reserved must be 0');
  const flags = req.flags ?? 0;
  if ((req.data_type === undefined) !== (req.data === undefined)) {
    throw new IommuError('EINVAL', 'data_type and data must be given together');
  }
  const idev = ictx.get<IommufdDevice>(req.dev_id, 'device');
  const pt = ictx.find(req.pt_id);
  if (!pt) throw new IommuError('EINVAL', `pt_id ${req.pt_id} names no object`);

  let hwpt: IommufdHwpt;
  if (pt instanceof IommufdIoas) {
    if (req.data_type !== undefined) throw new IommuError('EOPNOTSUPP', 'a paging hwpt takes no driver data');
    if (flags & ~PAGING_FLAGS) throw new IommuError('EOPNOTSUPP', `hwpt flags 0x${(flags & ~PAGING_FLAGS).toString(16)} are not supported`);
    if (flags & IOMMU_HWPT_ALLOC_DIRTY_TRACKING) throw new IommuError('EOPNOTSUPP', 'dirty tracking is not supported');
    if ((flags & IOMMU_HWPT_ALLOC_NEST_PARENT) && (flags & IOMMU_HWPT_FAULT_ID_VALID)) {
      throw new IommuError('EOPNOTSUPP', 'a nest parent cannot take a fault queue (NEST_PARENT|FAULT_ID_VALID)');
    }
    hwpt = ictx.create(new IommufdHwptPaging(ictx), (h) => {
      h.flags = flags;
      h.iommuName = idev.phys.iommuName;
      ictx.mayFail('domain');
      h.domain = idev.phys.dev.ops.domainAllocPaging(idev.phys.dev, (flags & IOMMU_HWPT_ALLOC_NEST_PARENT) !== 0);
      h.domain.owner = h;
      pt.addDomain(h.domain);
      h.ioas = pt;
      pt.users++;
      if (flags & IOMMU_HWPT_FAULT_ID_VALID) h.linkFault(lookupFault(ictx, req.fault_id));
    });
  } else if (pt.type === 'viommu') {
    hwpt = viommuAllocHwptNested(ictx, pt as IommufdViommu, flags, req);
  } else if (pt instanceof IommufdHwptPaging) {
    if (!pt.nestParent) throw new IommuError('EINVAL', `hwpt ${pt.id} is not a nest parent`);
    if (req.data_type !== 'vtd_s1' || !req.data || !('pgtbl_addr' in req.data)) throw new IommuError('EINVAL', 'a nested hwpt needs data_type "vtd_s1" and data');
    if (flags & ~NESTED_FLAGS) throw new IommuError('EOPNOTSUPP', `nested hwpt flags 0x${(flags & ~NESTED_FLAGS).toString(16)} are not supported`);
    if (pt.iommuName !== idev.phys.iommuName) throw new IommuError('EINVAL', `hwpt ${pt.id} belongs to another IOMMU`);
    const data = req.data;
    if (data.flags & ~IOMMU_VTD_S1_FLAGS) throw new IommuError('EOPNOTSUPP', `vtd_s1 flags 0x${(data.flags & ~IOMMU_VTD_S1_FLAGS).toString(16)} are not supported (SRE 1, EAFE 2, WPE 4)`);
    if (data.addr_width !== 48 && data.addr_width !== 57) throw new IommuError('EINVAL', 'addr_width must be 48 or 57');
    if ((data.pgtbl_addr & 0xfffn) !== 0n) throw new IommuError('EINVAL', 'pgtbl_addr must be 4 KiB aligned');
    const addrWidth: 48 | 57 = data.addr_width;
    hwpt = ictx.create(new IommufdHwptNested(ictx), (h) => {
      h.flags = flags;
      h.iommuName = idev.phys.iommuName;
      h.pgtblAddr = data.pgtbl_addr;
      h.addrWidth = addrWidth;
      h.s1Flags = data.flags;
      ictx.mayFail('domain');
      h.domain = idev.phys.dev.ops.domainAllocNested(idev.phys.dev, pt.domain!, { pgtblAddr: data.pgtbl_addr, addrWidth, flags: data.flags });
      h.domain.owner = h;
      h.parent = pt;
      pt.users++;
      if (flags & IOMMU_HWPT_FAULT_ID_VALID) h.linkFault(lookupFault(ictx, req.fault_id));
    });
  } else {
    throw new IommuError('EINVAL', `pt_id ${req.pt_id} is a ${pt.type}, which cannot be a page table parent`);
  }
  return hwpt;
}

/**
 * iommufd_viommu_alloc_hwpt_nested: a NESTED hwpt whose stage 1 the vIOMMU's
 * driver builds from the guest data (arm_smmuv3: the STE, validated as
 * arm_smmu_validate_vste, EIO when bad). EINVAL when data_type is not the
 * vIOMMU's; flags other than FAULT_ID_VALID go to the driver (EOPNOTSUPP).
 */
function viommuAllocHwptNested(ictx: IommufdCtx, viommu: IommufdViommu, flags: number, req: HwptAllocRequest): IommufdHwptNested {
  if (req.data_type !== viommu.vtype || !req.data || !('ste' in req.data)) throw new IommuError('EINVAL', `a nested hwpt on vIOMMU ${viommu.id} needs data_type "${viommu.vtype}" and data {ste}`);
  const ste = req.data.ste;
  return ictx.create(new IommufdHwptNested(ictx), (h) => {
    h.flags = flags;
    h.iommuName = viommu.iommuName;
    ictx.mayFail('domain');
    h.domain = viommu.driver!.allocDomainNested(flags & ~IOMMU_HWPT_FAULT_ID_VALID, ste);
    h.domain.owner = h;
    h.viommu = viommu;
    viommu.users++;
    h.ste = ste;
    if (flags & IOMMU_HWPT_FAULT_ID_VALID) h.linkFault(lookupFault(ictx, req.fault_id));
  });
}

function lookupFault(ictx: IommufdCtx, faultId: number | undefined): IommufdFault {
  const obj = faultId === undefined ? undefined : ictx.find(faultId);
  if (!(obj instanceof IommufdFault)) throw new IommuError('ENOENT', `fault_id ${String(faultId)} names no fault queue`);
  return obj;
}

/** IOMMU_VTD_S1_SRE | IOMMU_VTD_S1_EAFE | IOMMU_VTD_S1_WPE (uAPI): the vtd_s1 flags accepted. */
export const IOMMU_VTD_S1_FLAGS = 1 | 2 | 4;

/** IOMMU_VTD_INV_FLAGS_LEAF - an invalidation entry's flag: only leaf entries changed. */
export const IOMMU_VTD_INV_FLAGS_LEAF = 1;
const U64_MAX = 0xffff_ffff_ffff_ffffn;

/** IOMMU_HWPT_INVALIDATE: nested hwpts only; a paging hwpt → EOPNOTSUPP (no cache_invalidate_user). */
export function iommufdHwptInvalidate(
  ictx: IommufdCtx,
  hwptId: number,
  entries: ReadonlyArray<{ addr: bigint; npages: number | bigint; flags?: number }>,
): number {
  const hwpt = ictx.get<IommufdHwpt>(hwptId, 'hwpt_paging', 'hwpt_nested');
  if (!(hwpt instanceof IommufdHwptNested)) throw new IommuError('EOPNOTSUPP', `hwpt ${hwptId} is a paging hwpt: stage 2 invalidates itself on unmap`);
  if (hwpt.viommu) throw new IommuError('EOPNOTSUPP', `hwpt ${hwptId} is nested on vIOMMU ${hwpt.viommu.id}: invalidate through the vIOMMU`);
  return hwpt.invalidate(entries);
}
