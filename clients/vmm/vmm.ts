/**
 * DOC: the nested-translation VMM handler
 *
 * What a VMM does with the fault fd when it gives a guest a passthrough
 * device behind a virtual VT-d with first-stage translation and PRI, as
 * QEMU's intel_iommu accel mode does:
 *
 * - the guest's RAM is an IOAS (IOMMU_IOAS_MAP), under a NEST_PARENT paging
 *   hwpt: the stage 2 the host owns;
 * - for each guest PASID (or the RID) of each device, the guest's stage-1
 *   table (built by the guest in its own RAM, vtd_s1) is mirrored as a
 *   nested hwpt allocated with FAULT_ID_VALID (and PASID when attached at a
 *   PASID) on its own fault queue (vtd_create_fs_faultq), and attached there;
 * - each group read from a fault queue is injected into the guest's virtual
 *   page request queue; when the queue is full the group is answered SUCCESS
 *   at once so the device retries (vtd_propagate_recoverable_faults); the
 *   VMM remembers grpid → group (its cookie) per binding;
 * - the guest's Page Group Response is written back for that cookie
 *   (vtd_accel_propagate_page_group_response). The uAPI refuses Response
 *   Failure, so a guest Response Failure becomes INVALID, plus a PRI reset
 *   of the device, which a guest driver does after a Response Failure;
 * - the guest's IOTLB invalidations are forwarded (IOMMU_HWPT_INVALIDATE)
 *   to every nested hwpt of that address space.
 *
 * Vmm works in process (tests) and behind clients/vmm/main.ts.
 */
import { formatU64, HWPT_FLAGS, PGFAULT_FLAGS } from '../../protocol/index.js';
import { LatencyRecorder, type LatencySummary } from '../common/latency.js';
import { IopfdClient, type FaultGroup, type FaultQueue, type FaultQueueMode, type IopfdContext, type ReconnectOptions } from '../sdk/index.js';
import { Guest, type AllowedRange, type GuestStats, type PageGroupResponse, type PageRequestDescriptor } from './guest.js';
import { GuestMemory } from './guest-memory.js';
import type { AddrWidth } from './guest-page-table.js';

/**
 * struct VmmOptions - the VM.
 * @url: the daemon.
 * @adminToken: the admin token (the PRI reset after a guest Response Failure).
 * @devices: platform devices passed through to the guest.
 * @pasids: guest PASIDs with first-stage translation on each device; none:
 *   the RID.
 * @allow: the VA ranges the guest serves faults in.
 * @ramBase: the guest's RAM: first guest physical address (default 0).
 * @ramSize: its size (default 64 MiB).
 * @prqDepth: descriptors in the virtual PRQ (default 64).
 * @mode: how the fault queues are read (default `uapi`, the fault fd's
 *   read()/write(), as QEMU does).
 * @addrWidth: of the guest's page tables (default 48).
 * @reconnect: the fault streams' reconnect policy.
 */
export interface VmmOptions {
  url: string;
  adminToken?: string | undefined;
  devices: readonly string[];
  pasids?: readonly number[] | undefined;
  allow: readonly AllowedRange[];
  ramBase?: bigint | undefined;
  ramSize?: bigint | undefined;
  prqDepth?: number | undefined;
  mode?: FaultQueueMode | undefined;
  addrWidth?: AddrWidth | undefined;
  reconnect?: Partial<ReconnectOptions> | false | undefined;
}

/**
 * struct VmmBinding - one guest PASID (or RID) of one device.
 * @device: the platform device.
 * @pasid: the PASID, undefined for the RID.
 * @devId: the device's object id.
 * @faultId: its fault queue.
 * @hwptId: its nested hwpt.
 * @queue: the fault queue's stream.
 */
export interface VmmBinding {
  readonly device: string;
  readonly pasid: number | undefined;
  readonly devId: number;
  readonly faultId: number;
  readonly hwptId: number;
  readonly queue: FaultQueue;
}

/**
 * struct VmmStats - the handler's work.
 * @groups: groups read from the fault queues.
 * @success: groups answered SUCCESS (guest's answers and full-PRQ answers).
 * @invalid: groups answered INVALID (guest Response Failures included).
 * @failures: guest Response Failures (each turned into INVALID + PRI reset).
 * @prqFull: groups answered SUCCESS at once because the virtual PRQ was full.
 * @invalidations: IOMMU_HWPT_INVALIDATE calls forwarded.
 * @outstanding: groups read and not yet answered.
 * @staleAnswers: answers the stream client did not send (their group was
 *   answered without the VMM: timeout, detach).
 * @guest: the guest handler's own counts.
 * @latencyMs: group read → response written.
 */
