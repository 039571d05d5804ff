/**
 * sim-iommu: the IOMMU driver for the simulated unit, with three models.
 *
 * - `vtd` (drivers/iommu/intel/prq.c): drains the PRQ, drops Stop Markers,
 *   answers malformed requests itself when they are last (handle_bad_prq_event), passes
 *   NEEDS_PASID through in the fault flags, no PASID → RID fallback; on PRQ
 *   overflow it discards partials once drained (prq_event_thread).
 * - `smmuv3` (arm-smmu-v3.c): IOPF is the stall model. A stalled transaction
 *   (a function with the `stall` cap) is its own one-record group whose
 *   grpid is the stall tag; the response is CMD_RESUME; a PASID fault falls
 *   back to a NESTED domain at the RID (user PASID table). A PCIe PRI page
 *   request (a function without `stall`) is never fed to IOPF
 *   (arm_smmu_handle_ppr): logged as unexpected and, when last, answered
 *   CMD_PRI_RESP DENY, which the function sees as Invalid Request.
 * - `generic` (the kernel selftest's mock IOMMU): reports every request as is,
 *   no filtering, grpid = PRG index, and a PASID fault falls back to a NESTED
 *   domain at the RID (user_pasid_table).
 */
import { type IommuUnit, PRG_FAILURE, PRG_INVALID, PRG_SUCCESS, type ContextEntry, type PageRequest } from '../hw/iommu-unit.js';
import type { PcieFunction } from '../hw/pcie-function.js';
import { Stage2Table } from '../hw/stage2.js';
import {
  IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE,
  IOMMU_FAULT_PAGE_REQUEST_PASID_VALID,
  IOMMU_FAULT_PAGE_RESPONSE_NEEDS_PASID,
  IOMMU_FAULT_PERM_EXEC,
  IOMMU_FAULT_PERM_PRIV,
  IOMMU_FAULT_PERM_READ,
  IOMMU_FAULT_PERM_WRITE,
  IOMMU_NO_PASID,
  IOMMU_PAGE_RESP_FAILURE,
  IOMMU_PAGE_RESP_SUCCESS,
  IommuDevice,
  IommuDomain,
  IopfFaultRecord,
  type IommuOps,
  type IommuPageResponse,
  type IopfFault,
  type IopfQueue,
} from '../iommu/iommu.js';
import type { IommuViommu, IommuViommuType } from '../iommu/viommu.js';
import { IommuError } from '../iommu/errors.js';
import { LATEST_PROFILE, type KernelProfile } from '../iommu/profiles.js';
import { ArmVsmmu, armSmmuAttachPrepareVmaster, armSmmuHandleEvent, type ArmNestedCfg, type ArmSmmuHw, type ArmVmaster } from './arm-vsmmu.js';
import { iommuReportDeviceFault, iopfQueueAddDevice, iopfQueueAlloc, iopfQueueDiscardPartial, iopfQueueRemoveDevice } from '../iopf/io-pgfault.js';

interface DomainPriv {
  /** Paging: its own stage 2. Nested: the parent's. */
  s2: Stage2Table | undefined;
  s1: { root: bigint; addrWidth: 48 | 57; flags: number } | undefined;
  /** Nested domains built on this paging domain. */
  children: Set<IommuDomain>;
  /** smmuv3: a nested domain of a vSMMU (the guest's STE). */
  smmu?: ArmNestedCfg;
}

function priv(d: IommuDomain): DomainPriv {
  return d.priv as DomainPriv;
}

/** Statistics of the driver's report path. */
export interface SimIommuStats {
  reported: number;
  stopMarkersDropped: number;
  malformedAnswered: number;
  malformedDropped: number;
  unknownRequester: number;
  partialDiscards: number;
  /** smmuv3: PCIe PRI page requests arm_smmu_handle_ppr logged as unexpected (never reported). */
  unexpectedPri: number;
}

