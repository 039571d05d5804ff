/**
 * The vEVENTQ object (the vEVENTQ half of drivers/iommu/iommufd/eventq.c,
 * with iommufd_viommu_report_event from driver.c): a vIOMMU's queue of
 * events of one type, read whole and oldest first, never answered.
 *
 * Every reported event, kept or dropped, takes the next sequence number
 * (wrapping at 2^31). When `depth` events are queued a new one is dropped
 * and the single LOST_EVENTS header (no payload) moves to the tail carrying
 * the dropped event's sequence; a real event queued later takes the header
 * out again, and the gap in the sequence numbers tells the reader.
 */
import { IommuError } from '../iommu/errors.js';
import type { IommuViommuType } from '../iommu/viommu.js';
import { IommufdObject, type IommufdCtx } from './main.js';
import type { IommufdViommu } from './viommu.js';

/** IOMMU_VEVENTQ_FLAG_LOST_EVENTS. */
export const IOMMU_VEVENTQ_FLAG_LOST_EVENTS = 1;
/** Sequence numbers wrap from INT_MAX to 0. */
export const VEVENTQ_SEQUENCE_MASK = 0x7fff_ffff;

/** One entry read from a vEVENTQ: struct iommufd_vevent_header plus the type's record (absent for LOST_EVENTS). */
export interface IommufdVevent {
  flags: number;
  sequence: number;
  /** The record's le64 words (arm_smmuv3: four); undefined for the LOST_EVENTS header. */
  data: readonly bigint[] | undefined;
}

/** Totals of one vEVENTQ (the daemon's metrics read them). */
export interface VeventqCounters {
  reported: number;
  read: number;
  lost: number;
}

/**
 * Listener of an open vEVENTQ stream: @readable is called (synchronously)
 * when an entry is queued; @kill when the queue goes away (context release).
 */
export interface VeventqListener {
  readable(): void;
  kill(): void;
}

/** IOMMUFD_OBJ_VEVENTQ. */
export class IommufdVeventq extends IommufdObject {
  readonly type = 'veventq' as const;
  /** Real events queued (the kernel's num_events; the header does not count). */
  private readonly events: IommufdVevent[] = [];
  private head = 0;
  /** The sequence the LOST_EVENTS header carries while it is queued (always at the tail). */
  private lostHeader: number | undefined = undefined;
  /** The next sequence number. */
  sequence = 0;
  readonly counters: VeventqCounters = { reported: 0, read: 0, lost: 0 };
  readonly listeners = new Set<VeventqListener>();

  constructor(
    ictx: IommufdCtx,
    readonly viommu: IommufdViommu,
    readonly vtype: IommuViommuType,
    readonly depth: number,
  ) {
    super(ictx);
  }

  /** Real events waiting to be read. */
  get numEvents(): number {
    return this.events.length - this.head;
  }

  /** Entries a read would return now: the events plus the LOST_EVENTS header when queued. */
  get queued(): number {
    return this.numEvents + (this.lostHeader === undefined ? 0 : 1);
  }

  /** Open streams reading this queue. */
  get connections(): number {
    return this.listeners.size;
  }

  describe(): Record<string, unknown> {
    return { viommu_id: this.viommu.id, type: this.vtype, depth: this.depth, queued: this.queued, sequence: this.sequence, lost: this.counters.lost };
  }

  /**
   * iommufd_viommu_report_event's queue part (iommufd_vevent_handler): queue
   * @data, or drop it and (re)place the LOST_EVENTS header when full.
   */
  report(data: readonly bigint[]): void {
    const seq = this.sequence;
    this.sequence = (seq + 1) & VEVENTQ_SEQUENCE_MASK;
    this.counters.reported++;
    this.ictx.env.observer.veventReported?.();
    if (this.numEvents >= this.depth) {
      this.lostHeader = seq;
      this.counters.lost++;
      this.ictx.env.observer.veventLost?.();
    } else {
      this.lostHeader = undefined;
      this.events.push({ flags: 0, sequence: seq, data });
    }
    for (const l of this.listeners) l.readable();
  }

