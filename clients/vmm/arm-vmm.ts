/**
 * DOC: the arm VMM handler (SMMUv3 nesting)
 *
 * What a VMM does when it gives a guest passthrough devices behind a
 * virtual SMMUv3 with nested translation, as QEMU's smmuv3-accel (and Cloud
 * Hypervisor's vSMMU) do with iommufd:
 *
 * - the guest's RAM is an IOAS (IOMMU_IOAS_MAP) under a NEST_PARENT paging
 *   hwpt: the stage 2 the host owns;
 * - a vIOMMU of type arm_smmuv3 on that hwpt (IOMMU_VIOMMU_ALLOC), a vDEVICE
 *   per device with the vSID the guest knows it by (IOMMU_VDEVICE_ALLOC),
 *   and a vEVENTQ (IOMMU_VEVENTQ_ALLOC) read through its stream;
 * - the guest (ArmGuest) builds its stream table, CD tables and AArch64
 *   tables in its own RAM; when it installs a device's STE (CMD_CFGI_STE,
 *   trapped: the kernel does not take it as a vIOMMU invalidation), the VMM
 *   reads STE words 0-1 at STRTAB_BASE + vSID × 64 and allocates a nested
 *   hwpt on the vIOMMU with them as data, with FAULT_ID_VALID and the
 *   device's fault queue (allocated at its first STE), and attaches the
 *   device (at its RID: the CD table covers every SubstreamID). A later
 *   CFGI_STE with changed words allocates a new hwpt, replaces the
 *   attachment with it and destroys the old one; unchanged words do
 *   nothing. A CFGI_STE naming no device, or an STE the host refuses, is an
 *   error: the guest's command queue call rejects (its CERROR_ILL);
 * - the virtual SMMU's event queue lives in guest RAM (VirtualEventQueue):
 *   every vEVENTQ event (a terminated stage-1 fault, its SID already the
 *   vSID) is written there as is; every group read from a fault queue (one
 *   stall: grpid = STAG) becomes a stall record (F_TRANSLATION, STALL, the
 *   STAG, vSID, SSID, RnW/InD/PnU, the address; the fault record does not
 *   say which fault it was, and the guest's handler reads its own tables
 *   anyway). A stall record that finds the guest's queue full is dropped,
 *   the overflow flag is raised, and the stall is answered INVALID at once:
 *   the transaction terminates, as an SMMU terminates a stall it cannot
 *   record. Events the vEVENTQ dropped (LOST_EVENTS headers, sequence
 *   gaps) raise the guest's overflow flag too;
 * - the guest's commands (its command queue, trapped): CFGI_CD, TLBI_* are
 *   forwarded in order as vIOMMU invalidations (POST /viommu/:id/invalidate,
 *   vSIDs as the guest wrote them), batched up to each CMD_SYNC; CMD_RESUME
 *   (vSID, STAG) answers the stall's group on its fault queue: RETRY →
 *   SUCCESS (the device retries the walk), ABORT or TERM → INVALID.
 *
 * The command queue itself is not a ring in guest RAM here: the guest hands
 * its 16-byte commands to the VMM directly (what QEMU reads from the ring
 * when the guest writes CMDQ_PROD). ArmVmm works in process (tests) and
 * behind clients/vmm/main.ts --arch arm.
 */
import { formatU64, HWPT_FLAGS, PERM, PGFAULT_FLAGS } from '../../protocol/index.js';
import { LatencyRecorder, type LatencySummary } from '../common/latency.js';
import {
  IopfdClient,
  IopfdError,
  type FaultGroup,
  type FaultQueue,
  type FaultQueueMode,
  type IopfdContext,
  type ReconnectOptions,
  type VEventQueue,
} from '../sdk/index.js';
import { ArmGuest, type ArmGuestStats } from './arm-guest.js';
import { GuestMemory } from './guest-memory.js';
import type { AllowedRange } from './guest.js';
import { CMD_OP, cmdOpcode, cmdSid, eventWords, EVT_CLASS_IN, EVT_ID, parseResume, RESUME_RESP, type Command } from './smmuv3-guest.js';

/** ArmVmmConfigError - the VM cannot be built as asked (e.g. a device not behind an SMMUv3). */
export class ArmVmmConfigError extends Error {
  override readonly name = 'ArmVmmConfigError';
}

