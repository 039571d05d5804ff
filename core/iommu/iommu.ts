/**
 * The IOMMU core: the objects of include/linux/iommu.h that the IOPF framework,
 * the drivers and iommufd share. Domains, groups, attach handles keyed by
 * (device, pasid), fault records and groups, and the driver interface.
 */
import type { IommuViommu, IommuViommuType } from './viommu.js';
import type { Scheduler } from '../sched.js';
import { IommuError } from './errors.js';
import { GroupList, ListNode } from './group-list.js';
import { LATEST_PROFILE, type IopfProfile } from './profiles.js';

/** The RID slot of an IOMMU group's pasid array (kernel IOMMU_NO_PASID). */
export const IOMMU_NO_PASID = 0;

/** prm.flags bits (kernel IOMMU_FAULT_PAGE_REQUEST_*, v6.10+ numbering). */
export const IOMMU_FAULT_PAGE_REQUEST_PASID_VALID = 1 << 0;
export const IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE = 1 << 1;
export const IOMMU_FAULT_PAGE_RESPONSE_NEEDS_PASID = 1 << 2;

/** prm.perm bits (same values as the uAPI's IOMMU_PGFAULT_PERM_*). */
export const IOMMU_FAULT_PERM_READ = 1 << 0;
export const IOMMU_FAULT_PERM_WRITE = 1 << 1;
export const IOMMU_FAULT_PERM_EXEC = 1 << 2;
export const IOMMU_FAULT_PERM_PRIV = 1 << 3;

/** enum iommu_page_response_code. */
export const IOMMU_PAGE_RESP_SUCCESS = 0;
export const IOMMU_PAGE_RESP_INVALID = 1;
export const IOMMU_PAGE_RESP_FAILURE = 2;
export type IommuPageResponseCode = 0 | 1 | 2;

/** The page-request payload of struct iommu_fault (prm). */
export interface IommuFaultPageRequest {
  flags: number;
  pasid: number;
  grpid: number;
  perm: number;
  addr: bigint;
}

/** struct iopf_fault: one page request as the core holds it. */
export interface IopfFault {
  prm: IommuFaultPageRequest;
}

/**
 * An iopf_fault as a driver reports it: one object that is both the fault
 * and its page request (the kernel embeds prm in struct iopf_fault; here
 * `prm` is the record itself), so a request costs one allocation. Made by a
 * constructor, never a literal: V8 decides per literal site whether to
 * allocate straight in the old generation, and a daemon that once held
 * 100,000 groups (all surviving) would otherwise allocate every later,
 * short-lived fault there.
 */
export class IopfFaultRecord implements IopfFault, IommuFaultPageRequest {
  /** fault.prm: this record. */
  readonly prm: IommuFaultPageRequest = this;

  constructor(
    public flags: number,
    public pasid: number,
    public grpid: number,
    public perm: number,
    public addr: bigint,
  ) {}
}

/** struct iommu_page_response: what the driver sends back to the hardware. */
export interface IommuPageResponse {
  pasid: number;
  grpid: number;
  code: IommuPageResponseCode;
}

/**
 * Driver interface (struct iommu_ops + domain ops, reduced to what the
 * simulation needs). Implemented by core/drivers/sim-iommu.
 */
