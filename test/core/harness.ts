/**
 * A small world for core tests: a platform on a manual scheduler, one
 * context, and helpers named in the notation of the acceptance cases
 * (T = trigger one page request, read/write on a fault "fd", HW log).
 */
import {
  ManualScheduler,
  Platform,
  iommufdDeviceAttach,
  iommufdDeviceBind,
  iommufdFaultAlloc,
  iommufdHwptAlloc,
  iommufdIoasAlloc,
  faultGroupDevId,
  type IommufdCtx,
  type IommufdDevice,
  type IommufdFault,
  type IommufdFaultConn,
  type IommufdHwpt,
  type IommufdIoas,
  kernelProfile,
  type PlatformDesc,
  IommuError,
  RESPOND_OK,
  respondErrorMessage,
} from '../../core/index.js';
import assert from 'node:assert/strict';
import { encodeRecord, decodeRecords, type IommuHwptPgfault } from '../../protocol/records.js';

export const NEST_PARENT = 1;
export const FAULT_ID_VALID = 4;
export const HWPT_PASID = 8;

export interface WorldOptions {
  model?: 'vtd' | 'smmuv3' | 'generic';
  /** A kernel profile name (default latest). */
  kernel?: string;
  hostVaBits?: 48 | 57;
  devices?: PlatformDesc['devices'];
  prqDepth?: number;
}

export class World {
  readonly sched = new ManualScheduler();
  readonly platform: Platform;
  readonly ctx: IommufdCtx;

  constructor(opts: WorldOptions = {}) {
    this.platform = new Platform({
      sched: this.sched,
      desc: {
        iommus: [{ name: 'iommu0', model: opts.model ?? 'vtd', prq_depth: opts.prqDepth ?? 1024, host_va_bits: opts.hostVaBits }],
        devices: opts.devices ?? [
          { name: 'd0', bdf: '00:02.0' },
          { name: 'd1', bdf: '00:03.0' },
        ],
      },
      ...(opts.kernel ? { profile: kernelProfile(opts.kernel)! } : {}),
    });
    this.ctx = this.platform.createContext();
  }

  bind(name = 'd0'): IommufdDevice {
    return iommufdDeviceBind(this.ctx, name);
  }

  ioas(): IommufdIoas {
    return iommufdIoasAlloc(this.ctx);
  }

  fault(opts: Parameters<typeof iommufdFaultAlloc>[1] = {}): IommufdFault {
    return iommufdFaultAlloc(this.ctx, opts);
  }

  /** A nest-parent paging hwpt P on a fresh IOAS. */
  parent(idev: IommufdDevice, ioas = this.ioas()): IommufdHwpt {
    return iommufdHwptAlloc(this.ctx, { dev_id: idev.id, pt_id: ioas.id, flags: NEST_PARENT });
  }

  /** H: a nested hwpt on `parent` delivering to `fault`. */
  nested(idev: IommufdDevice, parent: IommufdHwpt, fault: IommufdFault | undefined, extraFlags = 0, pgtbl = 0x1000n): IommufdHwpt {
    return iommufdHwptAlloc(this.ctx, {
      dev_id: idev.id,
      pt_id: parent.id,
      flags: (fault ? FAULT_ID_VALID : 0) | extraFlags,
      data_type: 'vtd_s1',
      data: { flags: 0, pgtbl_addr: pgtbl, addr_width: 48 },
      ...(fault ? { fault_id: fault.id } : {}),
    });
  }

  /** D bound, F, P, H (FAULT_ID_VALID, fault F), nothing attached. */
  unattached(opts: { pasidHwpt?: boolean; name?: string } = {}): { d: IommufdDevice; f: IommufdFault; p: IommufdHwpt; h: IommufdHwpt } {
    const d = this.bind(opts.name ?? 'd0');
    const f = this.fault();
    const p = this.parent(d);
    const h = this.nested(d, p, f, opts.pasidHwpt ? HWPT_PASID : 0);
    return { d, f, p, h };
  }

  /** D bound, F, P, H (FAULT_ID_VALID, fault F), D attached at the RID. */
  standard(opts: { pasidHwpt?: boolean; name?: string } = {}): { d: IommufdDevice; f: IommufdFault; p: IommufdHwpt; h: IommufdHwpt } {
    const st = this.unattached(opts);
    iommufdDeviceAttach(st.d, st.h.id);
    return st;
  }

  /** T(pasid, grpid, last, perm, addr): one raw page request, processed before returning. */
  T(pasid: number | undefined, grpid: number, last: boolean, perm = 3, addr = 0xdeadb000n, dev = 'd0'): void {
    this.platform.injectPageRequest(dev, { pasid, grpid, addr, perm, last });
  }

