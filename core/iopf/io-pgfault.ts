/**
 * The generic IO page fault framework (drivers/iommu/io-pgfault.c).
 *
 * A driver reports every page request with {@link iommuReportDeviceFault}.
 * Non-last requests wait on the device's partial list; the last request of a
 * group gathers the partials with the same grpid into an {@link IopfGroup},
 * which goes to the handler of the domain attached at (device, pasid). The
 * handler owns the group until it calls {@link iopfGroupResponse}, which sends
 * the one hardware response. Every path ends in exactly one response for every
 * request that needs one.
 */
import {
  IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE,
  IOMMU_FAULT_PAGE_REQUEST_PASID_VALID,
  IOMMU_NO_PASID,
  IOMMU_PAGE_RESP_FAILURE,
  IOMMU_PAGE_RESP_INVALID,
  IommuFaultParam,
  IopfGroup,
  NO_PARTIALS,
  IopfQueue,
  iommuAttachHandleGet,
  type IommuAttachHandle,
  type IommuDevice,
  type IommuFaultPageRequest,
  type IommuPageResponse,
  type IommuPageResponseCode,
  type IopfFault,
} from '../iommu/iommu.js';
import { EINVAL_N, ENODEV_N, ENOMEM_N } from '../iommu/errors.js';
import type { Scheduler } from '../sched.js';

/** iopf_queue_alloc: a fault queue for one IOMMU instance. */
export function iopfQueueAlloc(name: string, sched: Scheduler): IopfQueue {
  return new IopfQueue(name, sched);
}

/**
 * iopf_queue_add_device: enable IOPF reporting for `dev` on `queue` by
 * publishing its fault_param. EBUSY-free: adding twice is a driver bug and
 * returns -EBUSY style -1.
 */
export function iopfQueueAddDevice(queue: IopfQueue, dev: IommuDevice): number {
  if (dev.faultParam) return -16;
  dev.faultParam = new IommuFaultParam(dev, queue);
  queue.devices.add(dev);
  return 0;
}

/**
 * iopf_queue_remove_device: disable IOPF for `dev`. Partials are freed without
 * response; every pending group is first taken back from its handler (the
 * handler's revoke hook unlinks it from its own queues, the single-owner fix
 * proposed in 2026) and then answered INVALID exactly once.
 */
export function iopfQueueRemoveDevice(queue: IopfQueue, dev: IommuDevice): void {
  const fp = dev.faultParam;
  if (!fp || fp.queue !== queue) return;
  fp.partial.length = 0;
  let done: Set<() => void> | undefined;
  for (const group of fp.faults.toArray()) {
    const domain = group.attachHandle?.domain;
    const revoke = domain?.iopfRevoke;
    if (revoke) {
      revoke(group);
      if (domain.iopfRevokeDone) (done ??= new Set()).add(domain.iopfRevokeDone);
    }
    iopfGroupResponse(group, IOMMU_PAGE_RESP_INVALID);
    iopfFreeGroup(group);
  }
  if (done) for (const f of done) f();
  fp.live = false;
  dev.faultParam = undefined;
  queue.devices.delete(dev);
}

/**
 * find_fault_handler: the attach handle whose domain handles a fault at
 * (dev, pasid). A PASID fault with no handle at that PASID falls back to a
 * NESTED domain at the RID when the driver has a user-owned PASID table.
 */
export function findFaultHandler(dev: IommuDevice, prm: IommuFaultPageRequest): IommuAttachHandle | undefined {
  let handle: IommuAttachHandle | undefined;
  if (prm.flags & IOMMU_FAULT_PAGE_REQUEST_PASID_VALID) {
    handle = iommuAttachHandleGet(dev, prm.pasid);
    if (!handle && dev.ops.userPasidTable) handle = iommuAttachHandleGet(dev, IOMMU_NO_PASID, 'nested');
  } else {
    handle = iommuAttachHandleGet(dev, IOMMU_NO_PASID);
  }
  if (!handle || !handle.domain.iopfHandler) return undefined;
  return handle;
}

/** iopf_error_response: answer one request directly, without a group. */
function iopfErrorResponse(dev: IommuDevice, evt: IopfFault, code: IommuPageResponseCode): void {
  dev.ops.pageResponse(dev, evt, { pasid: evt.prm.pasid, grpid: evt.prm.grpid, code });
}

/** Removes and returns the partials of `fp` whose grpid matches (grpid only, as the kernel does). */
function takePartials(fp: IommuFaultParam, grpid: number): readonly IopfFault[] {
  const partial = fp.partial;
  if (partial.length === 0) return NO_PARTIALS;
  const taken: IopfFault[] = [];
  let w = 0;
  for (let r = 0; r < partial.length; r++) {
    const f = partial[r]!;
    if (f.prm.grpid === grpid) taken.push(f);
    else partial[w++] = f;
  }
  partial.length = w;
  return taken;
}

