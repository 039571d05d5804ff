/**
 * DOC: the arm guest
 *
 * The guest side of SMMUv3 nesting: what a guest's arm-smmu-v3 driver and
 * io-pgtable-arm do with a virtual SMMUv3 and its passthrough devices.
 *
 * Setup (setup()): for each device (its guest-chosen vSID) a linear table of
 * 2^S1CDMax context descriptors in guest RAM, one CD per SubstreamID used:
 * CD 0 for transactions without a PASID (STE.S1DSS = SSID0 when there are
 * PASIDs), and CD n for PASID n. Each address space (the RID's, and each
 * PASID's, shared by the devices as an SVA mm would be) is an AArch64 table
 * (GuestArmPageTable) with its own ASID; its CDs have S=1 (faults stall),
 * except those of the `terminate` PASIDs (S=0: their faults terminate and
 * are only reported). After writing the CDs the guest issues CFGI_CD for
 * each (vSID, SSID) and a CMD_SYNC, as arm_smmu_write_cd_entry does. Then
 * it installs each device's STE (steOf(): words 0-1; words 2-7 zero) in its
 * linear stream table in guest RAM (SMMU_STRTAB_BASE: 2^strtabLog2 64-byte
 * STEs indexed by vSID, enough for the largest vSID, contiguous pages) and
 * issues CFGI_STE for it and a CMD_SYNC, as arm_smmu_write_ste and
 * arm_smmu_sync_ste_for_sid do; the VMM reads the STE from there.
 *
 * The event handler (the driver's evtq thread) wakes on the event queue
 * interrupt, reads every record (EventQueueReader), notes an overflow, and
 * handles the records one at a time:
 *
 * - a stall (STALL set) inside an allowed VA range, with a permission the
 *   range grants, is served: a missing page gets a fresh page of guest RAM
 *   mapped with the permission asked for; a write to a read-only page
 *   upgrades its descriptor, and a valid descriptor changed needs
 *   TLBI_NH_VA (its ASID, the page, leaf) + CMD_SYNC before the device
 *   retries; then CMD_RESUME with RETRY;
 * - a stall outside the ranges, a write to a read-only range, an
 *   instruction fetch, a stream or SubstreamID the guest does not know, or
 *   one it cannot serve (out of memory, a failed memory access) gets
 *   CMD_RESUME with ABORT: the transaction terminates;
 * - any other record is an unrecoverable event (a terminated transaction):
 *   counted by its id, nothing to answer.
 */
import { GuestArmPageTable } from './arm-page-table.js';
import { GUEST_PAGE, type GuestRam } from './guest-memory.js';
import type { AllowedRange } from './guest.js';
import {
  CD_BYTES,
  cdWords,
  cmdCfgiCd,
  cmdResume,
  cmdSync,
  cmdTlbiNhVa,
  EVT_BYTES,
  parseEvent,
  RESUME_RESP,
  cmdCfgiSte,
  STE_BYTES,
  STE_S1DSS_SSID0,
  steWords,
  STRTAB_MAX_LOG2,
  type Command,
  type GuestEvent,
} from './smmuv3-guest.js';
import { EventQueueReader, VirtualEventQueue, type EventBatch } from './vsmmu-evtq.js';

/**
 * struct ArmGuestOptions - the guest's configuration.
 * @mem: its RAM.
 * @vsids: the vSIDs of its devices (the StreamIDs its driver knows them by).
 * @pasids: PASIDs whose CDs stall (S=1), on every device.
 * @terminate: PASIDs whose CDs do not stall (S=0): faults there terminate.
 * @allow: the VA ranges the guest serves stalls in.
 * @evtqLog2: log2 of the event queue's records.
 * @t0sz: of every CD (default 16, 48-bit VAs).
 * @issue: the command queue: the VMM traps the guest's commands in order
 *   and resolves once a CMD_SYNC among them has completed.
 */
export interface ArmGuestOptions {
  mem: GuestRam;
  vsids: readonly number[];
  pasids: readonly number[];
  terminate: readonly number[];
  allow: readonly AllowedRange[];
  evtqLog2: number;
  t0sz?: number | undefined;
  issue(cmds: readonly Command[]): Promise<void>;
}

