/**
 * The PRI capability of a PCIe function: the Outstanding Page Request
 * Allocation budget, the 9-bit PRG indexes (never reused while outstanding),
 * the Response Failure and Stopped status bits, and the matching of each PRG
 * response to the group that asked.
 *
 * The DMA engine (dma.ts) and the traffic generator (traffic-gen.ts) send
 * through the small {@link PrgSender} interface only.
 */
import { PageRequest, PRG_FAILURE, PRG_INVALID, PRG_SUCCESS, type PageRequestFields } from './iommu-unit.js';
import type { PcieFunction } from './pcie-function.js';

/**
 * What a group's sender hears when its response arrives: the PRG response
 * code (PRG_SUCCESS, PRG_INVALID or PRG_FAILURE) and when the group was
 * sent (scheduler clock, ms).
 */
export type PrgCallback = (code: number, sentAt: number) => void;

/** The access a page request asks for. */
export interface PrgPerm {
  read: boolean;
  write: boolean;
  exec: boolean;
  priv: boolean;
}

/**
 * PrgSender - how a requester of pages (DMA engine, traffic generator)
 * talks to its function's PRI: send a group if the budget allows, else wait
 * for the budget to free up.
 */
export interface PrgSender {
  /** PRI enabled, not stopped, and the function present: groups may be sent. */
  readonly enabled: boolean;
  /** Outstanding Page Request Allocation: the most requests one group may hold. */
  readonly maxRequests: number;
  /**
   * Send one Page Request Group for @pages (LAST on the final request) with
   * @perm; @onResponse hears its response code. Returns false, sending
   * nothing, when the request budget or the PRG indexes are exhausted.
   */
  trySend(pasid: number | undefined, pages: readonly bigint[], perm: PrgPerm, onResponse: PrgCallback): boolean;
  /** Call @fn once, after the next response (the budget may have room again). */
  waitBudget(fn: () => void): void;
}

/**
 * An outstanding Page Request Group, by PRG index. One object per index,
 * reused by every group that takes the index (nothing allocated per group).
 */
interface Prg {
  pasid: number | undefined;
  requests: number;
  /** How many groups use this index (raw injection may reuse one); 0 = free. */
  count: number;
  onResponse: PrgCallback | undefined;
  sentAt: number;
}

const PRGI_COUNT = 512;

/**
 * PriState - the PRI state machine of one PCIe function: PRG index
 * allocation, the outstanding request budget, Response Failure (any code but
 * Success/Invalid stops PRI until {@link PriState.reset}).
 */
export class PriState implements PrgSender {
  /** PRI Response Failure status bit. */
  responseFailure = false;
  /** PRI Stopped: no page requests until reset. */
  stopped = false;
  /**
   * PRI control Enable, as the driver sets it (pci_enable_pri /
   * pci_disable_pri). A function made outside a platform starts enabled;
   * the platform's driver decides at probe.
   */
  enableBit = true;
  /** Responses whose PRG index was not outstanding (PCIe "Unexpected PRG Index"). */
  unexpectedResponses = 0;
  /** Requests in flight (bounded by caps.priOutstanding). */
  outstandingRequests = 0;
  private readonly prgs: Array<Prg | undefined> = new Array(PRGI_COUNT).fill(undefined);
  /** The Prg object of each index, made on first use and reused. */
  private readonly prgObjects: Array<Prg | undefined> = new Array(PRGI_COUNT).fill(undefined);
  private nextPrgi = 0;
  /** PRG indexes not outstanding. */
  private freePrgis = PRGI_COUNT;
  private readonly budgetWaiters: Array<() => void> = [];

  /** @fn: the function whose page requests this state sends (PageRequest's source). */
  constructor(private readonly fn: PcieFunction) {}

  /**
   * Page requests may be sent: PRI enabled, not stopped, and the function
   * present. A function with the SMMUv3 `stall` cap needs no PRI for it: its
   * requests reach the unit as stalled transactions (the unit's stall model).
   */
  get enabled(): boolean {
    return (this.fn.caps.pri || this.fn.caps.stall === true) && this.enableBit && !this.stopped && !this.fn.removed;
  }

  /** The PCIe PRI capability itself is enabled and not stopped (the device's `pri_enabled`). */
  get priEnabled(): boolean {
    return this.fn.caps.pri && this.enableBit && !this.stopped && !this.fn.removed;
  }

