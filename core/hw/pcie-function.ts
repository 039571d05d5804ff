/**
 * A PCIe function with ATS, PRI and PASID, assembled from its parts by role:
 * the PRI state machine and PRG index allocation (pri.ts), the log of every
 * response received (response-log.ts), the DMA engine (dma.ts) and the
 * built-in traffic generator (traffic-gen.ts). The function is what the
 * IOMMU unit sees as a requester and answers.
 */
import type { Scheduler } from '../sched.js';
import type { IommuUnit, PageRequestFields } from './iommu-unit.js';
import type { SparseMemory } from './memory.js';
import { DmaRun, type DmaRequest, type DmaResult } from './dma.js';
import { PriState } from './pri.js';
import { ResponseLog, type ResponseLogEntry } from './response-log.js';
import { TrafficRun, type TrafficRequest, type TrafficStatus } from './traffic-gen.js';

export type { DmaRequest, DmaResult, DmaStatus } from './dma.js';
export type { PrgCallback, PrgPerm, PrgSender } from './pri.js';
export { ResponseLog, type ResponseCodeName, type ResponseLogEntry } from './response-log.js';
export type { TrafficRequest, TrafficStatus } from './traffic-gen.js';

export interface PcieCaps {
  /** 0 = no PASID. */
  pasidBits: number;
  pri: boolean;
  /** Outstanding Page Request Allocation (1..512). */
  priOutstanding: number;
  ats: boolean;
  isVf: boolean;
  /** PRI status "PRG Response PASID Required". */
  prgResponseNeedsPasid: boolean;
  /** SMMUv3 platform device: its transactions can stall (the stall model); absent elsewhere. */
  stall?: boolean;
}

/**
 * PcieFunction - one function on the simulated bus: its capabilities, its
 * PRI state, its response log, DMA and traffic generation through the IOMMU
 * unit it sits behind.
 */
export class PcieFunction {
  /** The PRI capability's state: budget, PRG indexes, status bits. */
  readonly pri: PriState = new PriState(this);
  /** Every response received, in order (seq = index + 1). */
  readonly responses = new ResponseLog();
  private traffic: TrafficRun | undefined;
  /** Set when the function is hot-unplugged. */
  removed = false;
  /**
   * dev->iommu: the IOMMU driver's per-device data, set when the driver
   * probes the function and cleared when it releases it (opaque here).
   */
  iommu: unknown = undefined;

  constructor(
    readonly name: string,
    readonly rid: number,
    readonly caps: PcieCaps,
    readonly unit: IommuUnit,
    readonly mem: SparseMemory,
    readonly sched: Scheduler,
  ) {}

  /** PRI enabled, not stopped, and the function present. */
  get priEnabled(): boolean {
    return this.pri.priEnabled;
  }

  /** PRI Response Failure status bit. */
  get responseFailure(): boolean {
    return this.pri.responseFailure;
  }

  /** PRI Stopped: no page requests until reset. */
  get stopped(): boolean {
    return this.pri.stopped;
  }

  /** Responses whose PRG index was not outstanding (PCIe "Unexpected PRG Index"). */
  get unexpectedResponses(): number {
    return this.pri.unexpectedResponses;
  }

  /** Requests in flight (bounded by caps.priOutstanding). */
  get outstandingRequests(): number {
    return this.pri.outstandingRequests;
  }

  /** PRG indexes currently outstanding. */
  get outstandingGroups(): number {
    return this.pri.outstandingGroups;
  }

  /** Clear Response Failure and re-enable PRI (PRI control Reset + Enable). */
  priReset(): void {
    this.pri.reset();
  }

  /**
   * Inject one raw page request as the function would send it (the kernel
   * selftest's TRIGGER_IOPF). A last request (not a Stop Marker) makes its PRG
   * index outstanding until answered. Returns false when PRI is off or
   * stopped and the function has no SMMUv3 `stall` cap (it sends nothing).
   */
  injectPageRequest(req: PageRequestFields): boolean {
    return this.pri.inject(req);
  }

  /**
   * A PRG response arrives. Logged always; matched to the outstanding group by
   * PRG index. Any code but Success/Invalid is Response Failure: PRI stops.
   */
  receiveResponse(pasid: number | undefined, prgi: number, code: number): void {
    this.responses.push(pasid, prgi, code);
    this.pri.receive(prgi, code);
  }

  /**
   * SMMUv3: a CMD_RESUME of one of this function's stalled transactions.
   * Nothing reaches the function's PRI (a stall is not a page request);
   * the log records it as the response to that stall (grpid = the stall
   * tag; Success for RETRY, Invalid for ABORT), so exactly one response per
   * stall is observable as for page requests.
   */
  resumed(ssid: number | undefined, stag: number, retry: boolean): void {
    this.responses.push(ssid, stag, retry ? 0 : 1);
  }

  /** Responses with seq > since. */
  responsesSince(since: number): ResponseLogEntry[] {
    return this.responses.since(since);
  }

  /**
   * Perform a DMA through the IOMMU; `done` is called once with the outcome.
   * Faulting pages are requested with one PRG per attempt; after Success the
   * translation is retried, and after 3 rounds without progress the DMA ends
   * `invalid`.
   */
  dma(req: DmaRequest, done: (r: DmaResult) => void): void {
    new DmaRun(this, req, done).start();
  }

  /** Start the traffic generator. Throws Error('busy') if one runs. */
  startTraffic(req: TrafficRequest): void {
    if (this.traffic?.busy) throw new Error('busy');
    this.traffic = new TrafficRun(this.pri, this.sched, req);
    this.traffic.issue();
  }

  /** The running or last traffic run's status (undefined before the first run). */
  trafficStatus(): TrafficStatus | undefined {
    return this.traffic?.status();
  }

  /** Stop the traffic generator (outstanding groups still get their responses). */
  stopTraffic(): void {
    this.traffic?.stop();
  }
}