  /** The device's HW log of page group responses. */
  log(dev = 'd0'): Array<{ pasid: number | undefined; grpid: number; code: string }> {
    return this.platform.responses(dev).map(({ pasid, grpid, code }) => ({ pasid, grpid, code }));
  }

  /** Open a fault "fd" (a connection with a large window) that records notices. */
  fd(f: IommufdFault, window = 65536): Fd {
    return new Fd(f, window);
  }

  /**
   * The fixture of the teardown cases: on a new fd of `f`, group 1 (grpid 1)
   * read and unanswered, group 2 (grpid 2) queued unread.
   */
  readAndUnread(f: IommufdFault, dev = 'd0'): { fd: Fd; cookie: number } {
    const fd = this.fd(f);
    this.T(undefined, 1, true, 3, 0xdeadb000n, dev);
    const [r] = fd.records(40);
    this.T(undefined, 2, true, 3, 0xdeadb000n, dev);
    return { fd, cookie: r!.cookie };
  }

  /**
   * The fixture of the write cases: {@link standard}, a new fd of its fault
   * queue, and groups with grpid 1..@n reported and read (cookies 1..@n).
   */
  delivered(n: number): ReturnType<World['standard']> & { fd: Fd } {
    const st = this.standard();
    const fd = this.fd(st.f);
    for (let g = 1; g <= n; g++) this.T(undefined, g, true);
    fd.read(40 * n);
    return { ...st, fd };
  }

  /**
   * The fixture of the replace cases: D bound, two fault queues F1 and F2,
   * nested hwpts H1 (→ F1) and H2 (→ F2) on one parent, D attached to H1.
   */
  twoQueues(): { d: IommufdDevice; f1: IommufdFault; f2: IommufdFault; h1: IommufdHwpt; h2: IommufdHwpt } {
    const d = this.bind();
    const f1 = this.fault();
    const f2 = this.fault();
    const p = this.parent(d);
    const h1 = this.nested(d, p, f1);
    const h2 = this.nested(d, p, f2);
    iommufdDeviceAttach(d, h1.id);
    return { d, f1, f2, h1, h2 };
  }

  /** The invariant: nothing is in flight anywhere, and no response was unexpected. */
  audit(): ReturnType<Platform['audit']> {
    this.sched.run();
    return this.platform.audit();
  }
}

/** One refused entry of a {@link respond} batch. */
export interface RespondError {
  index: number;
  cookie: number;
  errno: 'EINVAL';
  message: string;
}

/** What a {@link respond} batch did. */
export interface RespondResult {
  /** Responses accepted. */
  ok: number;
  errors: RespondError[];
  /** Index of the first bad entry when stopping at the first error, else -1. */
  stoppedAt: number;
}

/**
 * respond() - a write() of several responses on @fault, entry by entry
 * through IommufdFault.respondOne(), the path the daemon's stream runs. A
 * bad entry is an EINVAL with the daemon's message; with @stopAtFirst (the
 * binary write() semantics) processing stops there, otherwise each entry is
 * judged on its own (JSON mode).
 */
export function respond(fault: IommufdFault, entries: ReadonlyArray<{ cookie: number; code: number }>, stopAtFirst: boolean): RespondResult {
  const errors: RespondError[] = [];
  let ok = 0;
  for (let i = 0; i < entries.length; i++) {
    const { cookie, code } = entries[i]!;
    const st = fault.respondOne(cookie, code);
    if (st === RESPOND_OK) {
      ok++;
      continue;
    }
    errors.push({ index: i, cookie, errno: 'EINVAL', message: respondErrorMessage(st, cookie, code) });
    if (stopAtFirst) return { ok, errors, stoppedAt: i };
  }
  return { ok, errors, stoppedAt: -1 };
}

/** The fault fd: read(count) and write(bytes) with the kernel's rules, over a core connection. */
export class Fd {
  readonly conn: IommufdFaultConn;
  readonly notices: Array<{ type: string; value: unknown }> = [];
  wakeups = 0;

  constructor(
    readonly fault: IommufdFault,
    window: number,
  ) {
    this.conn = fault.open(window, {
      readable: () => this.wakeups++,
      expired: (cookies) => this.notices.push({ type: 'expired', value: cookies }),
      overflow: (n) => this.notices.push({ type: 'overflow', value: n }),
      revoked: (cookies, cause) => this.notices.push({ type: 'revoked', value: { cause, cookies } }),
      kill: () => this.notices.push({ type: 'kill', value: null }),
    });
  }

