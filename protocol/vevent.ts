/**
 * DOC: the vEVENTQ stream (the vEVENTQ fd)
 *
 * `GET /v1/contexts/:ctx/veventq/:id/stream` upgrades to a WebSocket that
 * behaves like the read() side of the kernel's vEVENTQ fd: events are
 * consumed oldest first, whole, and never answered or redelivered. Two
 * subprotocols: `vevent.v1.json` (text frames, the default) and
 * `vevent.v1.uapi` (binary frames of the kernel's records). The server sends
 * a `hello` text frame first; any frame from the client gets one `error`
 * frame (EOPNOTSUPP: the fd has no write) and the connection stays open.
 * Releasing the context or destroying the queue closes with 1001.
 *
 * Binary records, little-endian, per event: `struct iommufd_vevent_header`
 * {u32 flags; u32 sequence} (flags bit 0 LOST_EVENTS), then for a real event
 * `struct iommu_vevent_arm_smmuv3` {le64 evt[4]}; the LOST_EVENTS header has
 * no payload. `sequence` counts from 0 and wraps at 2^31.
 */
import { z } from 'zod';
import { formatU64, zU64 } from './u64.js';

/** VEVENT_STREAM_URL - the vEVENTQ stream route, fastify style. */
export const VEVENT_STREAM_URL = '/v1/contexts/:ctx/veventq/:id/stream';
/** VEVENT_SUBPROTOCOL_JSON - JSON text frames; the default when none is asked for. */
export const VEVENT_SUBPROTOCOL_JSON = 'vevent.v1.json';
/** VEVENT_SUBPROTOCOL_UAPI - binary records as read() returns them. */
export const VEVENT_SUBPROTOCOL_UAPI = 'vevent.v1.uapi';
/** VeventSubprotocol - one of the two. */
export type VeventSubprotocol = typeof VEVENT_SUBPROTOCOL_JSON | typeof VEVENT_SUBPROTOCOL_UAPI;
/** VEVENT_SUBPROTOCOLS - the subprotocols of the vEVENTQ stream; any other → 400. */
export const VEVENT_SUBPROTOCOLS: readonly VeventSubprotocol[] = Object.freeze([VEVENT_SUBPROTOCOL_JSON, VEVENT_SUBPROTOCOL_UAPI]);

/** IOMMU_VEVENTQ_FLAG_LOST_EVENTS - iommufd_vevent_header.flags bit 0. */
export const VEVENTQ_FLAG_LOST_EVENTS = 1;
/** VEVENT_HEADER_SIZE - sizeof(struct iommufd_vevent_header). */
export const VEVENT_HEADER_SIZE = 8;
/** VEVENT_ARM_SMMUV3_SIZE - sizeof(struct iommu_vevent_arm_smmuv3): four le64 words. */
export const VEVENT_ARM_SMMUV3_SIZE = 32;

/**
 * struct Vevent - one entry read from a vEVENTQ.
 * @sequence: its sequence number (0..2^31 - 1).
 * @lost: the LOST_EVENTS header (no payload): events before @sequence were dropped.
 * @evt: the arm_smmuv3 event record (absent for the header).
 */
export interface Vevent {
  sequence: number;
  lost: boolean;
  evt?: [bigint, bigint, bigint, bigint];
}

/** zVeventJson - one event in a JSON `vevents` frame. */
export const zVeventJson = z.strictObject({
  sequence: z.number().int().min(0).max(0x7fff_ffff),
  lost: z.boolean(),
  evt: z.tuple([zU64, zU64, zU64, zU64]).optional(),
});

/** zVeventServerMessage - a JSON text frame from the server on the vEVENTQ stream. */
export const zVeventServerMessage = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('hello'), protocol: z.enum([VEVENT_SUBPROTOCOL_JSON, VEVENT_SUBPROTOCOL_UAPI]), veventq_id: z.number().int().min(1) }),
  z.strictObject({ type: z.literal('vevents'), events: z.array(zVeventJson) }),
  z.strictObject({ type: z.literal('error'), errno: z.string(), message: z.string() }),
]);
/** VeventServerMessage - a parsed server text frame. */
export type VeventServerMessage = z.output<typeof zVeventServerMessage>;

/** veventToJson() - one event as a JSON frame carries it. */
export function veventToJson(e: Vevent): { sequence: number; lost: boolean; evt?: string[] } {
  return e.evt ? { sequence: e.sequence, lost: e.lost, evt: e.evt.map(formatU64) } : { sequence: e.sequence, lost: e.lost };
}

/** encodeVevents() - the binary frame of @events (header, then the 32-byte record unless LOST_EVENTS). */
export function encodeVevents(events: readonly Vevent[]): Uint8Array {
  let n = 0;
  for (const e of events) n += VEVENT_HEADER_SIZE + (e.evt ? VEVENT_ARM_SMMUV3_SIZE : 0);
  const out = new Uint8Array(n);
  const dv = new DataView(out.buffer);
  let off = 0;
  for (const e of events) {
    dv.setUint32(off, e.lost ? VEVENTQ_FLAG_LOST_EVENTS : 0, true);
    dv.setUint32(off + 4, e.sequence, true);
    off += VEVENT_HEADER_SIZE;
    if (e.evt) {
      for (let i = 0; i < 4; i++) dv.setBigUint64(off + 8 * i, e.evt[i]!, true);
      off += VEVENT_ARM_SMMUV3_SIZE;
    }
  }
  return out;
}

/**
 * decodeVevents() - the events of a binary frame.
 * Throws: RangeError when the frame does not hold whole entries.
 */
export function decodeVevents(buf: Uint8Array): Vevent[] {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const out: Vevent[] = [];
  let off = 0;
  while (off < buf.length) {
    if (off + VEVENT_HEADER_SIZE > buf.length) throw new RangeError('truncated vEVENT header');
    const flags = dv.getUint32(off, true);
    const sequence = dv.getUint32(off + 4, true);
    off += VEVENT_HEADER_SIZE;
    if (flags & VEVENTQ_FLAG_LOST_EVENTS) {
      out.push({ sequence, lost: true });
      continue;
    }
    if (off + VEVENT_ARM_SMMUV3_SIZE > buf.length) throw new RangeError('truncated vEVENT record');
    const evt: [bigint, bigint, bigint, bigint] = [0n, 0n, 0n, 0n];
    for (let i = 0; i < 4; i++) evt[i] = dv.getBigUint64(off + 8 * i, true);
    off += VEVENT_ARM_SMMUV3_SIZE;
    out.push({ sequence, lost: false, evt });
  }
  return out;
}