/** ArmVmmCommandError - a guest command the virtual SMMU could not carry out (what CERROR_ILL tells a driver). */
export class ArmVmmCommandError extends Error {
  override readonly name = 'ArmVmmCommandError';
}

/**
 * struct ArmVmmOptions - the VM.
 * @url: the daemon. @adminToken: its admin token (not needed by the handler).
 * @devices: platform devices behind an SMMUv3-model IOMMU.
 * @vsidBase: the vSID of the first device; the next ones follow (default 0x100).
 * @pasids: PASIDs whose CDs stall (S=1), on every device.
 * @terminate: PASIDs whose CDs do not stall (S=0).
 * @allow: the VA ranges the guest serves stalls in.
 * @ramBase/@ramSize: the guest's RAM (default 0, 64 MiB).
 * @evtqLog2: log2 of the guest event queue's records (default 7: 128).
 * @veventqDepth: the host vEVENTQ's depth (default 256).
 * @mode: how the fault queues are read (default uapi).
 * @reconnect: the fault streams' reconnect policy.
 */
export interface ArmVmmOptions {
  url: string;
  adminToken?: string | undefined;
  devices: readonly string[];
  vsidBase?: number | undefined;
  pasids?: readonly number[] | undefined;
  terminate?: readonly number[] | undefined;
  allow: readonly AllowedRange[];
  ramBase?: bigint | undefined;
  ramSize?: bigint | undefined;
  evtqLog2?: number | undefined;
  veventqDepth?: number | undefined;
  mode?: FaultQueueMode | undefined;
  reconnect?: Partial<ReconnectOptions> | false | undefined;
}

/**
 * struct ArmVmmBinding - one device.
 * @device: the platform device. @devId: its object id. @vsid: its vSID.
 * @vdeviceId: its vDEVICE. @faultId: its fault queue. @hwptId: its nested hwpt.
 * @ste: the STE words 0-1 that hwpt carries (as read from guest RAM).
 */
export interface ArmVmmBinding {
  readonly device: string;
  readonly devId: number;
  readonly vsid: number;
  readonly vdeviceId: number;
  readonly faultId: number;
  readonly hwptId: number;
  readonly ste: readonly [bigint, bigint];
}

/**
 * struct ArmVmmStats - the handler's work.
 * @arch: "arm".
 * @stalls: groups (stalls) read from the fault queues.
 * @success: stalls answered SUCCESS (the guest's CMD_RESUME RETRY).
 * @invalid: stalls answered INVALID (CMD_RESUME ABORT/TERM, and full-queue terminations).
 * @evtqFull: stalls answered INVALID at once: the guest's event queue was full.
 * @events: vEVENTQ events received (terminated faults, written to the guest's queue).
 * @eventsLost: vEVENTQ events the daemon dropped (LOST_EVENTS headers, sequence gaps).
 * @evtqDropped: records the guest's event queue could not take.
 * @overflows: times the guest queue's overflow flag was raised.
 * @invalidations: vIOMMU invalidation calls; @commands: commands they
 *   forwarded, of which @tlbi TLBI_* and @cfgi CFGI_CD*.
 * @steInstalls: CMD_CFGI_STEs handled (trapped, never forwarded); of
 *   which @steReplaced replaced a device's hwpt, @steUnchanged found the
 *   same words, @steErrors failed (no device with that vSID, an STE the
 *   host refused, guest RAM unreadable).
 * @resumesUnmatched: CMD_RESUMEs that named no stall the VMM holds.
 * @outstanding: stalls read and not yet answered.
 * @staleAnswers: answers the stream client did not send.
 * @faultQueues: the daemon's view at stop (before the release): stalls it
 *   reported on the fault queues, and how many were answered by the VMM
 *   (`answered`) or without it (`auto`: timeout, overflow, detach...).
 * @veventq: the daemon's vEVENTQ at stop: events it produced (`sequence`)
 *   and dropped (`lost`).
 * @unaccounted: vEVENTQ events the daemon produced that the VMM neither
 *   received nor was told were lost (must be 0).
 * @lost: stalls the guest never answered (the daemon's reported minus
 *   answered by the VMM, taken at stop) plus @unaccounted.
 * @guest: the guest driver's own counts.
 * @latencyMs: stall read → response written.
 */