export class SimIommu implements IommuOps {
  readonly name: string;
  readonly userPasidTable: boolean;
  readonly queue: IopfQueue;
  readonly stats: SimIommuStats = {
    reported: 0,
    stopMarkersDropped: 0,
    malformedAnswered: 0,
    malformedDropped: 0,
    unknownRequester: 0,
    partialDiscards: 0,
    unexpectedPri: 0,
  };
  /** smmuv3: the stream table, StreamID (the RID) → device. */
  readonly streams = new Map<number, IommuDevice>();
  /** smmuv3: master->vmaster, the vSID of a device attached to a translating nested domain. */
  readonly vmasters = new Map<IommuDevice, ArmVmaster>();
  /** smmuv3: events arm_smmu_handle_event did not hand on (the host logs them), by event id. */
  readonly unhandledEvents = new Map<number, number>();
  /** smmuv3: what a vSMMU drives. */
  readonly smmuHw: ArmSmmuHw = {
    ops: this,
    invalidateTag: (tag) => void this.unit.iotlb.invalidateTag(tag),
    invalidateRange: (tag, addr, npages) => void this.unit.iotlb.invalidateRange(tag, undefined, addr, npages),
    streamDevice: (sid) => this.streams.get(sid),
    sidOf: (dev) => (dev.priv as PcieFunction).rid,
  };

  /** Lowest non-canonical address and lowest canonical upper-half one. */
  private readonly canonLow: bigint;
  private readonly canonHigh: bigint;

  /**
   * @unit: the hardware.
   * @hostVaBits: the host CPU's virtual address width (48: 4-level paging,
   *   57: LA57), which decides which request addresses the VT-d driver
   *   calls canonical.
   * @profile: the kernel release's driver behaviour.
   */
  constructor(
    readonly unit: IommuUnit,
    readonly hostVaBits: 48 | 57 = 48,
    readonly profile: KernelProfile = LATEST_PROFILE,
  ) {
    this.canonLow = 1n << BigInt(hostVaBits - 1);
    this.canonHigh = (1n << 64n) - this.canonLow;
    this.name = `sim-iommu/${unit.model}`;
    this.userPasidTable = unit.model !== 'vtd';
    this.queue = iopfQueueAlloc(`${unit.name}-iopfq`, unit.sched);
    unit.onInterrupt = () => this.drain();
    unit.onEventInterrupt = () => this.drainEvents();
  }

  get model(): IommuUnit['model'] {
    return this.unit.model;
  }

  /**
   * Probe a function behind this unit. VT-d (iommu_enable_pci_pri, v6.15+)
   * enables PRI here when the function has ATS and PRI and, if it is
   * PASID-capable, "PRG Response PASID Required"; under a profile with
   * priAtAttach PRI stays off until the first fault-capable attach. The
   * stall and mock models leave the function's PRI as it is. Nobody is on
   * the iopf queue before a fault-capable attach (enableIopf).
   */
  probeDevice(fn: PcieFunction): IommuDevice {
    const dev = new IommuDevice(fn.name, this);
    dev.priv = fn;
    fn.iommu = dev;
    this.unit.addFunction(fn);
    this.streams.set(fn.rid, dev);
    if (this.unit.model === 'vtd') fn.pri.enableBit = !this.profile.priAtAttach && this.priUsable(fn);
    return dev;
  }

  /** The PRI conditions of iommu_enable_pci_pri (VT-d). */
  private priUsable(fn: PcieFunction): boolean {
    return fn.caps.pri && fn.caps.ats && (fn.caps.pasidBits === 0 || fn.caps.prgResponseNeedsPasid);
  }