  get maxRequests(): number {
    return this.fn.caps.priOutstanding;
  }

  /** PRG indexes currently outstanding. */
  get outstandingGroups(): number {
    let n = 0;
    for (const p of this.prgs) if (p) n += p.count;
    return n;
  }

  /** Clear Response Failure and re-enable PRI (PRI control Reset + Enable). */
  reset(): void {
    this.responseFailure = false;
    this.stopped = false;
  }

  /** The next free PRG index after the last one handed out; the caller checked freePrgis > 0. */
  private allocPrgi(): number {
    for (let i = 0; i < PRGI_COUNT; i++) {
      const p = (this.nextPrgi + i) & (PRGI_COUNT - 1);
      if (!this.prgs[p]) {
        this.nextPrgi = (p + 1) & (PRGI_COUNT - 1);
        return p;
      }
    }
    return -1;
  }

  private setPrg(prgi: number, prg: Prg | undefined): void {
    if (!this.prgs[prgi] !== !prg) this.freePrgis += prg ? -1 : 1;
    this.prgs[prgi] = prg;
  }

  /** Make PRG index @prgi outstanding with one group; its (reused) Prg. */
  private takePrg(prgi: number, pasid: number | undefined, requests: number, onResponse: PrgCallback | undefined): Prg {
    let p = this.prgObjects[prgi];
    if (!p) this.prgObjects[prgi] = p = { pasid, requests, count: 1, onResponse, sentAt: 0 };
    p.pasid = pasid;
    p.requests = requests;
    p.count = 1;
    p.onResponse = onResponse;
    p.sentAt = this.fn.sched.now();
    this.setPrg(prgi, p);
    return p;
  }

  trySend(pasid: number | undefined, pages: readonly bigint[], perm: PrgPerm, onResponse: PrgCallback): boolean {
    if (this.outstandingRequests + pages.length > this.fn.caps.priOutstanding || this.freePrgis === 0) return false;
    const prgi = this.allocPrgi();
    this.takePrg(prgi, pasid, pages.length, onResponse);
    this.outstandingRequests += pages.length;
    const unit = this.fn.unit;
    for (let i = 0; i < pages.length; i++) {
      unit.pageRequest(new PageRequest(this.fn, pasid, prgi, pages[i]!, perm.read, perm.write, perm.exec, perm.priv, i === pages.length - 1));
    }
    return true;
  }

  waitBudget(fn: () => void): void {
    this.budgetWaiters.push(fn);
  }

  /**
   * Send one raw page request as the function would (the kernel selftest's
   * TRIGGER_IOPF). A last request (not a Stop Marker) makes its PRG index
   * outstanding until answered. Returns false when PRI is off or stopped
   * (nothing is sent).
   */
  inject(req: PageRequestFields): boolean {
    if (!this.enabled) return false;
    const prgi = req.prgi & (PRGI_COUNT - 1);
    const stopMarker = req.last && !req.read && !req.write && req.pasid !== undefined;
    if (req.last && !stopMarker) {
      const p = this.prgs[prgi];
      if (p) p.count++;
      else this.takePrg(prgi, req.pasid, 0, undefined);
    }
    this.fn.unit.pageRequest(new PageRequest(this.fn, req.pasid, prgi, req.addr, req.read, req.write, req.exec, req.priv, req.last));
    return true;
  }

  /**
   * Match a PRG response to its outstanding group by PRG index and tell the
   * group's sender, then wake budget waiters. Any code but Success/Invalid
   * is Response Failure: PRI stops. An index not outstanding counts as
   * unexpected.
   */
  receive(prgi: number, code: number): void {
    if (code !== PRG_SUCCESS && code !== PRG_INVALID) {
      this.responseFailure = true;
      this.stopped = true;
    }
    const p = this.prgs[prgi];
    if (!p) {
      this.unexpectedResponses++;
      return;
    }
    // Read the Prg before freeing it: the callback may send a group that reuses the index.
    const onResponse = p.onResponse;
    const sentAt = p.sentAt;
    this.outstandingRequests -= p.requests;
    if (--p.count === 0) this.setPrg(prgi, undefined);
    onResponse?.(code === PRG_SUCCESS ? PRG_SUCCESS : code === PRG_INVALID ? PRG_INVALID : PRG_FAILURE, sentAt);
    if (this.budgetWaiters.length > 0) {
      const waiters = this.budgetWaiters.splice(0);
      for (const w of waiters) w();
    }
  }
}