  /**
   * iommufd_veventq_fops_read: take up to @max entries (events, then the
   * header if queued), oldest first. Whole entries only; nothing is answered.
   */
  read(max = Infinity): IommufdVevent[] {
    const out: IommufdVevent[] = [];
    while (out.length < max && this.head < this.events.length) {
      out.push(this.events[this.head]!);
      this.events[this.head++] = undefined as unknown as IommufdVevent;
    }
    if (this.head === this.events.length) {
      this.events.length = 0;
      this.head = 0;
    } else if (this.head > 1024 && this.head * 2 > this.events.length) {
      this.events.splice(0, this.head);
      this.head = 0;
    }
    const n = out.length;
    if (out.length < max && this.lostHeader !== undefined) {
      out.push({ flags: IOMMU_VEVENTQ_FLAG_LOST_EVENTS, sequence: this.lostHeader, data: undefined });
      this.lostHeader = undefined;
    }
    if (n > 0) {
      this.counters.read += n;
      this.ictx.env.observer.veventRead?.(n);
    }
    return out;
  }

  /**
   * A stream opens (it holds the queue: destroy is EBUSY meanwhile). ENOSPC
   * beyond the per-queue stream limit (the fault queues' maxStreamsPerFault).
   */
  addListener(l: VeventqListener): void {
    if (this.listeners.has(l)) return;
    const max = this.ictx.env.limits.maxStreamsPerFault;
    if (max > 0 && this.listeners.size >= max) throw new IommuError('ENOSPC', `vEVENTQ ${this.id} already has ${max} open streams`);
    this.listeners.add(l);
    this.users++;
  }

  removeListener(l: VeventqListener): void {
    if (this.listeners.delete(l)) this.users--;
  }

  destroy(): void {
    if (this.viommu.veventqs.get(this.vtype) === this) {
      this.viommu.veventqs.delete(this.vtype);
      this.viommu.users--;
    }
    this.events.length = 0;
    this.head = 0;
    this.lostHeader = undefined;
    const open = [...this.listeners];
    this.listeners.clear();
    for (const l of open) l.kill();
  }
}

/**
 * IOMMU_VEVENTQ_ALLOC (iommufd_veventq_alloc): a queue of @type events on
 * vIOMMU @viommuId. ENOENT for a bad vIOMMU; EOPNOTSUPP for a type the
 * vIOMMU does not report, non-zero flags or __reserved; EINVAL for depth 0;
 * EEXIST when the vIOMMU already has a queue of that type.
 */
export function iommufdVeventqAlloc(
  ictx: IommufdCtx,
  req: { viommu_id: number; type: IommuViommuType; depth: number; flags?: number; __reserved?: number },
): IommufdVeventq {
  if ((req.flags ?? 0) !== 0 || (req.__reserved ?? 0) !== 0) throw new IommuError('EOPNOTSUPP', 'flags and __reserved must be 0');
  const viommu = ictx.get<IommufdViommu>(req.viommu_id, 'viommu');
  if (req.type !== viommu.vtype) throw new IommuError('EOPNOTSUPP', `vIOMMU ${viommu.id} reports no ${String(req.type)} events`);
  if (!Number.isInteger(req.depth) || req.depth < 1) throw new IommuError('EINVAL', 'veventq depth must be at least 1');
  if (viommu.veventqs.has(req.type))
    throw new IommuError('EEXIST', `vIOMMU ${viommu.id} already has a ${req.type} vEVENTQ (${viommu.veventqs.get(req.type)!.id})`);
  return ictx.create(new IommufdVeventq(ictx, viommu, req.type, req.depth), (q) => {
    viommu.veventqs.set(req.type, q);
    viommu.users++;
  });
}

/**
 * iommufd_viommu_report_event: hand @data to @viommu's vEVENTQ of @type.
 * Returns 0, or -EOPNOTSUPP when the vIOMMU has no such queue (the event is
 * then the host's).
 */
export function iommufdViommuReportEvent(viommu: IommufdViommu, type: IommuViommuType, data: readonly bigint[]): number {
  const q = viommu.veventqs.get(type);
  if (!q) return -95;
  q.report(data);
  return 0;
}