/**
 * iommu_report_device_fault: the driver's entry point for one page request.
 * The core keeps @evt (a partial, or a fault of its group) where the kernel
 * copies it: the driver hands it over and must not touch it again.
 *
 * Returns 0 when the request was taken (queued as a partial, or its group was
 * handed to a handler or answered), -EINVAL when there was no handler or no
 * fault_param (answered INVALID if it needed a response), -ENOMEM when a
 * partial could not be stored (lost, no response).
 * Context: the driver's report path; never throws.
 */
export function iommuReportDeviceFault(dev: IommuDevice, evt: IopfFault): number {
  const prm = evt.prm;
  const last = (prm.flags & IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE) !== 0;
  const fp = dev.faultParam;
  const handle = findFaultHandler(dev, prm);
  if (!handle || !fp) {
    // No handler, or no fault_param (E1/E2). Intended semantics: only the last request of a group is answered;
    // the kernel also answers a non-last request (a kernel profile's nonLastInvalid).
    // The partials stored for this grpid stay where they are, as the kernel's
    // err_bad_iopf path leaves them (a later last request of the grpid, or
    // iopf_queue_remove_device / discard_partial, takes them).
    const quirk = dev.ops.profile.nonLastInvalid;
    if (last || quirk) iopfErrorResponse(dev, evt, IOMMU_PAGE_RESP_INVALID);
    return EINVAL_N;
  }
  const inject = fp.queue.inject;
  if (!last) {
    if (inject.partialAlloc?.()) return ENOMEM_N;
    fp.partial.push(evt);
    return 0;
  }
  const partials = takePartials(fp, prm.grpid);
  if (inject.groupAlloc?.()) {
    // The "abort group" path: partials consumed, FAILURE answered.
    iopfErrorResponse(dev, evt, IOMMU_PAGE_RESP_FAILURE);
    return 0;
  }
  const group = new IopfGroup(evt, partials.length === 0 ? NO_PARTIALS : partials, fp);
  group.attachHandle = handle;
  group.reportedAt = fp.queue.sched.now();
  fp.faults.pushTail(group.pendingNode);
  const ret = inject.handler?.() ? ENOMEM_N : handle.domain.iopfHandler!(group);
  if (ret !== 0) {
    // The handler refused the group.
    iopfGroupResponse(group, IOMMU_PAGE_RESP_FAILURE);
    iopfFreeGroup(group);
  }
  return 0;
}

/**
 * iopf_group_response: send the group's one hardware response, with the last
 * fault's pasid and grpid. A second call for the same group does nothing.
 */
export function iopfGroupResponse(group: IopfGroup, code: IommuPageResponseCode): void {
  if (!group.pending) return;
  group.pending = false;
  const fp = group.faultParam;
  fp.faults.remove(group.pendingNode);
  const last = group.lastFault;
  // One response object for every call: drivers read it before they return and keep nothing of it.
  const resp = scratchResponse;
  resp.pasid = last.prm.pasid;
  resp.grpid = last.prm.grpid;
  resp.code = code;
  fp.dev.ops.pageResponse(fp.dev, last, resp);
}

const scratchResponse: IommuPageResponse = { pasid: 0, grpid: 0, code: IOMMU_PAGE_RESP_INVALID };

/** iopf_free_group: the handler is done with the group. */
export function iopfFreeGroup(group: IopfGroup): void {
  group.state = 'answered';
  group.conn = undefined;
  group.queue = undefined;
}

/** Queue `fn` on the IOPF work queue of `dev`'s fault queue (kernel: queue_work on iopf_queue->wq). */
export function iopfQueueWork(queue: IopfQueue, dev: IommuDevice, fn: () => void): void {
  queue.work.push({ dev, fn });
  if (!queue.workScheduled) {
    queue.workScheduled = true;
    queue.sched.defer(() => runWork(queue));
  }
}

function runWork(queue: IopfQueue): void {
  queue.workScheduled = false;
  while (queue.workHead < queue.work.length) {
    const item = queue.work[queue.workHead];
    queue.work[queue.workHead++] = undefined;
    item?.fn();
  }
  queue.work.length = 0;
  queue.workHead = 0;
}

/**
 * iopf_queue_flush_dev: run every queued work item of `dev` now, so that no
 * handler work for it is pending. Does not touch groups owned by other
 * handlers (iommufd). Returns -ENODEV when the device is not on a queue.
 */
export function iopfQueueFlushDev(dev: IommuDevice): number {
  const fp = dev.faultParam;
  if (!fp) return ENODEV_N;
  const queue = fp.queue;
  for (let i = queue.workHead; i < queue.work.length; i++) {
    const item = queue.work[i];
    if (item && item.dev === dev) {
      queue.work[i] = undefined;
      item.fn();
    }
  }
  return 0;
}

/** iopf_queue_discard_partial: drop every partial of every device on `queue` (after a PRQ overflow). */
export function iopfQueueDiscardPartial(queue: IopfQueue): void {
  for (const dev of queue.devices) if (dev.faultParam) dev.faultParam.partial.length = 0;
}

/** Number of requests waiting as partials on `dev` (for tables-are-empty checks). */
export function iopfPartialCount(dev: IommuDevice): number {
  return dev.faultParam?.partial.length ?? 0;
}