export interface IommuOps {
  /** Driver name and model, for listings. */
  readonly name: string;
  /** The kernel release's IOPF-core behaviour (read by iommu_report_device_fault even for a device off the iopf queue). */
  readonly profile: IopfProfile;
  /** ops->user_pasid_table: a PASID fault may fall back to a NESTED domain at the RID. */
  readonly userPasidTable: boolean;
  /** ops->page_response: send one page group response to the hardware (`resp` is only valid during the call). */
  pageResponse(dev: IommuDevice, lastFault: IopfFault, resp: IommuPageResponse): void;
  /** Allocate a paging (stage-2 capable) domain for `dev`. */
  domainAllocPaging(dev: IommuDevice, nestParent: boolean): IommuDomain;
  /** Allocate a NESTED domain whose stage 1 is a guest `vtd_s1` table on `parent`. */
  domainAllocNested(dev: IommuDevice, parent: IommuDomain, s1: { pgtblAddr: bigint; addrWidth: 48 | 57; flags: number }): IommuDomain;
  /** Allocate an SVA domain whose stage 1 is a process page table rooted at `pgd` (no stage 2). */
  domainAllocSva(dev: IommuDevice, pgd: bigint, addrWidth: 48 | 57): IommuDomain;
  /** Free a domain (no attachment may remain). */
  domainFree(domain: IommuDomain): void;
  /** Map one 4 KiB page into a paging domain. */
  domainMapPage(domain: IommuDomain, iova: bigint, hpa: bigint, read: boolean, write: boolean): void;
  /**
   * Back a paging domain lazily (or stop, with undefined): a lookup of a page
   * the domain does not hold asks @fill, which answers the IOAS's page
   * (allocated on its first touch) or undefined, and the domain keeps the
   * answer until domainUnmapPage.
   */
  domainSetFill(domain: IommuDomain, fill: ((iova: bigint) => { hpa: bigint; read: boolean; write: boolean } | undefined) | undefined): void;
  /** Unmap one 4 KiB page from a paging domain and flush every cached translation that used it. */
  domainUnmapPage(domain: IommuDomain, iova: bigint): void;
  /** Invalidate stage-1 IOTLB entries of a nested domain ([addr, addr + npages pages); npages undefined: all). */
  cacheInvalidateUser(domain: IommuDomain, addr: bigint, npages: number | bigint | undefined): void;
  /** Program (or clear, with undefined) the translation of (dev, pasid). */
  setDevPasid(dev: IommuDevice, pasid: number, domain: IommuDomain | undefined): void;
  /**
   * Put the device on the IOMMU's iopf queue for its first fault-capable
   * attachment (VT-d intel_iommu_enable_iopf, SMMUv3 arm_smmu_enable_iopf,
   * the selftest's mock_dev_enable_iopf), with the model's conditions.
   * Throws IommuError (ENODEV, EINVAL) and changes nothing when refused.
   */
  enableIopf(dev: IommuDevice): void;
  /** Take the device off the iopf queue after its last fault-capable attachment went (iopf_queue_remove_device). */
  disableIopf(dev: IommuDevice): void;
  /**
   * Process every page request still queued in hardware for `dev` (and
   * `pasid`, when given) before an attachment goes away, so no report for the
   * old handle is in flight (VT-d intel_iommu_drain_pasid_prq).
   */
  drainPageRequests(dev: IommuDevice, pasid?: number): void;
  /**
   * viommu_alloc: the driver half of a vIOMMU of @type for @dev on the nest
   * parent @parent (core/iommu/viommu.ts). Absent when the driver has none
   * (iommufd then refuses with EOPNOTSUPP).
   */
  viommuAlloc?(dev: IommuDevice, parent: IommuDomain, type: IommuViommuType): IommuViommu;
}

export type IommuDomainType = 'paging' | 'nested' | 'sva';

let nextDomainId = 1;

/** struct iommu_domain. `iopfHandler` non-null marks the domain fault capable. */
export class IommuDomain {
  /** A small unique number; the hardware uses it as the IOTLB tag (domain id). */
  readonly id = nextDomainId++;
  /** iopf_handler: 0 if it took ownership of the group, non-zero (negative errno) otherwise. */
  iopfHandler: ((group: IopfGroup) => number) | undefined = undefined;
  /**
   * Called by iopf_queue_remove_device() before it answers a group this
   * domain's handler still holds, so the handler drops it from its own queues
   * (the single-owner rule; the real kernel's iopf_queue_remove_device lacks it).
   */
  iopfRevoke: ((group: IopfGroup) => void) | undefined = undefined;
  /** Called once by iopf_queue_remove_device() after its iopfRevoke calls (to batch notices). */
  iopfRevokeDone: (() => void) | undefined = undefined;
  /** Owner's back pointer (the iommufd hwpt, or the SVA binding). */
  owner: unknown = undefined;
  /** Driver-private state (the hardware tables). */
  priv: unknown = undefined;
  /** Number of (device, pasid) slots this domain is installed in. */
  attachCount = 0;

  constructor(
    readonly type: IommuDomainType,
    readonly ops: IommuOps,
    readonly parent: IommuDomain | undefined = undefined,
  ) {}
}

/** struct iommu_attach_handle: what sits in a group's pasid array. Embedded by its users. */
export class IommuAttachHandle {
  /** This attachment holds one of the device's fault-capable references (iommuIopfGet). */
  iopfRef = false;

  constructor(readonly domain: IommuDomain) {}
}

/**
 * The group's pasid array (an xarray in the kernel): pasid → attach handle.
 * The RID's own slot (IOMMU_NO_PASID) is a field, since every request
 * without a PASID looks it up; other PASIDs live in a map.
 */
export class PasidArray {
  private rid: IommuAttachHandle | undefined = undefined;
  private readonly pasids = new Map<number, IommuAttachHandle>();

  get(pasid: number): IommuAttachHandle | undefined {
    return pasid === IOMMU_NO_PASID ? this.rid : this.pasids.get(pasid);
  }