/**
 * struct ArmGuestStats - what the guest's driver did.
 * @records: event records read.
 * @stalls: stall records handled.
 * @retried: stalls resumed RETRY.
 * @aborted: stalls resumed ABORT (refused or failed).
 * @refused: stalls outside the allowed ranges or permissions (ABORT).
 * @failed: stalls the guest could not serve (ABORT).
 * @pagesMapped: pages newly mapped.
 * @upgrades: read-only descriptors made writable (each with a TLBI_NH_VA).
 * @events: unrecoverable event records, by id name (F_TRANSLATION, ...).
 * @overflows: times the guest saw its queue's overflow flag.
 */
export interface ArmGuestStats {
  records: number;
  stalls: number;
  retried: number;
  aborted: number;
  refused: number;
  failed: number;
  pagesMapped: number;
  upgrades: number;
  events: Record<string, number>;
  overflows: number;
}

const EVT_NAMES: ReadonlyMap<number, string> = new Map([
  [0x04, 'C_BAD_STE'],
  [0x06, 'F_STREAM_DISABLED'],
  [0x08, 'C_BAD_SUBSTREAMID'],
  [0x0a, 'C_BAD_CD'],
  [0x10, 'F_TRANSLATION'],
  [0x11, 'F_ADDR_SIZE'],
  [0x12, 'F_ACCESS'],
  [0x13, 'F_PERMISSION'],
]);

/** One address space: its table and ASID. */
interface Space {
  table: GuestArmPageTable;
  asid: number;
}

/** ArmGuest - a guest OS with a virtual SMMUv3 and stall-capable devices. */
export class ArmGuest {
  readonly stats: ArmGuestStats = {
    records: 0,
    stalls: 0,
    retried: 0,
    aborted: 0,
    refused: 0,
    failed: 0,
    pagesMapped: 0,
    upgrades: 0,
    events: {},
    overflows: 0,
  };
  /** The event queue (the virtual SMMU's side; the VMM writes it). */
  readonly evtq: VirtualEventQueue;
  /** log2 of the CDs in each CD table (S1CDMax). */
  readonly cdMax: number;
  /** SMMU_STRTAB_BASE: the GPA of the linear stream table. */
  readonly strtabBase: bigint;
  /** log2 of its STEs (SMMU_STRTAB_BASE_CFG.LOG2SIZE). */
  readonly strtabLog2: number;
  readonly #opts: ArmGuestOptions;
  readonly #reader: EventQueueReader;
  /** Address spaces by SubstreamID (0: the RID's). */
  readonly #spaces = new Map<number, Space>();
  /** CD table GPA by vSID. */
  readonly #cdTables = new Map<number, bigint>();
  #running = false;
  #again = false;
  #idleWaiters: Array<() => void> = [];

  /**
   * Allocates the event queue ring (contiguous pages), the CD tables and
   * the address spaces' root tables in @opts.mem; writes nothing yet.
   * Throws RangeError for bad options, GuestOutOfMemory.
   */
  constructor(opts: ArmGuestOptions) {
    this.#opts = opts;
    const ssids = [...opts.pasids, ...opts.terminate];
    if (new Set(ssids).size !== ssids.length) throw new RangeError('a PASID is listed twice');
    if (new Set(opts.vsids).size !== opts.vsids.length) throw new RangeError('a vSID is listed twice');
    const maxSsid = Math.max(0, ...ssids);
    this.cdMax = maxSsid === 0 ? 0 : Math.ceil(Math.log2(maxSsid + 1));
    if (this.cdMax > 20) throw new RangeError(`PASID ${maxSsid} needs more than 20 SubstreamID bits`);
    // The ring first: consecutive pages of the bump allocator are contiguous.
    const ringBytes = BigInt((1 << opts.evtqLog2) * EVT_BYTES);
    const ringPages = (ringBytes + GUEST_PAGE - 1n) / GUEST_PAGE;
    const base = opts.mem.allocPage();
    for (let i = 1n; i < ringPages; i++) {
      if (opts.mem.allocPage() !== base + i * GUEST_PAGE) throw new RangeError('the event queue ring needs contiguous guest pages');
    }
    this.evtq = new VirtualEventQueue(opts.mem, base, opts.evtqLog2);
    this.evtq.onInterrupt = () => this.#interrupt();
    this.#reader = new EventQueueReader(this.evtq);
    const maxVsid = Math.max(0, ...opts.vsids);
    if (opts.vsids.some((v) => !Number.isInteger(v) || v < 0)) throw new RangeError('a vSID is not a StreamID');
    this.strtabLog2 = maxVsid === 0 ? 0 : Math.ceil(Math.log2(maxVsid + 1));
    if (this.strtabLog2 > STRTAB_MAX_LOG2) throw new RangeError(`vSID 0x${maxVsid.toString(16)} needs a stream table of more than 2^${STRTAB_MAX_LOG2} STEs`);
    this.strtabBase = ArmGuest.#contiguous(opts.mem, STE_BYTES << BigInt(this.strtabLog2), 'the stream table');
    for (const vsid of opts.vsids) this.#cdTables.set(vsid, ArmGuest.#contiguous(opts.mem, CD_BYTES << BigInt(this.cdMax), 'a CD table'));
    for (const [i, ssid] of [0, ...ssids].entries()) this.#spaces.set(ssid, { table: new GuestArmPageTable(opts.mem, opts.t0sz ?? 16), asid: i + 1 });
  }