export interface ArmVmmStats {
  arch: 'arm';
  stalls: number;
  success: number;
  invalid: number;
  evtqFull: number;
  events: number;
  eventsLost: number;
  evtqDropped: number;
  overflows: number;
  invalidations: number;
  commands: number;
  tlbi: number;
  cfgi: number;
  steInstalls: number;
  steReplaced: number;
  steUnchanged: number;
  steErrors: number;
  resumesUnmatched: number;
  outstanding: number;
  staleAnswers: number;
  faultQueues: { reported: number; answered: number; auto: number };
  veventq: { sequence: number; lost: number; queued: number };
  unaccounted: number;
  lost: number;
  guest: ArmGuestStats;
  latencyMs: LatencySummary;
}

/** A device binding with its stream; its hwpt and STE change with each CFGI_STE of new words. */
interface Binding extends ArmVmmBinding {
  readonly queue: FaultQueue;
  hwptId: number;
  ste: readonly [bigint, bigint];
}

/** A device of the VM before its first STE: its objects, and its fault queue once allocated. */
interface Device {
  readonly device: string;
  readonly devId: number;
  readonly vsid: number;
  readonly vdeviceId: number;
  faultId?: number;
}

/** A stall the guest holds: its group, and when it was read. */
interface Held {
  binding: Binding;
  group: FaultGroup;
  t0: number;
}

const DEFAULT_RAM_SIZE = 64n << 20n;
const DEFAULT_EVTQ_LOG2 = 7;
const DEFAULT_VEVENTQ_DEPTH = 256;
const DEFAULT_VSID_BASE = 0x100;
/** vEVENTQ sequence numbers wrap at 2^31. */
const SEQ_MOD = 0x8000_0000;