  has(pasid: number): boolean {
    return this.get(pasid) !== undefined;
  }

  set(pasid: number, handle: IommuAttachHandle): void {
    if (pasid === IOMMU_NO_PASID) this.rid = handle;
    else this.pasids.set(pasid, handle);
  }

  delete(pasid: number): void {
    if (pasid === IOMMU_NO_PASID) this.rid = undefined;
    else this.pasids.delete(pasid);
  }
}

/** struct iommu_group: one per device in the simulation; the pasid array lives here. */
export class IommuGroup {
  /** pasid (IOMMU_NO_PASID for the RID) → attach handle. */
  readonly pasidArray = new PasidArray();
}

/** struct iommu_fault_param: per-device fault state while IOPF is enabled. */
export class IommuFaultParam {
  /** Non-last requests waiting for their group's last request. */
  readonly partial: IopfFault[] = [];
  /** Groups waiting for a hardware response (pending list). */
  readonly faults = new GroupList<IopfGroup, 'pending'>();
  /** False once iopf_queue_remove_device() unpublished it. */
  live = true;

  constructor(
    readonly dev: IommuDevice,
    readonly queue: IopfQueue,
  ) {}
}

/** Fault-injection points of the IOPF core (for fail-nth style tests). */
export interface IopfFaultInjection {
  /** Return true to make this partial-fault allocation fail (report_partial_fault: -ENOMEM, no response). */
  partialAlloc?: () => boolean;
  /** Return true to make this group allocation fail (the abort group: FAILURE). */
  groupAlloc?: () => boolean;
  /** Return true to make the domain's handler fail for this group (FAILURE). */
  handler?: () => boolean;
}

/** struct iopf_queue: one per IOMMU instance; its work queue runs SVA work. */
export class IopfQueue {
  readonly devices = new Set<IommuDevice>();
  /** Pending work items (kernel: an unbound workqueue), by device for flush. */
  readonly work: Array<{ dev: IommuDevice; fn: () => void } | undefined> = [];
  workHead = 0;
  workScheduled = false;
  inject: IopfFaultInjection = {};
  /** The kernel release's IOPF-core behaviour. */
  profile: IopfProfile = LATEST_PROFILE;

  constructor(
    readonly name: string,
    readonly sched: Scheduler,
  ) {}
}

/**
 * A device as the IOMMU core sees it (struct device + dev->iommu). The
 * platform layer creates one per simulated PCIe function.
 */
export class IommuDevice {
  readonly group = new IommuGroup();
  faultParam: IommuFaultParam | undefined = undefined;
  /** Fault-capable attachments (RID, PASIDs, SVA binds): the driver's iopf_refcount. */
  iopfUsers = 0;
  /** Driver-private (the hardware function). */
  priv: unknown = undefined;
  /** The iommufd device object bound to it, if any (exclusive ownership). */
  owner: unknown = undefined;

  constructor(
    readonly name: string,
    readonly ops: IommuOps,
  ) {}
}

/** Group life cycle, as core/README.md draws it. */
export type IopfGroupState = 'pending' | 'queued' | 'delivered' | 'answered';

/** The partials of a one-request group (shared, never written). */
export const NO_PARTIALS: readonly IopfFault[] = Object.freeze([]);

/**
 * struct iopf_group: the unit of delivery and of response. The fields after
 * `cookie` are the handler's (kernel: `node` and iommufd's private use).
 */
export class IopfGroup {
  /** On the device's pending list, i.e. no hardware response sent yet. */
  pending = true;
  attachHandle: IommuAttachHandle | undefined = undefined;
  /** iommufd's user-visible id while delivered (0 = none). */
  cookie = 0;

  /** Its node on the device's pending list (group-list.ts). */
  readonly pendingNode = new ListNode<IopfGroup, 'pending'>(this);
  /** The handler's nodes: its attachment's groups (iommufd). */
  readonly handleNode = new ListNode<IopfGroup, 'handle'>(this);
  /** The deliver list or a connection's delivered list (iommufd). */
  readonly deliverNode = new ListNode<IopfGroup, 'deliver'>(this);
  /** The response-timeout list (iommufd): made on first use, as most queues have no timeout. */
  deadlineNode: ListNode<IopfGroup, 'deadline'> | undefined = undefined;

  // Handler-private bookkeeping (iommufd).
  state: IopfGroupState = 'pending';
  /** Time of the report (ms, scheduler clock). */
  reportedAt = 0;
  /** Time of first delivery (ms), -1 before. */
  deliveredAt = -1;
  redelivered = false;
  /** The connection it is delivered on (iommufd). */
  conn: unknown = undefined;
  /** Owner's queue (iommufd fault object). */
  queue: unknown = undefined;

