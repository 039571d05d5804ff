/**
 * SMMUv3 event records and the vEVENTQ reference, for the tests and the
 * vEVENTQ bench: smmuEvent() builds the 32-byte record the unit would write
 * (a stage-1 F_TRANSLATION unless told otherwise), and VeventqRef checks
 * what a reader of one vEVENTQ sees against the kernel's rules.
 */
import assert from 'node:assert/strict';
import type { IommufdVeventq, IommufdVevent } from '../../core/index.js';
import { EVT_CLASS_IN, EVT_ID, decodeEvent, encodeEvent, type SmmuEvent } from '../../core/hw/smmuv3.js';

/**
 * smmuEvent() - the event record of a stage-1 fault of stream @sid at @addr
 * (a read, no SubstreamID, S2 clear, CLASS IN), event @id (F_TRANSLATION by
 * default), with @extra fields overriding.
 */
export function smmuEvent(sid: number, id: number = EVT_ID.F_TRANSLATION, extra: Partial<SmmuEvent> = {}): [bigint, bigint, bigint, bigint] {
  return encodeEvent({
    id,
    sid,
    ssid: undefined,
    stag: 0,
    stall: false,
    priv: false,
    exec: false,
    read: true,
    s2: false,
    class: EVT_CLASS_IN,
    addr: 0x1234_5000n,
    ipa: 0n,
    ...extra,
  });
}

/** Sequence numbers wrap at 2^31. */
export const SEQ_MOD = 0x8000_0000;

/** The tag an event of {@link VeventqRef} carries: its record's address >> 12. */
export function eventTag(data: readonly bigint[]): number {
  return Number(decodeEvent(data).addr >> 12n);
}

/**
 * VeventqRef - a reference of one vEVENTQ's lifetime. Tell it every event
 * the queue took ({@link reported}, in order, each with a distinct tag) and
 * every read ({@link read}); it asserts, at each step, that every event is
 * read at most once and in report order, that a reader's skipped sequence
 * numbers all belong to dropped events and that the skip ends at a
 * LOST_EVENTS header or at the next kept event (no event lost without a
 * LOST_EVENTS header), and ({@link checkCounters}) that the queue's
 * queued/lost/sequence counters agree.
 */
export class VeventqRef {
  /** Sequence number of each reported event, by report index. */
  private readonly seqOf: number[] = [];
  /** Report index of each tag. */
  private readonly index = new Map<number, number>();
  /** Report indexes the queue kept (not dropped for depth). */
  private readonly kept = new Set<number>();
  private readonly readIdx = new Set<number>();
  private queuedKept = 0;
  private lost = 0;
  /** The newest event was dropped and no header naming it was read yet: a LOST_EVENTS header must be queued. */
  private headerDue = false;
  private lastRead = -1;
  private expectSeq: number | undefined;
  private readonly startSeq: number;
  private readonly lostAtStart: number;

  constructor(
    readonly q: IommufdVeventq,
    /** The vSID every event must carry. */
    private readonly vsid: number,
  ) {
    this.startSeq = q.sequence;
    this.lostAtStart = q.counters.lost;
    assert.equal(q.queued, 0, 'a reference starts on an empty queue');
  }

  /** The queue took event @tag (iommufd_viommu_report_event returned 0). */
  reported(tag: number): void {
    const i = this.seqOf.length;
    this.index.set(tag, i);
    this.seqOf.push((this.startSeq + i) % SEQ_MOD);
    if (this.queuedKept < this.q.depth) {
      this.kept.add(i);
      this.queuedKept++;
      this.headerDue = false;
    } else {
      this.lost++;
      this.headerDue = true;
    }
  }

  /** A reader asked for @max entries and got @got. */
  read(got: readonly IommufdVevent[], max: number): void {
    assert.ok(got.length <= max, 'no more entries than asked for');
    for (const e of got) {
      if (e.data === undefined) {
        // LOST_EVENTS: its sequence is a dropped event's, after the last one read.
        assert.equal(e.flags, 1);
        const i = this.seqOf.indexOf(e.sequence, this.lastRead + 1);
        assert.ok(i > this.lastRead && !this.kept.has(i), `header ${e.sequence} names a dropped event`);
        for (let t = this.lastRead + 1; t <= i; t++) assert.ok(!this.kept.has(t), `event ${t} kept but skipped`);
        assert.ok(this.headerDue, 'a LOST_EVENTS header only while the newest event was dropped');
        assert.equal(i, this.seqOf.length - 1, 'the header names the newest dropped event');
        this.headerDue = false;
        this.lastRead = i;
        this.expectSeq = (e.sequence + 1) % SEQ_MOD;
        continue;
      }
      assert.equal(e.flags, 0);
      assert.equal(decodeEvent(e.data).sid, this.vsid, 'the SID is the vSID');
      const i = this.index.get(eventTag(e.data));
      assert.ok(i !== undefined, `event ${eventTag(e.data)} was never reported to this queue`);
      assert.ok(!this.readIdx.has(i), `event ${i} read twice`);
      this.readIdx.add(i);
      assert.ok(this.kept.has(i), `event ${i} was dropped but read`);
      assert.ok(i > this.lastRead, 'in order');
      assert.equal(e.sequence, this.seqOf[i]);
      // A gap before a kept event: every skipped one was dropped (the header was taken out by this event).
      for (let t = this.lastRead + 1; t < i; t++) assert.ok(!this.kept.has(t), `event ${t} kept but skipped`);
      if (this.expectSeq !== undefined && e.sequence !== this.expectSeq) assert.ok(i - this.lastRead > 1, 'a sequence gap means dropped events');
      this.lastRead = i;
      this.expectSeq = (e.sequence + 1) % SEQ_MOD;
      this.queuedKept--;
    }
    // A short read emptied the queue: every event reported so far was read or stands behind a header read.
    if (got.length < max) assert.equal(this.lastRead, this.seqOf.length - 1, 'no event lost without a LOST_EVENTS header');
  }

  /** The queue's counters agree with the reference. */
  checkCounters(): void {
    assert.equal(this.q.numEvents, this.queuedKept);
    assert.equal(this.q.queued, this.queuedKept + (this.headerDue ? 1 : 0), 'the LOST_EVENTS header is queued exactly when due');
    assert.equal(this.q.counters.lost - this.lostAtStart, this.lost);
    assert.equal(this.q.sequence, (this.startSeq + this.seqOf.length) % SEQ_MOD);
  }

  /** Read everything left: every kept event has then been read, once. */
  drain(): void {
    this.read(this.q.read(), Infinity);
    for (const t of this.kept) assert.ok(this.readIdx.has(t), `kept event ${t} never read`);
    assert.equal(this.q.queued, 0);
  }
}