export interface VmmStats {
  groups: number;
  success: number;
  invalid: number;
  failures: number;
  prqFull: number;
  invalidations: number;
  outstanding: number;
  staleAnswers: number;
  guest: GuestStats;
  latencyMs: LatencySummary;
}

/** A binding with the VMM's grpid → group map (oldest first per grpid). */
interface Binding extends VmmBinding {
  readonly pending: Map<number, Array<{ group: FaultGroup; t0: number }>>;
}

const DEFAULT_RAM_SIZE = 64n << 20n;
const DEFAULT_PRQ_DEPTH = 64;

/** Vmm - a running VM with its guest and the fault handler. */
export class Vmm {
  readonly guest: Guest<Binding>;
  readonly #bindings: Binding[] = [];
  readonly #pumps: Array<Promise<void>> = [];
  readonly #latency = new LatencyRecorder();
  readonly #counts = { groups: 0, success: 0, invalid: 0, failures: 0, prqFull: 0, invalidations: 0, staleAnswers: 0 };
  /** Errors met by the handler (a stream that gave up, a failed PRI reset, a failed invalidation). */
  readonly errors: Error[] = [];

  private constructor(
    readonly client: IopfdClient,
    readonly ctx: IopfdContext,
    readonly mem: GuestMemory,
    opts: VmmOptions,
  ) {
    this.guest = new Guest<Binding>({
      mem,
      allow: opts.allow,
      prqDepth: opts.prqDepth ?? DEFAULT_PRQ_DEPTH,
      addrWidth: opts.addrWidth ?? 48,
      invalidate: (pasid, va) => this.#invalidate(pasid, va),
      respond: (r) => this.#onGuestResponse(r),
    });
  }

  /**
   * start() - create the VM: context, guest RAM, stage 2, then for each
   * device and PASID the guest's table, a fault queue, a nested hwpt
   * attached there, and the fault stream.
   *
   * Return: the running VMM.
   * Throws: IopfdError (e.g. EBUSY: a device is bound elsewhere),
   * IopfdConnectionError; nothing is left behind in the daemon then.
   */
  static async start(opts: VmmOptions): Promise<Vmm> {
    if (opts.devices.length === 0) throw new RangeError('a VM needs at least one device');
    const client = new IopfdClient({ url: opts.url, adminToken: opts.adminToken });
    const ctx = await client.createContext();
    try {
      const { id: ioas } = await ctx.allocIoas();
      const mem = new GuestMemory(ctx, ioas, opts.ramBase ?? 0n, opts.ramSize ?? DEFAULT_RAM_SIZE);
      await mem.map();
      const vmm = new Vmm(client, ctx, mem, opts);
      const devIds = new Map<string, number>();
      for (const device of opts.devices) devIds.set(device, (await ctx.bindDevice(device)).dev_id);
      const { id: parent } = await ctx.allocHwpt({ dev_id: devIds.get(opts.devices[0]!)!, pt_id: ioas, flags: HWPT_FLAGS.NEST_PARENT });
      const pasids = opts.pasids && opts.pasids.length > 0 ? opts.pasids : [undefined];
      for (const device of opts.devices) {
        for (const pasid of pasids) await vmm.#bind(device, devIds.get(device)!, parent, pasid, opts);
      }
      return vmm;
    } catch (e) {
      await ctx.release().catch(() => {});
      throw e;
    }
  }

  /** The guest PASIDs (or RIDs) the VMM serves. */
  get bindings(): readonly VmmBinding[] {
    return this.#bindings;
  }