  constructor(
    /** The fault carrying LAST_PAGE; its (pasid, grpid) identify the response (kernel: last_fault). */
    readonly lastFault: IopfFault,
    /**
     * The group's other faults, in arrival order ({@link NO_PARTIALS} for
     * the common one-request group: nothing is allocated for it).
     */
    readonly partials: readonly IopfFault[],
    readonly faultParam: IommuFaultParam,
  ) {}

  /** fault_count: the partials and the last fault. */
  get faultCount(): number {
    return this.partials.length + 1;
  }

  /** Fault @i of the group (0 ≤ i < faultCount): the partials in arrival order, then the last. */
  faultAt(i: number): IopfFault {
    return i < this.partials.length ? this.partials[i]! : this.lastFault;
  }

  /** Every fault of the group, in order, as a new array. */
  faultList(): IopfFault[] {
    return [...this.partials, this.lastFault];
  }

  get dev(): IommuDevice {
    return this.faultParam.dev;
  }
}

/**
 * iommuIopfGet() - one more fault-capable attachment of @dev: the first one
 * puts it on the iopf queue (the driver's conditions apply; its errno is
 * thrown and nothing changes).
 */
export function iommuIopfGet(dev: IommuDevice): void {
  if (dev.iopfUsers === 0) dev.ops.enableIopf(dev);
  dev.iopfUsers++;
}

/**
 * iommuIopfPut() - a fault-capable attachment of @dev went (detach, replace,
 * unbind): the last one takes the device off the iopf queue, answering what
 * is still pending INVALID and freeing its partial requests. The attach,
 * replace and detach helpers below take the reference; the caller drops it
 * once its own auto-response ran (the kernel drops it inside the detach,
 * before iommufd's auto-response: the ordering of the 2026 use-after-free
 * report, which the simulation avoids).
 */
export function iommuIopfPut(dev: IommuDevice, handle: IommuAttachHandle): void {
  if (!handle.iopfRef) return;
  handle.iopfRef = false;
  if (--dev.iopfUsers === 0) dev.ops.disableIopf(dev);
}

/**
 * iommu_attach_group_handle / iommu_attach_device_pasid: install `handle` at
 * (dev, pasid). EBUSY if the slot is taken.
 */
export function iommuAttachGroupHandle(dev: IommuDevice, pasid: number, handle: IommuAttachHandle): void {
  if (dev.group.pasidArray.has(pasid)) throw new IommuError('EBUSY', `${dev.name} pasid ${pasid} is already attached`);
  if (handle.domain.iopfHandler) {
    iommuIopfGet(dev);
    handle.iopfRef = true;
  }
  dev.ops.setDevPasid(dev, pasid, handle.domain);
  dev.group.pasidArray.set(pasid, handle);
  handle.domain.attachCount++;
}

/**
 * iommu_replace_group_handle / iommu_replace_device_pasid: atomically swap the
 * handle at (dev, pasid). Returns the old handle. On failure nothing changes.
 */
export function iommuReplaceGroupHandle(dev: IommuDevice, pasid: number, handle: IommuAttachHandle): IommuAttachHandle {
  const old = dev.group.pasidArray.get(pasid);
  if (!old) throw new IommuError('EINVAL', `${dev.name} pasid ${pasid} is not attached`);
  if (handle.domain.iopfHandler) {
    iommuIopfGet(dev);
    handle.iopfRef = true;
  }
  dev.ops.setDevPasid(dev, pasid, handle.domain);
  dev.group.pasidArray.set(pasid, handle);
  handle.domain.attachCount++;
  old.domain.attachCount--;
  return old;
}

/**
 * iommu_detach_group_handle / iommu_detach_device_pasid: drain the hardware
 * queue for the slot, clear the translation, remove the handle.
 */
export function iommuDetachGroupHandle(dev: IommuDevice, pasid: number): IommuAttachHandle {
  const old = dev.group.pasidArray.get(pasid);
  if (!old) throw new IommuError('EINVAL', `${dev.name} pasid ${pasid} is not attached`);
  dev.ops.drainPageRequests(dev, pasid);
  dev.ops.setDevPasid(dev, pasid, undefined);
  dev.group.pasidArray.delete(pasid);
  old.domain.attachCount--;
  return old;
}

/** iommu_attach_handle_get: the handle at (dev, pasid), optionally of one domain type. */
export function iommuAttachHandleGet(dev: IommuDevice, pasid: number, type?: IommuDomainType): IommuAttachHandle | undefined {
  const h = dev.group.pasidArray.get(pasid);
  if (!h || (type && h.domain.type !== type)) return undefined;
  return h;
}