  /**
   * enableIopf() - the first fault-capable attachment of @dev. VT-d
   * (intel_iommu_enable_iopf, v6.15+): ENODEV unless PRI was enabled at
   * probe. With priAtAttach (v6.11–v6.14's iommufd_fault_iopf_enable and
   * the older intel_iommu_enable_iopf): ENODEV without PRI or ATS, EINVAL
   * for a PASID-capable function without "PRG Response PASID Required",
   * else PRI is reset and enabled here. SMMUv3 (arm_smmu_master_enable_iopf):
   * IOPF is the stall model, so ENODEV for a function without the `stall`
   * cap. The mock
   * (mock_dev_enable_iopf): no condition.
   */
  enableIopf(dev: IommuDevice): void {
    const fn = dev.priv as PcieFunction;
    if (this.unit.model === 'vtd') {
      if (this.profile.priAtAttach) {
        if (!fn.caps.pri || !fn.caps.ats) throw new IommuError('ENODEV', `${dev.name} has no PRI/ATS: no IOPF`);
        if (fn.caps.pasidBits > 0 && !fn.caps.prgResponseNeedsPasid) {
          throw new IommuError('EINVAL', `${dev.name} is PASID-capable without "PRG Response PASID Required": no IOPF`);
        }
        fn.pri.reset();
        fn.pri.enableBit = true;
      } else if (!fn.pri.enableBit) {
        throw new IommuError('ENODEV', `${dev.name}: PRI could not be enabled at probe (needs ATS, PRI and, with PASID, "PRG Response PASID Required")`);
      }
    }
    if (this.unit.model === 'smmuv3' && fn.caps.stall !== true) {
      throw new IommuError('ENODEV', `${dev.name} cannot stall: a fault-capable attach on the SMMUv3 model needs the stall cap`);
    }
    iopfQueueAddDevice(this.queue, dev);
  }

  /** disableIopf() - the last fault-capable attachment went: iopf_queue_remove_device (and pci_disable_pri under priAtAttach). */
  disableIopf(dev: IommuDevice): void {
    iopfQueueRemoveDevice(this.queue, dev);
    if (this.unit.model === 'vtd' && this.profile.priAtAttach) (dev.priv as PcieFunction).pri.enableBit = false;
  }

  /** Release a function: disable IOPF (pending groups answered INVALID), forget its contexts. */
  releaseDevice(dev: IommuDevice): void {
    const fn = dev.priv as PcieFunction;
    this.drainPageRequests(dev);
    iopfQueueRemoveDevice(this.queue, dev);
    dev.iopfUsers = 0;
    this.unit.forgetFunction(fn);
    if (this.streams.get(fn.rid) === dev) this.streams.delete(fn.rid);
    this.vmasters.delete(dev);
    fn.iommu = undefined;
  }

  /**
   * The threaded interrupt handler: process the requests queued when it
   * started. One that arrives meanwhile (an answer given here, INVALID for a
   * device with no handler, makes the device send its next group at once)
   * has raised the interrupt again and waits for the next run: a device
   * that is answered synchronously must not keep one drain, and the
   * daemon's event loop, busy for its whole traffic run.
   */
  drain(): void {
    for (let n = this.unit.prqLength; n > 0; n--) {
      const r = this.unit.prqPop();
      if (!r) break;
      this.handle(r);
    }
    // While overflowed the unit takes no new request; if the overflow came
    // while this drain ran, requests queued before it wait for the next drain.
    if (this.unit.overflow && this.unit.prqLength === 0) {
      // PRQ overflow: the queue is empty again; partials lost their last request to the overflow.
      iopfQueueDiscardPartial(this.queue);
      this.stats.partialDiscards++;
      this.unit.overflow = false;
    }
  }

  /**
   * arm_smmu_evtq_thread: handle every record in the event queue; a stall
   * that nothing took is terminated (CMD_RESUME abort) so no transaction
   * stays stalled.
   */
  drainEvents(): void {
    for (let evt = this.unit.evtq.pop(); evt; evt = this.unit.evtq.pop()) {
      const stag = Number(evt[1]! & 0xffffn);
      const stall = (evt[1]! & (1n << 31n)) !== 0n;
      if (this.handleEvent(evt) !== 0 && stall && this.unit.txStalled(stag)) this.unit.resume(stag, PRG_INVALID);
    }
    this.unit.evtq.overflow = false;
  }