  /**
   * ended() - resolves once every fault stream has ended: the context was
   * released, or the daemon shut down or could not be reached again.
   */
  ended(): Promise<void> {
    return Promise.all(this.#pumps).then(() => undefined);
  }

  /** stats() - what the handler has done so far. */
  stats(): VmmStats {
    let outstanding = 0;
    for (const b of this.#bindings) for (const list of b.pending.values()) outstanding += list.length;
    return { ...this.#counts, outstanding, guest: { ...this.guest.stats }, latencyMs: this.#latency.summary() };
  }

  /**
   * stop() - let the guest finish the requests it holds (up to
   * @drainTimeoutMs), close the fault streams once their answers are
   * acknowledged, and release the context (the daemon answers whatever is
   * left INVALID).
   *
   * Return: the final statistics, taken before the release.
   */
  async stop(drainTimeoutMs = 2000): Promise<VmmStats> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.guest.idle(), new Promise<void>((resolve) => (timer = setTimeout(resolve, drainTimeoutMs)))]);
    clearTimeout(timer);
    const stats = this.stats();
    await Promise.all(this.#bindings.map((b) => b.queue.close()));
    await Promise.all(this.#pumps);
    await this.ctx.release();
    return stats;
  }

  /** One guest PASID (or RID) of one device, as vtd_device_attach_iommufd sets it up. */
  async #bind(device: string, devId: number, parent: number, pasid: number | undefined, opts: VmmOptions): Promise<void> {
    const table = this.guest.addressSpace(pasid);
    const { id: faultId } = await this.ctx.allocFault();
    const { id: hwptId } = await this.ctx.allocHwpt({
      dev_id: devId,
      pt_id: parent,
      flags: HWPT_FLAGS.FAULT_ID_VALID | (pasid === undefined ? 0 : HWPT_FLAGS.PASID),
      data_type: 'vtd_s1',
      data: { flags: 0, pgtbl_addr: formatU64(table.root), addr_width: table.addrWidth },
      fault_id: faultId,
    });
    await this.ctx.attach(devId, pasid === undefined ? { pt_id: hwptId } : { pt_id: hwptId, pasid });
    const queue = this.ctx.faultQueue(faultId, { mode: opts.mode ?? 'uapi', reconnect: opts.reconnect });
    await queue.connect();
    queue.on('stale', () => this.#counts.staleAnswers++);
    const binding: Binding = { device, pasid, devId, faultId, hwptId, queue, pending: new Map() };
    this.#bindings.push(binding);
    this.#pumps.push(this.#pump(binding));
  }

  async #pump(b: Binding): Promise<void> {
    try {
      for await (const group of b.queue) this.#onGroup(b, group);
    } catch (e) {
      this.errors.push(e as Error);
    }
  }

  /** A group from the fault queue: into the guest's PRQ, or SUCCESS at once if it is full. */
  #onGroup(b: Binding, group: FaultGroup): void {
    const t0 = performance.now();
    this.#counts.groups++;
    const requests: PageRequestDescriptor<Binding>[] = group.records.map((r) => ({
      source: b,
      pasid: (r.flags & PGFAULT_FLAGS.PASID_VALID) !== 0 ? r.pasid : undefined,
      grpid: r.grpid,
      addr: r.addr,
      perm: r.perm,
      last: (r.flags & PGFAULT_FLAGS.LAST_PAGE) !== 0,
    }));
    if (!this.guest.inject(requests)) {
      this.#counts.prqFull++;
      this.#answer(b, group, t0, 'success');
      return;
    }
    const grpid = group.records[0]!.grpid;
    const list = b.pending.get(grpid);
    if (list) list.push({ group, t0 });
    else b.pending.set(grpid, [{ group, t0 }]);
  }

  /** The guest posted a Page Group Response: write it for the group's cookie. */
  #onGuestResponse(r: PageGroupResponse<Binding>): void {
    const b = r.source;
    const list = b.pending.get(r.grpid);
    const entry = list?.shift();
    if (!entry) return;
    if (list!.length === 0) b.pending.delete(r.grpid);
    if (r.code === 'failure') {
      this.#counts.failures++;
      this.client.priReset(b.device).catch((e: Error) => this.errors.push(e));
    }
    this.#answer(b, entry.group, entry.t0, r.code === 'success' ? 'success' : 'invalid');
  }

  #answer(b: Binding, group: FaultGroup, t0: number, code: 'success' | 'invalid'): void {
    b.queue.respond(group, code);
    this.#counts[code]++;
    this.#latency.add(performance.now() - t0);
  }

  /** The guest invalidated one page of an address space: every nested hwpt built on it. */
  async #invalidate(pasid: number | undefined, va: bigint): Promise<void> {
    const hwpts = this.#bindings.filter((b) => b.pasid === pasid);
    await Promise.all(hwpts.map((b) => this.ctx.invalidate(b.hwptId, [{ addr: formatU64(va), npages: 1 }])));
    this.#counts.invalidations += hwpts.length;
  }
}