  /** read(count): ESPIPE unless a multiple of 40; whole groups that fit; 0 bytes when empty. */
  read(count: number): Uint8Array {
    if (count % 40 !== 0) throw new IommuError('ESPIPE', 'read length must be a multiple of 40');
    const groups = this.fault.read(this.conn, count / 40);
    let n = 0;
    for (const g of groups) n += g.faultCount;
    const out = new Uint8Array(n * 40);
    let off = 0;
    for (const g of groups) {
      for (const f of g.faultList()) {
        const p = f.prm;
        encodeRecord(out, off, {
          flags: p.flags,
          dev_id: faultGroupDevId(g),
          pasid: p.pasid,
          grpid: p.grpid,
          perm: p.perm,
          addr: p.addr,
          length: 0,
          cookie: g.cookie,
        });
        off += 40;
      }
    }
    return out;
  }

  records(count = 40 * 1024): IommuHwptPgfault[] {
    return decodeRecords(this.read(count));
  }

  /** write(responses): returns bytes consumed, or throws the first entry's errno when it failed first. */
  write(rs: Array<[cookie: number, code: number]>): number {
    const r = respond(
      this.fault,
      rs.map(([cookie, code]) => ({ cookie, code })),
      true,
    );
    if (r.stoppedAt === 0) throw new IommuError('EINVAL', r.errors[0]!.message);
    return r.ok * 8;
  }

  /** write() of raw bytes: ESPIPE unless a multiple of 8; then as {@link write}. */
  writeBytes(buf: Uint8Array): number {
    if (buf.length % 8 !== 0) throw new IommuError('ESPIPE', 'write length must be a multiple of 8');
    const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    const rs: Array<[number, number]> = [];
    for (let i = 0; i < buf.length; i += 8) rs.push([dv.getUint32(i, true), dv.getUint32(i + 4, true)]);
    return rs.length === 0 ? 0 : this.write(rs);
  }

  /** poll(): IN when groups wait for delivery; OUT always. */
  poll(): { in: boolean; out: boolean } {
    return { in: this.fault.readable, out: true };
  }

  close(): void {
    this.fault.close(this.conn);
  }
}

/** Assert helper: run fn and return the errno it threw. */
export function errnoOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    if (e instanceof IommuError) return e.errno;
    throw e;
  }
  return undefined;
}

/** A nested guest as largeLeafInvalidation() drives it: its stage-1 table, its RAM, its DMA and its invalidation. */
export interface LeafGuest {
  /** Map @va to @gpa writable, a leaf of @size bytes. */
  map(va: bigint, gpa: bigint, size: 0x1000n | 0x20_0000n): void;
  unmap(va: bigint): void;
  /** A fresh 4 KiB guest page. */
  alloc(): bigint;
  writeByte(gpa: bigint, b: number): void;
  /** The byte a 1-byte DMA read at @iova returns. */
  readByte(iova: bigint): number | undefined;
  /** The guest's single-page invalidation of @va. */
  invalidate(va: bigint): void;
}

/**
 * largeLeafInvalidation() - a 2 MiB leaf at 1 GiB and a 4 KiB page right
 * after it, two pages of the leaf and the page read (cached); the guest
 * retargets both (still stale), then invalidates one page at the leaf's
 * base: both pages of the leaf walk again, the page after it stays cached.
 */
export function largeLeafInvalidation(g: LeafGuest): void {
  const va = 0x4000_0000n;
  const [oldLarge, newLarge] = [0x40_0000n, 0x60_0000n];
  const outside = va + 0x20_0000n;
  const [oldPage, newPage] = [g.alloc(), g.alloc()];
  g.writeByte(oldLarge + 0x1000n, 1);
  g.writeByte(oldLarge + 0x5000n, 2);
  g.writeByte(newLarge + 0x1000n, 3);
  g.writeByte(newLarge + 0x5000n, 4);
  g.writeByte(oldPage, 5);
  g.writeByte(newPage, 6);
  g.map(va, oldLarge, 0x20_0000n);
  g.map(outside, oldPage, 0x1000n);
  const read3 = (): Array<number | undefined> => [g.readByte(va + 0x1000n), g.readByte(va + 0x5000n), g.readByte(outside)];
  assert.deepEqual(read3(), [1, 2, 5], 'both pages of the leaf and the page after it cached');
  g.unmap(va);
  g.map(va, newLarge, 0x20_0000n);
  g.unmap(outside);
  g.map(outside, newPage, 0x1000n);
  assert.deepEqual(read3(), [1, 2, 5], 'stale until invalidated');
  g.invalidate(va);
  assert.equal(g.readByte(va + 0x5000n), 4, 'the other page of the leaf walks again');
  assert.equal(g.readByte(va + 0x1000n), 3);
  assert.equal(g.readByte(outside), 5, 'the page after the leaf is another leaf: still cached');
}