  private answerDirect(r: PageRequest, code: number): void {
    if (r.stalled) this.unit.resume(r.stag, code);
    else this.unit.pageGroupResponse(r.fn.rid, r.pasid, r.prgi, code);
  }

  /**
   * Turn one hardware request into an iopf fault and report it. The VT-d
   * model filters in prq_event_thread()'s order: a non-canonical address
   * (for the host CPU's paging mode), a privileged request with Read or
   * Write, an execute request with Read (each answered INVALID by
   * handle_bad_prq_event() when last, else dropped), then the Stop Marker
   * drop (last, no Read, no Write: no response, PASID or not), then the
   * device lookup (unknown requester: as a bad request). The other models
   * look the device up first (an unknown requester's last request is
   * answered INVALID). intel_prq_report() sets PASID_VALID and NEEDS_PASID
   * whenever the request carries a PASID. On the SMMUv3 model only a stalled
   * transaction is reported; a PCIe PRI page request goes to
   * {@link SimIommu.handlePpr}.
   */
  private handle(r: PageRequest): void {
    const model = this.unit.model;
    const stall = r.stalled;
    if (model === 'smmuv3' && !stall) {
      this.handlePpr(r);
      return;
    }
    const last = stall || r.last;
    if (model === 'vtd') {
      if (this.profile.vtdNoPasidInvalid && r.pasid === undefined) {
        this.badRequest(r, false);
        return;
      }
      if (!this.isCanonical(r.addr) || (r.priv && (r.read || r.write)) || (r.exec && r.read)) {
        this.badRequest(r, false);
        return;
      }
      if (r.last && !r.read && !r.write) {
        this.stats.stopMarkersDropped++;
        return;
      }
    }
    const dev = r.fn.iommu as IommuDevice | undefined;
    if (!dev) {
      if (model === 'vtd') {
        this.badRequest(r, true);
        return;
      }
      this.stats.unknownRequester++;
      if (last) this.answerDirect(r, PRG_INVALID);
      return;
    }
    let flags = last ? IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE : 0;
    if (r.pasid !== undefined) {
      flags |= IOMMU_FAULT_PAGE_REQUEST_PASID_VALID;
      if (model === 'vtd') flags |= IOMMU_FAULT_PAGE_RESPONSE_NEEDS_PASID;
    }
    const perm =
      (r.read ? IOMMU_FAULT_PERM_READ : 0) |
      (r.write ? IOMMU_FAULT_PERM_WRITE : 0) |
      (r.exec ? IOMMU_FAULT_PERM_EXEC : 0) |
      (r.priv ? IOMMU_FAULT_PERM_PRIV : 0);
    this.stats.reported++;
    iommuReportDeviceFault(dev, new IopfFaultRecord(flags, r.pasid ?? 0, stall ? r.stag : r.prgi, perm, r.addr));
  }

  /**
   * arm_smmu_handle_ppr() - one PRI queue entry: the driver has no PRI
   * support, so the request is logged as unexpected (stats.unexpectedPri) and,
   * when it is the group's last, answered with CMD_PRI_RESP DENY (PRI_RESP_DENY,
   * Invalid Request on the wire) whether or not the StreamID has a device;
   * nothing reaches the IOPF core. A Stop Marker (last, no Read, no Write,
   * with a PASID) asks for no response and gets none (counted with the Stop
   * Markers): a DENY for it would reach the function as an unexpected PRG
   * response.
   */
  private handlePpr(r: PageRequest): void {
    this.stats.unexpectedPri++;
    if (!r.last) return;
    if (!r.read && !r.write && r.pasid !== undefined) {
      this.stats.stopMarkersDropped++;
      return;
    }
    this.unit.pageGroupResponse(r.fn.rid, r.pasid, r.prgi, PRG_INVALID);
  }