  /** Allocate @bytes of contiguous zeroed guest pages for @what. Return: the first page's GPA. */
  static #contiguous(mem: GuestRam, bytes: bigint, what: string): bigint {
    const pages = (bytes + GUEST_PAGE - 1n) / GUEST_PAGE;
    const first = mem.allocPage();
    for (let i = 1n; i < pages; i++) {
      if (mem.allocPage() !== first + i * GUEST_PAGE) throw new RangeError(`${what} needs contiguous guest pages`);
    }
    return first;
  }

  /** steAddress() - the GPA of the STE of @vsid in the stream table. */
  steAddress(vsid: number): bigint {
    if (!Number.isInteger(vsid) || vsid < 0 || vsid >= 2 ** this.strtabLog2)
      throw new RangeError(`vSID 0x${vsid.toString(16)} is outside the stream table (2^${this.strtabLog2} STEs)`);
    return this.strtabBase + BigInt(vsid) * STE_BYTES;
  }

  /**
   * installSte() - write STE words 0-1 @words (default: steOf(@vsid)) and
   * zero words 2-7 at the STE of @vsid in one write, then CFGI_STE (leaf)
   * and a CMD_SYNC. Rejects on a failed write, or when the command queue
   * reports an error (the VMM refused the STE).
   */
  async installSte(vsid: number, words: readonly [bigint, bigint] = this.steOf(vsid)): Promise<void> {
    const gpa = this.steAddress(vsid);
    await this.#opts.mem.writeU64s(Array.from({ length: 8 }, (_, i) => [gpa + BigInt(i) * 8n, i < 2 ? words[i]! : 0n] as const));
    await this.#opts.issue([cmdCfgiSte(vsid), cmdSync()]);
  }

  /** steOf() - the STE words 0-1 of the device with @vsid (the nested hwpt's data). */
  steOf(vsid: number): [bigint, bigint] {
    const cdTable = this.#cdTables.get(vsid);
    if (cdTable === undefined) throw new RangeError(`no device with vSID 0x${vsid.toString(16)}`);
    return steWords({ cdTable, cdMax: this.cdMax, s1dss: this.cdMax > 0 ? STE_S1DSS_SSID0 : 0 });
  }

  /** addressSpace() - the table of SubstreamID @ssid (0: the RID's), or undefined. */
  addressSpace(ssid: number): GuestArmPageTable | undefined {
    return this.#spaces.get(ssid)?.table;
  }

  /** cdAddress() - the GPA of the CD of (@vsid, @ssid). */
  cdAddress(vsid: number, ssid: number): bigint {
    const t = this.#cdTables.get(vsid);
    if (t === undefined) throw new RangeError(`no device with vSID 0x${vsid.toString(16)}`);
    return t + BigInt(ssid) * CD_BYTES;
  }

  /**
   * setup() - write every CD (each table in one write), then CFGI_CD for
   * each (vSID, SSID) and a CMD_SYNC; then install each device's STE
   * (installSte()). Rejects on a failed write or command.
   */
  async setup(): Promise<void> {
    const terminate = new Set(this.#opts.terminate);
    const cmds: Command[] = [];
    for (const vsid of this.#opts.vsids) {
      const writes: Array<[bigint, bigint]> = [];
      for (const [ssid, s] of this.#spaces) {
        const [w0, w1] = cdWords({ ttb0: s.table.root, t0sz: s.table.t0sz, asid: s.asid, stall: !terminate.has(ssid) });
        const gpa = this.cdAddress(vsid, ssid);
        writes.push([gpa, w0], [gpa + 8n, w1]);
        cmds.push(cmdCfgiCd(vsid, ssid));
      }
      await this.#opts.mem.writeU64s(writes);
    }
    cmds.push(cmdSync());
    await this.#opts.issue(cmds);
    for (const vsid of this.#opts.vsids) await this.installSte(vsid);
  }

  /** idle() - resolves once the event queue is empty and the handler has stopped. */
  idle(): Promise<void> {
    if (!this.#running) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  /** The event queue interrupt: run the handler (again, if it is running). */
  #interrupt(): void {
    if (this.#running) {
      this.#again = true;
      return;
    }
    this.#running = true;
    void this.#thread();
  }

  /** arm_smmu_evtq_thread: read until the queue stays empty. */
  async #thread(): Promise<void> {
    do {
      this.#again = false;
      let batch: EventBatch;
      try {
        batch = await this.#reader.read();
      } catch {
        // Guest RAM unreadable (the VM is going away): stop; the records stay queued.
        break;
      }
      if (batch.overflow) this.stats.overflows++;
      for (const r of batch.records) await this.#handle(parseEvent(r));
      if (batch.records.length > 0 || batch.overflow) this.#again = true;
    } while (this.#again);
    this.#running = false;
    for (const w of this.#idleWaiters.splice(0)) w();
  }

  async #handle(e: GuestEvent): Promise<void> {
    this.stats.records++;
    if (!e.stall) {
      const name = EVT_NAMES.get(e.id) ?? `0x${e.id.toString(16)}`;
      this.stats.events[name] = (this.stats.events[name] ?? 0) + 1;
      return;
    }
    this.stats.stalls++;
    const cmds = await this.#serve(e);
    const resp = cmds === undefined ? RESUME_RESP.ABORT : RESUME_RESP.RETRY;
    if (resp === RESUME_RESP.RETRY) this.stats.retried++;
    else this.stats.aborted++;
    try {
      await this.#opts.issue([...(cmds ?? []), cmdResume(e.sid, e.stag, resp), cmdSync()]);
    } catch {
      // The command queue failed (the VM is going away): the VMM answers what is left.
    }
  }

  /**
   * The fault handler for one stall (arm_smmu_handle_event → the guest's
   * iommu_report_device_fault → its handler). Return: the commands to issue
   * before the RETRY, or undefined to ABORT.
   */
  async #serve(e: GuestEvent): Promise<Command[] | undefined> {
    const space = this.#cdTables.has(e.sid) ? this.#spaces.get(e.ssid ?? 0) : undefined;
    const va = e.addr & ~(GUEST_PAGE - 1n);
    const write = !e.read;
    const range = this.#opts.allow.find((r) => va >= r.start && va < r.start + r.length);
    if (!space || e.exec || !range || (write && !range.write) || !space.table.covers(va)) {
      this.stats.refused++;
      return undefined;
    }
    try {
      const leaf = (await space.table.walk(va, true))!;
      if (GuestArmPageTable.isValid(leaf.pte)) {
        if (write && !GuestArmPageTable.isWritable(leaf.pte)) {
          // A valid descriptor changes: the TLB may hold the read-only one.
          await this.#opts.mem.writeU64s([[leaf.slot, GuestArmPageTable.leafOf(leaf.pte & 0x0000_ffff_ffff_f000n, true)]]);
          this.stats.upgrades++;
          return [cmdTlbiNhVa(space.asid, va), cmdSync()];
        }
        return []; // another stall of the same page got here first
      }
      const page = this.#opts.mem.allocPage();
      await this.#opts.mem.writeU64s([...leaf.writes, [leaf.slot, GuestArmPageTable.leafOf(page, write)]]);
      this.stats.pagesMapped++;
      return []; // an invalid descriptor is never cached: no TLBI
    } catch {
      this.stats.failed++;
      return undefined;
    }
  }
}