/** ArmVmm - a running arm VM: its guest, the virtual SMMUv3, the fault and event handlers. */
export class ArmVmm {
  readonly #bindings: Binding[] = [];
  readonly #byVsid = new Map<number, Binding>();
  /** Stalls in the guest's hands, by `vsid:stag`, oldest first. */
  readonly #held = new Map<string, Held[]>();
  readonly #pumps: Array<Promise<void>> = [];
  readonly #latency = new LatencyRecorder();
  readonly #counts = {
    stalls: 0,
    success: 0,
    invalid: 0,
    evtqFull: 0,
    events: 0,
    eventsLost: 0,
    invalidations: 0,
    commands: 0,
    tlbi: 0,
    cfgi: 0,
    steInstalls: 0,
    steReplaced: 0,
    steUnchanged: 0,
    steErrors: 0,
    resumesUnmatched: 0,
    staleAnswers: 0,
  };
  /** Errors met by the handler (a stream that gave up, a refused invalidation, a failed memory access). */
  readonly errors: Error[] = [];
  /** The VM's devices by vSID (a vDEVICE each). */
  readonly #devices = new Map<number, Device>();
  #veventq: VEventQueue | undefined;
  #final: ArmVmmStats | undefined;

  private constructor(
    readonly client: IopfdClient,
    readonly ctx: IopfdContext,
    readonly mem: GuestMemory,
    readonly guest: ArmGuest,
    readonly viommuId: number,
    readonly veventqId: number,
    readonly opts: Readonly<ArmVmmOptions>,
  ) {}

  /**
   * start() - create the VM: check the devices are behind an SMMUv3, then
   * context, guest RAM, stage 2, vIOMMU, vDEVICEs, vEVENTQ and its stream,
   * then the guest's setup: its CDs (with their CFGI_CD), then each
   * device's STE, whose CFGI_STE makes the VMM allocate the device's fault
   * queue and the nested hwpt of the STE, attach it at the RID, and start
   * the fault stream.
   *
   * Return: the running VMM.
   * Throws: ArmVmmConfigError (a device not on the SMMUv3 model, bad
   * options), IopfdError, IopfdConnectionError; nothing is left behind in
   * the daemon then.
   */
  static async start(opts: ArmVmmOptions): Promise<ArmVmm> {
    if (opts.devices.length === 0) throw new ArmVmmConfigError('a VM needs at least one device');
    const client = new IopfdClient({ url: opts.url, adminToken: opts.adminToken });
    // With the admin token the platform says which IOMMU each device is behind;
    // without it the daemon's refusal of the vIOMMU or vDEVICE tells.
    if (opts.adminToken !== undefined) {
      const platform = await client.platform();
      for (const name of opts.devices) {
        const dev = platform.devices.find((d) => d.name === name);
        const model = platform.iommus.find((i) => i.name === dev?.iommu)?.model;
        if (!dev) throw new ArmVmmConfigError(`no platform device ${name}`);
        if (model !== 'smmuv3')
          throw new ArmVmmConfigError(`--arch arm needs devices behind an SMMUv3-model IOMMU: ${name} is behind ${dev.iommu} (${model ?? 'unknown'})`);
      }
    }
    const notSmmu =
      (device: string) =>
      (e: unknown): never => {
        if (e instanceof IopfdError && (e.errno === 'EOPNOTSUPP' || e.errno === 'EINVAL')) {
          throw new ArmVmmConfigError(
            `--arch arm needs devices behind an SMMUv3-model IOMMU: the daemon refused ${device}'s vIOMMU objects (${e.errno}: ${e.message})`,
          );
        }
        throw e;
      };
    const vsidBase = opts.vsidBase ?? DEFAULT_VSID_BASE;
    const vsids = opts.devices.map((_, i) => vsidBase + i);
    const ctx = await client.createContext();
    try {
      const { id: ioas } = await ctx.allocIoas();
      const mem = new GuestMemory(ctx, ioas, opts.ramBase ?? 0n, opts.ramSize ?? DEFAULT_RAM_SIZE);
      await mem.map();
      const devIds = new Map<string, number>();
      for (const device of opts.devices) devIds.set(device, (await ctx.bindDevice(device)).dev_id);
      const first = devIds.get(opts.devices[0]!)!;
      const { id: parent } = await ctx.allocHwpt({ dev_id: first, pt_id: ioas, flags: HWPT_FLAGS.NEST_PARENT });
      const { id: viommuId } = await ctx.allocViommu({ type: 'arm_smmuv3', dev_id: first, hwpt_id: parent }).catch(notSmmu(opts.devices[0]!));
      const vdevices = new Map<number, number>();
      for (const [i, device] of opts.devices.entries()) {
        const { id } = await ctx
          .allocVdevice({ viommu_id: viommuId, dev_id: devIds.get(device)!, virt_id: formatU64(BigInt(vsids[i]!)) })
          .catch(notSmmu(device));
        vdevices.set(vsids[i]!, id);
      }
      const veventq = await ctx.allocVeventq({ viommu_id: viommuId, type: 'arm_smmuv3', depth: opts.veventqDepth ?? DEFAULT_VEVENTQ_DEPTH });
      let vmm: ArmVmm | undefined;
      let guest: ArmGuest;
      try {
        guest = new ArmGuest({
          mem,
          vsids,
          pasids: opts.pasids ?? [],
          terminate: opts.terminate ?? [],
          allow: opts.allow,
          evtqLog2: opts.evtqLog2 ?? DEFAULT_EVTQ_LOG2,
          issue: (cmds) => vmm!.#commandQueue(cmds),
        });
      } catch (e) {
        if (e instanceof RangeError) throw new ArmVmmConfigError(e.message);
        throw e;
      }
      vmm = new ArmVmm(client, ctx, mem, guest, viommuId, veventq.id, opts);
      for (const [i, device] of opts.devices.entries()) {
        const vsid = vsids[i]!;
        vmm.#devices.set(vsid, { device, devId: devIds.get(device)!, vsid, vdeviceId: vdevices.get(vsid)! });
      }
      vmm.#veventq = ctx.veventQueue(veventq.id, { mode: 'uapi' });
      await vmm.#veventq.connect();
      vmm.#pumps.push(vmm.#eventPump(vmm.#veventq));
      await guest.setup();
      // The daemon refused a CFGI_CD or an STE of the guest's setup: the VM is not what the guest thinks.
      if (vmm.errors.length > 0) throw vmm.errors[0]!;
      return vmm;
    } catch (e) {
      await ctx.release().catch(() => {});
      throw e;
    }
  }

  /** The devices the VMM serves. */
  get bindings(): readonly ArmVmmBinding[] {
    return this.#bindings.map(({ queue: _q, ...b }) => ({ ...b }));
  }

  /** ended() - resolves once every stream has ended (context released, daemon gone). */
  ended(): Promise<void> {
    return Promise.all(this.#pumps).then(() => undefined);
  }

  /**
   * stats() - what the handler has done so far. The daemon's view
   * (faultQueues, veventq) and what depends on it (unaccounted, lost) are
   * taken by stop(): zero before, the final figures after.
   */
  stats(): ArmVmmStats {
    return this.#final ?? this.#snapshot(undefined, undefined);
  }

  #snapshot(daemonFaults: ArmVmmStats['faultQueues'] | undefined, daemonVeventq: ArmVmmStats['veventq'] | undefined): ArmVmmStats {
    const faultQueues = daemonFaults ?? { reported: 0, answered: 0, auto: 0 };
    const veventq = daemonVeventq ?? { sequence: 0, lost: 0, queued: 0 };
    let outstanding = 0;
    for (const list of this.#held.values()) outstanding += list.length;
    const c = this.#counts;
    const unaccounted = daemonVeventq ? (veventq.sequence - ((c.events + c.eventsLost) % SEQ_MOD) + SEQ_MOD) % SEQ_MOD : 0;
    const stallsLost = Math.max(0, faultQueues.reported - faultQueues.answered);
    return {
      arch: 'arm',
      ...c,
      evtqDropped: this.guest.evtq.dropped,
      overflows: this.guest.evtq.overflows,
      outstanding,
      faultQueues,
      veventq,
      unaccounted,
      lost: stallsLost + unaccounted,
      guest: { ...this.guest.stats, events: { ...this.guest.stats.events } },
      latencyMs: this.#latency.summary(),
    };
  }

  /**
   * stop() - let the guest handle what it holds and the vEVENTQ drain (up
   * to @drainTimeoutMs), take the daemon's counts of the fault queues and
   * the vEVENTQ, close the streams once their answers are acknowledged, and
   * release the context (the daemon answers whatever is left INVALID).
   *
   * Return: the final statistics, taken before the release.
   */
  async stop(drainTimeoutMs = 2000): Promise<ArmVmmStats> {
    const deadline = Date.now() + drainTimeoutMs;
    let veventq: ArmVmmStats['veventq'] | undefined;
    let statusError: Error | undefined;
    for (;;) {
      await this.#race(this.guest.idle(), deadline);
      const st = await this.ctx.veventqStatus(this.veventqId).catch((e: Error) => {
        statusError = e;
        return undefined;
      });
      if (st) veventq = { sequence: st.sequence, lost: st.lost, queued: st.queued };
      const received = (this.#counts.events + this.#counts.eventsLost) % SEQ_MOD;
      const settled = st === undefined || (st.queued === 0 && st.sequence === received);
      if ((settled && this.#heldCount() === 0) || Date.now() >= deadline) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    const faultQueues = { reported: 0, answered: 0, auto: 0 };
    for (const b of this.#bindings) {
      // The answers queued this turn go out first: close() flushes them.
      await b.queue.close();
      const st = await this.ctx.faultStatus(b.faultId).catch((e: Error) => {
        this.errors.push(e);
        return undefined;
      });
      if (!st) continue;
      const n = (k: string): number => st.counters[k] ?? 0;
      faultQueues.reported += n('reported');
      faultQueues.answered += n('answered_success') + n('answered_invalid');
      faultQueues.auto += n('auto_detach') + n('auto_replace') + n('auto_unplug') + n('auto_destroy') + n('timeout') + n('overflow');
    }
    // Without the daemon's count the vEVENTQ cannot be accounted for: an error, not a silent 0.
    if (veventq === undefined && statusError) this.errors.push(statusError);
    this.#veventq?.close();
    this.#final = this.#snapshot(faultQueues, veventq);
    await Promise.all(this.#pumps);
    await this.ctx.release();
    return this.#final;
  }

  #heldCount(): number {
    let n = 0;
    for (const list of this.#held.values()) n += list.length;
    return n;
  }

  async #race(p: Promise<void>, deadline: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([p, new Promise<void>((resolve) => (timer = setTimeout(resolve, Math.max(0, deadline - Date.now()))))]);
    clearTimeout(timer);
  }

  /** The vEVENTQ reader: each event into the guest's queue; losses raise its overflow flag. */
  async #eventPump(q: VEventQueue): Promise<void> {
    try {
      for await (const item of q) {
        const lost = item.missed + (item.lost ? 1 : 0);
        if (lost > 0) {
          this.#counts.eventsLost += lost;
          await this.guest.evtq.signalOverflow();
        }
        if (!item.evt) continue;
        this.#counts.events++;
        await this.guest.evtq.push(item.evt);
      }
    } catch (e) {
      this.errors.push(e as Error);
    }
  }

  async #faultPump(b: Binding): Promise<void> {
    try {
      for await (const group of b.queue) void this.#onStall(b, group);
    } catch (e) {
      this.errors.push(e as Error);
    }
  }

  /** A stall from the fault queue: a stall record in the guest's event queue. */
  async #onStall(b: Binding, group: FaultGroup): Promise<void> {
    const t0 = performance.now();
    const r = group.records[group.records.length - 1]!;
    const key = `${b.vsid}:${r.grpid & 0xffff}`;
    const list = this.#held.get(key);
    // (A group redelivered after a reconnect is not yielded again by the stream client: each comes here once.)
    this.#counts.stalls++;
    const held: Held = { binding: b, group, t0 };
    if (list) list.push(held);
    else this.#held.set(key, [held]);
    const evt = eventWords({
      id: EVT_ID.F_TRANSLATION,
      sid: b.vsid,
      ssid: (r.flags & PGFAULT_FLAGS.PASID_VALID) !== 0 ? r.pasid : undefined,
      stag: r.grpid & 0xffff,
      stall: true,
      priv: (r.perm & PERM.PRIV) !== 0,
      exec: (r.perm & PERM.EXEC) !== 0,
      read: (r.perm & PERM.WRITE) === 0,
      s2: false,
      cls: EVT_CLASS_IN,
      addr: r.addr,
    });
    let written: boolean | Error;
    try {
      written = await this.guest.evtq.push(evt);
    } catch (e) {
      written = e as Error;
      this.errors.push(written);
    }
    // The SMMU cannot record the stall (a full queue, or guest RAM it cannot write): the transaction terminates.
    if (written !== true && this.#take(key, held)) {
      if (written === false) this.#counts.evtqFull++;
      this.#answer(held, 'invalid');
    }
  }

  /** Remove @held from the stalls held under @key. Return: whether it was there. */
  #take(key: string, held: Held): boolean {
    const list = this.#held.get(key);
    const i = list ? list.indexOf(held) : -1;
    if (i < 0) return false;
    list!.splice(i, 1);
    if (list!.length === 0) this.#held.delete(key);
    return true;
  }

  #answer(h: Held, code: 'success' | 'invalid'): void {
    h.binding.queue.respond(h.group, code);
    this.#counts[code]++;
    this.#latency.add(performance.now() - h.t0);
  }

  /**
   * The guest's command queue: invalidations batched and forwarded in order
   * up to each CMD_SYNC (and before a CMD_RESUME, which must not overtake
   * them), CMD_RESUME answering its stall. A batch the daemon refuses is
   * an error of the handler; the queue goes on past it, as the guest's
   * driver does after CERROR_ILL (arm_smmu_cmdq_skip_err), so a CMD_RESUME
   * behind it still answers its stall.
   */
  async #commandQueue(cmds: readonly Command[]): Promise<void> {
    let batch: Command[] = [];
    const failed: Error[] = [];
    const flush = async (): Promise<void> => {
      if (batch.length === 0) return;
      const commands = batch.map(([w0, w1]) => [formatU64(w0), formatU64(w1)] as [string, string]);
      batch = [];
      this.#counts.invalidations++;
      this.#counts.commands += commands.length;
      await this.ctx.invalidateViommu(this.viommuId, { data_type: 'arm_smmuv3', commands }).catch((e: Error) => {
        this.errors.push(e);
      });
    };
    for (const cmd of cmds) {
      const op = cmdOpcode(cmd);
      if (op === CMD_OP.SYNC) await flush();
      else if (op === CMD_OP.CFGI_STE) {
        await flush();
        const e = await this.#cfgiSte(cmdSid(cmd));
        if (e) failed.push(e);
      } else if (op === CMD_OP.RESUME) {
        await flush();
        this.#resume(cmd);
      } else {
        if (op === CMD_OP.TLBI_NH_VA || op === CMD_OP.TLBI_NH_ASID) this.#counts.tlbi++;
        else if (op === CMD_OP.CFGI_CD || op === CMD_OP.CFGI_CD_ALL) this.#counts.cfgi++;
        batch.push(cmd);
      }
    }
    await flush();
    if (failed.length > 0) throw new ArmVmmCommandError(`CERROR_ILL: ${failed.map((e) => e.message).join('; ')}`);
  }

  /**
   * CMD_CFGI_STE of @vsid (trapped; QEMU's smmuv3-accel does the same):
   * read STE words 0-1 from the guest's stream table; on a device's first
   * STE allocate its fault queue, the nested hwpt and attach it at the RID,
   * and start its fault stream; on changed words allocate a new hwpt,
   * replace the attachment with it and destroy the old one; on the same
   * words do nothing. Return: the error (counted and kept in
   * this.errors), or undefined.
   */
  async #cfgiSte(vsid: number): Promise<Error | undefined> {
    this.#counts.steInstalls++;
    try {
      const dev = this.#devices.get(vsid);
      if (!dev) throw new ArmVmmCommandError(`CMD_CFGI_STE of vSID 0x${vsid.toString(16)}: no device has it`);
      const bytes = await this.mem.read(this.guest.steAddress(vsid), 16);
      const view = new DataView(bytes.buffer, bytes.byteOffset, 16);
      const ste = [view.getBigUint64(0, true), view.getBigUint64(8, true)] as const;
      const b = this.#byVsid.get(vsid);
      if (b && b.ste[0] === ste[0] && b.ste[1] === ste[1]) {
        this.#counts.steUnchanged++;
        return undefined;
      }
      dev.faultId ??= (await this.ctx.allocFault()).id;
      const faultId = dev.faultId;
      const { id: hwptId } = await this.ctx.allocHwpt({
        dev_id: dev.devId,
        pt_id: this.viommuId,
        flags: HWPT_FLAGS.FAULT_ID_VALID,
        data_type: 'arm_smmuv3',
        data: { ste: [formatU64(ste[0]), formatU64(ste[1])] },
        fault_id: faultId,
      });
      try {
        if (b) await this.ctx.replace(dev.devId, { pt_id: hwptId });
        else await this.ctx.attach(dev.devId, { pt_id: hwptId });
      } catch (e) {
        await this.ctx.destroyObject(hwptId).catch(() => {});
        throw e;
      }
      if (b) {
        const old = b.hwptId;
        b.hwptId = hwptId;
        b.ste = ste;
        this.#counts.steReplaced++;
        await this.ctx.destroyObject(old);
        return undefined;
      }
      const queue = this.ctx.faultQueue(faultId, { mode: this.opts.mode ?? 'uapi', reconnect: this.opts.reconnect });
      await queue.connect();
      queue.on('stale', () => this.#counts.staleAnswers++);
      const nb: Binding = { ...dev, faultId, hwptId, ste, queue };
      this.#bindings.push(nb);
      this.#byVsid.set(vsid, nb);
      this.#pumps.push(this.#faultPump(nb));
      return undefined;
    } catch (e) {
      this.#counts.steErrors++;
      this.errors.push(e as Error);
      return e as Error;
    }
  }

  /** CMD_RESUME: answer the oldest stall held for (vSID, STAG); RETRY → SUCCESS, else INVALID. */
  #resume(cmd: Command): void {
    const { sid, stag, resp } = parseResume(cmd);
    const key = `${sid}:${stag}`;
    const held = this.#held.get(key)?.[0];
    if (!held || !this.#take(key, held)) {
      this.#counts.resumesUnmatched++;
      return;
    }
    this.#answer(held, resp === RESUME_RESP.RETRY ? 'success' : 'invalid');
  }
}