  /** VT-d handle_bad_prq_event(): INVALID straight to the device, only for a last request. */
  private badRequest(r: PageRequest, unknown: boolean): void {
    if (unknown) this.stats.unknownRequester++;
    if (r.last) {
      if (!unknown) this.stats.malformedAnswered++;
      this.answerDirect(r, PRG_INVALID);
    } else if (!unknown) this.stats.malformedDropped++;
  }

  /** is_canonical_address() for the host CPU's paging mode (__VIRTUAL_MASK_SHIFT 47 or 56). */
  private isCanonical(addr: bigint): boolean {
    // Comparisons allocate no BigInt, a shift would.
    return (addr >= 0n && addr < this.canonLow) || (addr >= this.canonHigh && addr <= 0xffff_ffff_ffff_ffffn);
  }

  /**
   * ops->page_response. SMMUv3 (arm_smmu_page_response): CMD_RESUME, RETRY
   * for SUCCESS, ABORT for INVALID and FAILURE alike (a stall has no PRI
   * state to stop: the function sees its transaction terminated, as
   * Invalid). VT-d (intel_iommu_page_response) and the mock: a Page Group
   * Response with the code, FAILURE as Response Failure.
   */
  pageResponse(dev: IommuDevice, lastFault: IopfFault, resp: IommuPageResponse): void {
    if (this.unit.model === 'smmuv3') {
      this.unit.resume(resp.grpid, resp.code === IOMMU_PAGE_RESP_SUCCESS ? PRG_SUCCESS : PRG_INVALID);
      return;
    }
    const code = resp.code === IOMMU_PAGE_RESP_SUCCESS ? PRG_SUCCESS : resp.code === IOMMU_PAGE_RESP_FAILURE ? PRG_FAILURE : PRG_INVALID;
    const fn = dev.priv as PcieFunction;
    const pasid = lastFault.prm.flags & IOMMU_FAULT_PAGE_REQUEST_PASID_VALID ? resp.pasid : undefined;
    this.unit.pageGroupResponse(fn.rid, pasid, resp.grpid, code);
  }

  domainAllocPaging(_dev: IommuDevice, _nestParent: boolean): IommuDomain {
    const d = new IommuDomain('paging', this);
    d.priv = { s2: new Stage2Table(), s1: undefined, children: new Set() } satisfies DomainPriv;
    return d;
  }

  domainAllocNested(_dev: IommuDevice, parent: IommuDomain, s1: { pgtblAddr: bigint; addrWidth: 48 | 57; flags: number }): IommuDomain {
    const d = new IommuDomain('nested', this, parent);
    d.priv = { s2: priv(parent).s2, s1: { root: s1.pgtblAddr, addrWidth: s1.addrWidth, flags: s1.flags }, children: new Set() } satisfies DomainPriv;
    priv(parent).children.add(d);
    return d;
  }

  domainAllocSva(_dev: IommuDevice, pgd: bigint, addrWidth: 48 | 57): IommuDomain {
    const d = new IommuDomain('sva', this);
    // intel_svm_set_dev_pasid sets up the PASID entry without SRE or WPE: a
    // supervisor request on an SVA PASID is refused.
    d.priv = { s2: undefined, s1: { root: pgd, addrWidth, flags: 0 }, children: new Set() } satisfies DomainPriv;
    return d;
  }

  /**
   * viommu_alloc (arm_vsmmu_alloc): an arm_smmuv3 vSMMU on the nest parent
   * @parent. EOPNOTSUPP unless this is the smmuv3 model and @type arm_smmuv3;
   * EINVAL when @parent belongs to another SMMU instance.
   */
  viommuAlloc(_dev: IommuDevice, parent: IommuDomain, type: IommuViommuType): IommuViommu {
    if (this.unit.model !== 'smmuv3' || type !== 'arm_smmuv3')
      throw new IommuError('EOPNOTSUPP', `${this.unit.name} (${this.unit.model}) has no ${type} vIOMMU`);
    if (parent.ops !== this) throw new IommuError('EINVAL', 'the nest parent belongs to another SMMU instance');
    return new ArmVsmmu(this.smmuHw, parent, (cfg) => {
      const d = new IommuDomain('nested', this, parent);
      d.priv = { s2: priv(parent).s2, s1: undefined, children: new Set(), smmu: cfg } satisfies DomainPriv;
      priv(parent).children.add(d);
      return d;
    });
  }

  /**
   * arm_smmu_evtq_thread for one event record: arm_smmu_handle_event
   * (a stall → IOPF; a stage-1 event of a vmaster → its vEVENTQ). Returns 0
   * when handled; otherwise the event is counted as the host's and, if it is
   * a stall, the caller terminates it.
   */
  handleEvent(evt: readonly bigint[]): number {
    const ret = armSmmuHandleEvent(this.smmuHw, (dev) => this.vmasters.get(dev), evt);
    if (ret !== 0) {
      const id = Number(evt[0]! & 0xffn);
      this.unhandledEvents.set(id, (this.unhandledEvents.get(id) ?? 0) + 1);
    }
    return ret;
  }

  domainFree(domain: IommuDomain): void {
    priv(domain).smmu?.vsmmu.forget(domain);
    if (domain.parent) priv(domain.parent).children.delete(domain);
    this.unit.iotlb.invalidateTag(domain.id);
  }

  domainMapPage(domain: IommuDomain, iova: bigint, hpa: bigint, read: boolean, write: boolean): void {
    priv(domain).s2!.map(iova, hpa, read, write);
  }

  domainSetFill(domain: IommuDomain, fill: ((iova: bigint) => { hpa: bigint; read: boolean; write: boolean } | undefined) | undefined): void {
    priv(domain).s2!.fill = fill;
  }

  domainUnmapPage(domain: IommuDomain, iova: bigint): void {
    const p = priv(domain);
    p.s2!.unmap(iova);
    this.unit.iotlb.invalidateRange(domain.id, undefined, iova, 1);
    // A nested translation may have walked through this page or landed on it.
    for (const child of p.children) this.unit.iotlb.invalidateTag(child.id);
  }

  cacheInvalidateUser(domain: IommuDomain, addr: bigint, npages: number | bigint | undefined): void {
    if (npages === undefined) this.unit.iotlb.invalidateTag(domain.id);
    else this.unit.iotlb.invalidateRange(domain.id, undefined, addr, npages);
  }

  setDevPasid(dev: IommuDevice, pasid: number, domain: IommuDomain | undefined): void {
    const fn = dev.priv as PcieFunction;
    let entry: ContextEntry | undefined;
    const smmu = domain ? priv(domain).smmu : undefined;
    // arm_smmu_attach_prepare_vmaster: may refuse (ENOENT) before anything changes.
    const vmaster = smmu ? armSmmuAttachPrepareVmaster(smmu, dev) : undefined;
    if (domain) {
      const p = priv(domain);
      entry = smmu
        ? { tag: domain.id, s2: p.s2, s1: undefined, smmu: { ste: smmu.ste, sid: fn.rid, stall: fn.caps.stall === true } }
        : { tag: domain.id, s2: p.s2, s1: p.s1 };
    }
    this.unit.setContext(fn.rid, pasid, entry);
    if (pasid === IOMMU_NO_PASID) {
      if (vmaster) this.vmasters.set(dev, vmaster);
      else this.vmasters.delete(dev);
    }
  }

  drainPageRequests(dev: IommuDevice, pasid?: number): void {
    if (this.unit.model === 'smmuv3') this.drainEvents();
    const fn = dev.priv as PcieFunction;
    const taken = this.unit.prqTake((r) => r.fn === fn && (pasid === undefined || (pasid === IOMMU_NO_PASID ? r.pasid === undefined : r.pasid === pasid)));
    for (const r of taken) this.handle(r);
  }
}
