/**
 * Chaos, end to end over real sockets: the invariant that every page
 * request that needs a response gets exactly one, on every path.
 *
 * A daemon on 127.0.0.1 with three IOMMU models (VT-d with a small PRQ, so
 * that it overflows; SMMUv3 stall; the generic selftest model) and five
 * devices, driven by concurrent actors, all from one seeded PRNG, for 8 s
 * (IOPFD_CHAOS_MS) and then, on a loaded machine, until every kind of event
 * happened often enough (at most a minute more):
 *
 * - traffic actors run the devices' traffic generators (several PASIDs,
 *   1-3 pages per group, random in_flight), one run after another;
 * - injector actors send raw page requests (partials and last, several
 *   PASIDs, some malformed) with PRG indexes they track;
 * - stream actors open fault streams in both modes with random windows and
 *   answer at random: good codes, bad codes (the cookie stays valid), stale
 *   cookies, groups left to time out; and end sessions by closing, by
 *   dropping the TCP connection, or by vanishing (left to the heartbeat);
 * - topology actors attach, replace and detach at the RID and PASIDs, recycle
 *   fault queues (destroy: EBUSY while streamed or used by a hwpt, else
 *   gone at once), map and unmap memory,
 *   release whole contexts and open new ones, and check the fault counters;
 * - a platform actor hot-unplugs devices and adds them back.
 *
 * Fault queues: plain, depth 4 (overflow answered at once), and response
 * timeout 60 ms. Afterwards every context is released and:
 *
 * - raw devices: each response (GET .../responses, polled during the run)
 *   matched a last request that was outstanding under that PRG index and
 *   PASID, and at the end nothing is outstanding: exactly one each;
 * - traffic devices: every run answered every group it sent, and the
 *   response log holds exactly the groups sent;
 * - no device ever saw a response for a PRG index that was not outstanding,
 *   nor a Response Failure;
 * - every table of the daemon is empty (iopfd_table_entries, audit(), no
 *   context, no stream), and the metrics add up: every group reported was
 *   answered by a client or automatically, once;
 * - nothing was logged at error level.
 *
 * The seed is printed on failure; replay with IOPFD_SEED=<seed>.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import type { PcieFunction } from '../../core/hw/pcie-function.js';
import { HWPT_FLAGS, PGFAULT_FLAGS, RECORD_SIZE, zFaultStatus } from '../../protocol/index.js';
import { LIMITS } from '../../core/index.js';
import { type Api, startServer, type Json, type TestServer } from '../server/helpers.js';
import { assertErrnoBody, captureLog, metricValue, Rng, sleep, testSeed, unexpectedErrors, withSeed, type LogCapture } from './helpers.js';

const ADMIN = 'chaos-admin';
const CHAOS_MS = Number(process.env.IOPFD_CHAOS_MS ?? 8000);
/** How much longer a loaded machine may run the actors to cover every kind of event. */
const CHAOS_EXTRA_MS = 60_000;
const PASIDS = [undefined, 1, 2] as const;
/** The SVA bond of raw device rA: its PASID and its one VMA. */
const SVA_PASID = 9;
const SVA_VMA = 0x10000000n;

type Pasid = number | undefined;

/** A tiny async mutex (a device is not unplugged in the middle of a traffic start or an injection). */
class Lock {
  private tail: Promise<void> = Promise.resolve();
  async run<T>(fn: () => Promise<T>): Promise<T> {
    const prev = this.tail;
    let release!: () => void;
    this.tail = new Promise((r) => (release = r));
    await prev;
    try {
      return await fn();
    } finally {
      release();
    }
  }
}

/** One plug-in of a device: its hardware function (in-process, readable after unplug) and what was sent to it. */
interface Instance {
  fn: PcieFunction;
  plugged: boolean;
  /** Traffic runs: final status of each. */
  runs: Array<{ sent: number; answered: number; failure: number }>;
  runOpen: boolean;
  /** Raw devices: last requests sent and outstanding, by PRG index. */
  lastsSent: number;
  outstanding: Map<number, Pasid[]>;
  /** Responses read so far (seq). */
  seq: number;
  violations: string[];
}

interface Device {
  name: string;
  iommu: string;
  kind: 'traffic' | 'raw' | 'dma';
  /** An SVA bond at this PASID (raw devices): its faults are resolved inside the daemon. */
  sva?: number;
  slot: number;
  lock: Lock;
  inst: Instance | undefined;
  instances: Instance[];
}

interface FaultQ {
  k: number;
  id: number;
  stream: string;
  /** Stream actors stay away while the queue is being recycled. */
  paused: boolean;
  /** Sessions currently open on it. */
  sessions: number;
}

interface Slot {
  i: number;
  gen: number;
  alive: boolean;
  ctx: number;
  token: string;
  api: Api;
  ioas: number;
  faults: FaultQ[];
  /** hwpts by IOMMU name: [fault 0, fault 1, fault 2, no fault]. */
  hwpts: Map<string, number[]>;
  /** device name → dev_id, for devices bound here. */
  devIds: Map<string, number>;
  /** `${device}:${pasid}` → index into hwpts (or -1 for the IOAS itself). */
  attached: Map<string, number>;
  mapped: bigint[];
}

const FAULT_OPTIONS = [{}, { depth: 4, overflow: 'invalid' }, { response_timeout_ms: 60 }] as const;

class Chaos {
  readonly devices: Device[];
  readonly slots: Slot[] = [];
  running = true;
  readonly stats = {
    dmas: 0,
    svaRebinds: 0,
    sessions: 0,
    groupsSeen: 0,
    answersSent: 0,
    badCodes: 0,
    stale: 0,
    closes: 0,
    drops: 0,
    vanished: 0,
    unplugs: 0,
    releases: 0,
    recycles: 0,
    idleRecycles: 0,
    topo: 0,
    injected: 0,
    overflowNotices: 0,
    expiredNotices: 0,
    mapsRefusedQuota: 0,
    mapsRefusedBudget: 0,
    partialsRefused: 0,
  };
  readonly problems: string[] = [];

  constructor(
    readonly server: TestServer,
    readonly admin: Api,
    readonly rng: Rng,
  ) {
    this.devices = [
      { name: 'tA', iommu: 'dmar0', kind: 'traffic', slot: 0 },
      { name: 'rA', iommu: 'dmar0', kind: 'raw', slot: 0, sva: SVA_PASID },
      { name: 'tB', iommu: 'smmu0', kind: 'traffic', slot: 1 },
      { name: 'rB', iommu: 'gen0', kind: 'raw', slot: 1 },
      { name: 'tC', iommu: 'gen0', kind: 'traffic', slot: 2 },
      { name: 'dA', iommu: 'gen0', kind: 'dma', slot: 2 },
    ].map((d) => ({ ...d, kind: d.kind as Device['kind'], lock: new Lock(), inst: undefined, instances: [] }));
  }

  /**
   * enough() - has the run covered every kind of event (checked again at the
   * end), or already failed? The groups are counted as the end counts them:
   * every response every device instance got.
   */
  enough(): boolean {
    if (this.problems.length > 0) return true;
    const s = this.stats;
    const groups = this.devices.flatMap((d) => d.instances).reduce((n, i) => n + i.fn.responses.length, 0);
    return (
      groups >= 2000 &&
      s.sessions > 20 &&
      s.unplugs > 3 &&
      s.releases > 0 &&
      s.recycles > 0 &&
      s.dmas > 20 &&
      s.svaRebinds > 0 &&
      s.mapsRefusedQuota + s.mapsRefusedBudget > 0
    );
  }

  problem(msg: string): void {
    if (this.problems.length < 50) this.problems.push(msg);
  }

  /** A REST call that must not be a 500 and, if an error, must be {errno, message}; returns the reply. */
  async call(api: Api, method: string, path: string, body?: unknown): Promise<{ status: number; body: Json }> {
    const r = await api.call(method, path, body === undefined ? {} : { body });
    if (r.status >= 400) {
      try {
        assertErrnoBody(r.status, r.body, `${method} ${path}`);
      } catch (e) {
        this.problem((e as Error).message);
      }
    }
    return r;
  }

  /** Expect one of @ok statuses (else a problem). */
  async expect(api: Api, method: string, path: string, body: unknown, ok: number[], errnos: string[] = []): Promise<{ status: number; body: Json }> {
    const r = await this.call(api, method, path, body);
    if (!ok.includes(r.status) && !(r.status >= 400 && errnos.includes(r.body?.errno)))
      this.problem(`${method} ${path} ${JSON.stringify(body)} → ${r.status} ${JSON.stringify(r.body)}`);
    return r;
  }

  // ---- platform -------------------------------------------------------------

  async plug(d: Device): Promise<void> {
    const caps = d.kind === 'traffic' ? { pri_outstanding: 32 } : {};
    await this.expect(this.admin, 'POST', '/v1/platform/devices', { name: d.name, iommu: d.iommu, caps }, [201]);
    const inst: Instance = {
      fn: this.server.daemon.platform.function(d.name),
      plugged: true,
      runs: [],
      runOpen: false,
      lastsSent: 0,
      outstanding: new Map(),
      seq: 0,
      violations: [],
    };
    d.inst = inst;
    d.instances.push(inst);
    if (d.sva !== undefined) await this.bindSva(d);
  }

  /** An SVA bond on @d at its SVA PASID, one VMA (read/write) of 1 MiB. */
  async bindSva(d: Device): Promise<void> {
    const vmas = [{ start: `0x${SVA_VMA.toString(16)}`, length: '0x100000', read: true, write: true }];
    await this.expect(this.admin, 'POST', `/v1/platform/devices/${d.name}/sva`, { pasid: d.sva, vmas }, [201]);
  }

  async unplug(d: Device): Promise<void> {
    const inst = d.inst!;
    await this.expect(this.admin, 'DELETE', `/v1/platform/devices/${d.name}`, undefined, [204]);
    inst.plugged = false;
    d.inst = undefined;
    const slot = this.slots[d.slot]!;
    slot.devIds.delete(d.name);
    for (const key of [...slot.attached.keys()]) if (key.startsWith(`${d.name}:`)) slot.attached.delete(key);
    this.stats.unplugs++;
  }

  async platformActor(rng: Rng): Promise<void> {
    while (this.running) {
      await sleep(rng.int(150, 500));
      if (!this.running) break;
      const sva = rng.chance(0.3);
      const d = rng.pick(sva ? this.devices.filter((x) => x.sva !== undefined) : this.devices);
      if (sva) {
        // Unbind the SVA bond (pending SVA work is flushed first) and bind it again.
        await d.lock.run(async () => {
          if (!d.inst) return;
          await this.expect(this.admin, 'DELETE', `/v1/platform/devices/${d.name}/sva/${d.sva}`, undefined, [204]);
          await sleep(rng.int(0, 30));
          await this.bindSva(d);
          this.stats.svaRebinds++;
        });
        continue;
      }
      await d.lock.run(async () => {
        if (!d.inst) return;
        await this.unplug(d);
        await sleep(rng.int(20, 150));
        await this.plug(d);
      });
    }
  }

  // ---- traffic ---------------------------------------------------------------

  /** Record the status of the instance's open run (from REST while plugged, from the function once gone). */
  async recordRun(d: Device, inst: Instance): Promise<boolean> {
    if (!inst.runOpen) return true;
    let st: { running: boolean; sent: number; answered: number; failure: number };
    if (inst.plugged) {
      const r = await this.call(this.admin, 'GET', `/v1/platform/devices/${d.name}/traffic`);
      st = { running: r.body.running, sent: r.body.sent, answered: r.body.answered, failure: r.body.by_code.failure };
    } else {
      const s = inst.fn.trafficStatus()!;
      st = { running: s.running, sent: s.sent, answered: s.answered, failure: s.byCode.failure };
    }
    if (st.running) return false;
    inst.runs.push({ sent: st.sent, answered: st.answered, failure: st.failure });
    inst.runOpen = false;
    return true;
  }

  async trafficActor(d: Device, rng: Rng): Promise<void> {
    while (this.running) {
      await d.lock.run(async () => {
        const inst = d.inst;
        if (!inst || !(await this.recordRun(d, inst))) return;
        const ppg = rng.int(1, 3);
        const body: Json = {
          count: rng.int(50, 400),
          pages_per_group: ppg,
          in_flight: rng.int(1, Math.floor(32 / ppg)),
          base: `0x${(rng.int(1, 1 << 20) * 0x1000).toString(16)}`,
        };
        const pasid = rng.pick([undefined, undefined, 1, 2, 2, 7]);
        if (pasid !== undefined) body.pasid = pasid;
        const r = await this.expect(this.admin, 'POST', `/v1/platform/devices/${d.name}/traffic`, body, [202]);
        if (r.status === 202) inst.runOpen = true;
      });
      await sleep(rng.int(5, 40));
    }
  }

  // ---- DMA -------------------------------------------------------------------

  /**
   * DMAs through the device: they wait on their page requests (the fault
   * queues, detach, unplug, timeouts); what matters is the device side at the
   * end (every PRG answered once, none unexpected) and that each DMA ends.
   */
  async dmaActor(d: Device, rng: Rng): Promise<void> {
    const workers = Array.from({ length: 3 }, async () => {
      while (this.running) {
        const length = rng.int(1, 3 * 4096);
        const write = rng.chance(0.3);
        const body: Json = {
          iova: `0x${(rng.int(0, 255) * 0x10000 + rng.int(0, 4) * 0x1000 + rng.int(0, 100)).toString(16)}`,
          length: `0x${length.toString(16)}`,
          access: write ? 'write' : 'read',
          timeout_ms: rng.int(20, 400),
        };
        if (write) body.data = 'ab'.repeat(length);
        const pasid = rng.pick([undefined, undefined, 1, 2]);
        if (pasid !== undefined) body.pasid = pasid;
        const r = await this.expect(this.admin, 'POST', `/v1/platform/devices/${d.name}/dma`, body, [200], ['ENOENT']);
        if (r.status === 200) {
          this.stats.dmas++;
          if (!['ok', 'invalid', 'timeout', 'pri_disabled'].includes(r.body.status)) this.problem(`DMA ended ${JSON.stringify(r.body)}`);
        }
        await sleep(rng.int(0, 20));
      }
    });
    await Promise.all(workers);
  }

  // ---- raw injection -----------------------------------------------------------

  async injectorActor(d: Device, rng: Rng): Promise<void> {
    while (this.running) {
      await d.lock.run(async () => {
        const inst = d.inst;
        if (!inst) return;
        for (let burst = rng.int(1, 6); burst > 0; burst--) {
          // A PRG index not outstanding (the device never reuses one while outstanding).
          let grpid = rng.int(0, 511);
          for (let tries = 0; inst.outstanding.has(grpid) && tries < 600; tries++) grpid = (grpid + 1) & 511;
          if (inst.outstanding.has(grpid)) return;
          const pasid = rng.pick([undefined, undefined, 1, 2, 5, d.sva]);
          const pages = rng.int(1, 4);
          const malformed = rng.chance(0.05);
          const perm = malformed ? 9 : rng.pick([1, 1, 2, 3]);
          // Inside the SVA VMA (resolved by the daemon) or anywhere (outside it: INVALID).
          const base = pasid === d.sva && rng.chance(0.7) ? SVA_VMA + BigInt(rng.int(0, 240)) * 0x1000n : BigInt(rng.int(1, 1 << 24)) * 0x1000n;
          for (let p = 0; p < pages; p++) {
            const last = p === pages - 1;
            if (last) {
              // Counted before it is sent: its response may arrive before the 202.
              inst.outstanding.set(grpid, [pasid]);
              inst.lastsSent++;
            }
            const body: Json = { grpid, addr: `0x${(base + BigInt(p) * 0x1000n).toString(16)}`, perm, last };
            if (pasid !== undefined) body.pasid = pasid;
            // A partial beyond the device's quota is refused (ENOSPC); the group goes on without it.
            const r = await this.expect(this.admin, 'POST', `/v1/platform/devices/${d.name}/page-requests`, body, [202], last ? [] : ['ENOSPC']);
            if (r.status === 202) this.stats.injected++;
            else this.stats.partialsRefused++;
          }
          if (rng.chance(0.05)) {
            // A lone partial: it needs no response (a later last with its index gathers it).
            const body: Json = { grpid: rng.int(0, 511), addr: '0x7000', perm: 1, last: false };
            const r = await this.expect(this.admin, 'POST', `/v1/platform/devices/${d.name}/page-requests`, body, [202], ['ENOSPC']);
            if (r.status !== 202) this.stats.partialsRefused++;
          }
        }
      });
      await sleep(rng.int(2, 25));
    }
  }

  /** Match new responses of a raw instance against what it has outstanding. */
  consume(inst: Instance, responses: Array<{ pasid?: number; grpid: number; code: string; seq: number }>): void {
    for (const r of responses) {
      if (r.seq !== inst.seq + 1) inst.violations.push(`response seq ${r.seq} after ${inst.seq}`);
      inst.seq = r.seq;
      const pending = inst.outstanding.get(r.grpid);
      if (!pending || pending.length === 0) {
        inst.violations.push(`response for PRG index ${r.grpid} (pasid ${r.pasid}) that was not outstanding: a double or unexpected response`);
        continue;
      }
      const i = pending.indexOf(r.pasid);
      if (i < 0) inst.violations.push(`response for PRG index ${r.grpid} with pasid ${r.pasid}, outstanding with pasid ${pending.join(',')}`);
      pending.splice(Math.max(0, i), 1);
      if (pending.length === 0) inst.outstanding.delete(r.grpid);
      if (r.code === 'failure') inst.violations.push(`Response Failure for PRG index ${r.grpid}`);
    }
  }

  async pollResponses(d: Device): Promise<void> {
    for (const inst of d.instances) {
      if (inst.plugged) {
        const r = await this.call(this.admin, 'GET', `/v1/platform/devices/${d.name}/responses?since=${inst.seq}`);
        // The instance may have been unplugged (and maybe replaced) while we asked.
        if (r.status === 200 && inst.plugged && d.inst === inst) this.consume(inst, r.body.responses);
      } else {
        // Gone from the platform: its last responses (the unplug answered its groups) are read from the function itself.
        this.consume(
          inst,
          inst.fn.responsesSince(inst.seq).map((x) => ({ ...(x.pasid === undefined ? {} : { pasid: x.pasid }), grpid: x.grpid, code: x.code, seq: x.seq })),
        );
      }
    }
  }

  async pollerActor(d: Device): Promise<void> {
    while (this.running) {
      await sleep(100);
      await d.lock.run(() => this.pollResponses(d));
    }
  }

  // ---- contexts and topology -----------------------------------------------------

  async openSlot(i: number, rng: Rng): Promise<Slot> {
    const r = await this.expect(this.server.api, 'POST', '/v1/contexts', {}, [201]);
    const api = this.server.api.withToken(r.body.token);
    const prefix = `/v1/contexts/${r.body.ctx}`;
    const ioas = (await this.expect(api, 'POST', `${prefix}/ioas`, {}, [201])).body.id;
    const slot: Slot = {
      i,
      gen: (this.slots[i]?.gen ?? 0) + 1,
      alive: true,
      ctx: r.body.ctx,
      token: r.body.token,
      api,
      ioas,
      faults: [],
      hwpts: new Map(),
      devIds: new Map(),
      attached: new Map(),
      mapped: [],
    };
    for (let k = 0; k < FAULT_OPTIONS.length; k++) slot.faults.push(await this.newFault(slot, k, rng));
    return slot;
  }

  async newFault(slot: Slot, k: number, rng: Rng): Promise<FaultQ> {
    const opts: Json = { ...FAULT_OPTIONS[k] };
    if (k === 1) opts.overflow = rng.pick(['success', 'invalid']);
    const f = (await this.expect(slot.api, 'POST', `/v1/contexts/${slot.ctx}/faults`, opts, [201])).body;
    return { k, id: f.id, stream: f.stream, paused: false, sessions: 0 };
  }

  /**
   * The hwpts of @slot for @iommu (-1 for one not allocated yet), allocated
   * with @devId when missing: one per fault queue, and one without.
   */
  async hwptsFor(slot: Slot, iommu: string, devId: number): Promise<number[]> {
    let hs = slot.hwpts.get(iommu);
    if (!hs) {
      hs = [-1, -1, -1, -1];
      slot.hwpts.set(iommu, hs);
    }
    for (let k = 0; k < hs.length; k++) {
      if (hs[k] !== -1) continue;
      const f = slot.faults[k];
      const body = f
        ? { dev_id: devId, pt_id: slot.ioas, flags: HWPT_FLAGS.FAULT_ID_VALID | HWPT_FLAGS.PASID, fault_id: f.id }
        : { dev_id: devId, pt_id: slot.ioas, flags: HWPT_FLAGS.PASID };
      // The device may have been unplugged meanwhile (its dev_id gone).
      const r = await this.expect(slot.api, 'POST', `/v1/contexts/${slot.ctx}/hwpt`, body, [201], ['ENOENT']);
      if (r.status === 201) hs[k] = r.body.id;
    }
    return hs;
  }

  /** Bind the slot's plugged devices that are not bound yet, and attach them somewhere. */
  async bindDevices(slot: Slot, rng: Rng): Promise<void> {
    for (const d of this.devices) {
      const inst = d.inst;
      if (d.slot !== slot.i || !inst || slot.devIds.has(d.name)) continue;
      const r = await this.expect(slot.api, 'POST', `/v1/contexts/${slot.ctx}/devices`, { name: d.name }, [201], ['ENODEV', 'EBUSY']);
      // Unplugged (and maybe back) meanwhile: that binding is already gone.
      if (r.status !== 201 || d.inst !== inst) continue;
      slot.devIds.set(d.name, r.body.dev_id);
      for (const pasid of PASIDS) if (rng.chance(0.8)) await this.attach(slot, d, pasid, rng.int(0, 3), 'attach');
    }
  }

  async attach(slot: Slot, d: Device, pasid: Pasid, h: number, how: 'attach' | 'replace'): Promise<void> {
    const devId = slot.devIds.get(d.name);
    if (devId === undefined) return;
    const hs = await this.hwptsFor(slot, d.iommu, devId);
    if (hs[h] === -1) return;
    const key = `${d.name}:${pasid ?? 'rid'}`;
    const body: Json = { pt_id: hs[h]! };
    if (pasid !== undefined) body.pasid = pasid;
    // The device may be unplugged meanwhile (its id gone: ENOENT, or taken by a new object).
    const r = await this.expect(slot.api, 'POST', `/v1/contexts/${slot.ctx}/devices/${devId}/${how}`, body, [200], ['ENOENT', 'EBUSY', 'EINVAL']);
    if (r.status === 200 && slot.devIds.get(d.name) === devId) slot.attached.set(key, h);
  }

  async detach(slot: Slot, d: Device, pasid: Pasid): Promise<void> {
    const devId = slot.devIds.get(d.name);
    if (devId === undefined) return;
    const body: Json = pasid === undefined ? {} : { pasid };
    const r = await this.expect(slot.api, 'POST', `/v1/contexts/${slot.ctx}/devices/${devId}/detach`, body, [200], ['ENOENT', 'EINVAL']);
    if (r.status === 200 && slot.devIds.get(d.name) === devId) slot.attached.delete(`${d.name}:${pasid ?? 'rid'}`);
  }

  /** GET /faults/:id: reported = answered + auto-answered + timed out + still held (queued + outstanding). */
  async checkCounters(slot: Slot, f: FaultQ): Promise<void> {
    const r = await this.call(slot.api, 'GET', `/v1/contexts/${slot.ctx}/faults/${f.id}`);
    if (r.status !== 200) return this.problem(`GET fault ${f.id}: ${r.status} ${JSON.stringify(r.body)}`);
    if (!zFaultStatus.safeParse(r.body).success) return this.problem(`fault status outside its schema: ${JSON.stringify(r.body)}`);
    const c = r.body.counters;
    const done = c.answered_success + c.answered_invalid + c.auto_detach + c.auto_replace + c.auto_unplug + c.auto_destroy + c.timeout;
    if (c.reported - done !== r.body.queued + r.body.outstanding) {
      this.problem(`fault ${f.id} counters do not add up: ${JSON.stringify(r.body)}`);
    }
  }

  /** Stop @f's stream actors and wait until the daemon has no connection on it. */
  async quiesce(slot: Slot, f: FaultQ): Promise<void> {
    f.paused = true;
    for (let t = 0; f.sessions > 0 && t < 300; t++) await sleep(10);
    // A dropped connection is closed on the client at once, on the daemon when the TCP close arrives.
    for (let t = 0; t < 100; t++) {
      const st = await this.call(slot.api, 'GET', `/v1/contexts/${slot.ctx}/faults/${f.id}`);
      if (st.status !== 200 || st.body.connections === 0) break;
      await sleep(10);
    }
  }

  /** Destroy fault queue k (EBUSY while streamed or used by a hwpt) and make a new one. */
  async recycleFault(slot: Slot, k: number, rng: Rng): Promise<void> {
    const f = slot.faults[k]!;
    const prefix = `/v1/contexts/${slot.ctx}`;
    const used = [...slot.hwpts.values()].some((hs) => hs[k] !== -1);
    // EBUSY while a hwpt uses the queue or a stream is open. An unused queue
    // is idle between two sessions of its stream actors: then the destroy
    // succeeds and the queue is gone at once (CI once saw this).
    const first = await this.expect(slot.api, 'DELETE', `${prefix}/objects/${f.id}`, undefined, used ? [] : [204], ['EBUSY']);
    if (first.status === 204) {
      f.paused = true;
      this.stats.idleRecycles++;
      await this.expect(slot.api, 'GET', `${prefix}/faults/${f.id}`, undefined, [], ['ENOENT']);
    } else {
      await this.quiesce(slot, f);
      for (const [key, h] of [...slot.attached]) {
        if (h !== k) continue;
        const [name, p] = key.split(':');
        await this.detach(slot, this.devices.find((d) => d.name === name)!, p === 'rid' ? undefined : Number(p));
      }
      for (const hs of slot.hwpts.values()) {
        if (hs[k] === -1) continue;
        await this.expect(slot.api, 'DELETE', `${prefix}/objects/${hs[k]}`, undefined, [204]);
        hs[k] = -1;
      }
      await this.expect(slot.api, 'DELETE', `${prefix}/objects/${f.id}`, undefined, [204]);
      await this.expect(slot.api, 'GET', `${prefix}/faults/${f.id}`, undefined, [], ['ENOENT']);
    }
    // The new queue's hwpts are allocated on the next attach that picks them.
    slot.faults[k] = await this.newFault(slot, k, rng);
    this.stats.recycles++;
  }

  async releaseSlot(slot: Slot): Promise<void> {
    slot.alive = false;
    for (const f of slot.faults) f.paused = true;
    await this.expect(slot.api, 'DELETE', `/v1/contexts/${slot.ctx}`, undefined, [204]);
    this.stats.releases++;
  }

  async topologyActor(i: number, rng: Rng): Promise<void> {
    while (this.running) {
      await sleep(rng.int(10, 50));
      if (!this.running) break;
      const slot = this.slots[i]!;
      await this.bindDevices(slot, rng);
      const mine = this.devices.filter((d) => d.slot === i && slot.devIds.has(d.name));
      const x = rng.next();
      this.stats.topo++;
      if (x < 0.35 && mine.length > 0) {
        const d = rng.pick(mine);
        const pasid = rng.pick(PASIDS);
        const attached = slot.attached.has(`${d.name}:${pasid ?? 'rid'}`);
        if (!attached) await this.attach(slot, d, pasid, rng.int(0, 3), 'attach');
        else if (rng.chance(0.6)) await this.attach(slot, d, pasid, rng.int(0, 3), 'replace');
        else await this.detach(slot, d, pasid);
      } else if (x < 0.45) {
        await this.checkCounters(slot, rng.pick(slot.faults));
      } else if (x < 0.5) {
        const iova = BigInt(rng.int(0, 255)) * 0x10000n;
        if (slot.mapped.includes(iova)) {
          await this.expect(slot.api, 'POST', `/v1/contexts/${slot.ctx}/ioas/${slot.ioas}/unmap`, { iova: `0x${iova.toString(16)}`, length: '0x4000' }, [200]);
          slot.mapped.splice(slot.mapped.indexOf(iova), 1);
        } else {
          // Small quotas (see the test): ENOSPC at the context's mapped pages, ENOMEM at the daemon's budget.
          const r = await this.expect(
            slot.api,
            'POST',
            `/v1/contexts/${slot.ctx}/ioas/${slot.ioas}/map`,
            { iova: `0x${iova.toString(16)}`, length: '0x4000' },
            [201],
            ['ENOSPC', 'ENOMEM'],
          );
          if (r.status === 201) slot.mapped.push(iova);
          else if (r.body.errno === 'ENOSPC') this.stats.mapsRefusedQuota++;
          else this.stats.mapsRefusedBudget++;
        }
      } else if (x < 0.53) {
        await this.recycleFault(slot, rng.int(0, 2), rng);
      } else if (x < 0.555) {
        await this.releaseSlot(slot);
        await sleep(rng.int(20, 120));
        this.slots[i] = await this.openSlot(i, rng);
      }
    }
  }

  // ---- streams -----------------------------------------------------------------

  async streamActor(slotIndex: number, k: number, rng: Rng): Promise<void> {
    while (this.running) {
      const slot = this.slots[slotIndex]!;
      const f = slot.faults[k];
      if (!slot.alive || !f || f.paused) {
        await sleep(10);
        continue;
      }
      f.sessions++;
      try {
        await this.session(slot, f, rng);
      } finally {
        f.sessions--;
      }
      await sleep(rng.int(0, 60));
    }
  }

  /** One stream connection: read, answer at random, end it one way or another. */
  async session(slot: Slot, f: FaultQ, rng: Rng): Promise<void> {
    const uapi = rng.chance(0.4);
    const window = rng.pick([1, 2, 8, 64, 1024]);
    const url = `${this.server.wsBase}${f.stream}?window=${window}`;
    const ws = new WebSocket(url, uapi ? 'iopf.v1.uapi' : 'iopf.v1.json', { headers: { authorization: `Bearer ${slot.token}` } });
    const closed = new Promise<number>((resolve) => ws.on('close', (code) => resolve(code)));
    ws.on('error', () => {});
    const opened = await new Promise<boolean>((resolve) => {
      ws.once('open', () => resolve(true));
      ws.once('unexpected-response', (_req, res) => {
        // Refused: the context or the fault queue went away meanwhile (401/404), or the stream limit.
        if (![401, 404, 503].includes(res.statusCode ?? 0)) this.problem(`stream upgrade refused with ${res.statusCode}`);
        resolve(false);
      });
      ws.once('close', () => resolve(false));
    });
    if (!opened) return;
    this.stats.sessions++;
    /** Cookies delivered here and not yet known to be answered. */
    const pending = new Set<number>();
    let vanished = false;
    ws.on('message', (data: Buffer, binary: boolean) => {
      if (vanished) return;
      if (binary) {
        if (data.length % RECORD_SIZE !== 0) this.problem(`binary frame of ${data.length} bytes`);
        for (let o = 0; o < data.length; o += RECORD_SIZE) {
          const cookie = data.readUInt32LE(o + 36);
          if (data.readUInt32LE(o) & PGFAULT_FLAGS.LAST_PAGE) {
            pending.add(cookie);
            this.stats.groupsSeen++;
          }
        }
        return;
      }
      const m = JSON.parse(data.toString('utf8'));
      if (m.type === 'faults') {
        for (const g of m.groups) {
          pending.add(g.cookie);
          this.stats.groupsSeen++;
        }
      } else if (m.type === 'expired') {
        this.stats.expiredNotices++;
        for (const c of m.cookies) pending.delete(c);
      } else if (m.type === 'overflow') {
        this.stats.overflowNotices++;
      } else if (m.type === 'results') {
        for (const e of m.errors) if (e.errno !== 'EINVAL') this.problem(`results error ${JSON.stringify(e)}`);
      } else if (m.type === 'error') {
        this.problem(`error frame on a well-formed frame: ${JSON.stringify(m)}`);
      }
    });
    const end = Date.now() + rng.int(100, 1200);
    while (this.running && !f.paused && slot.alive && ws.readyState === WebSocket.OPEN && Date.now() < end) {
      await sleep(rng.int(0, 4));
      if (pending.size === 0) continue;
      const entries: Array<{ cookie: number; code: number | string }> = [];
      for (const cookie of [...pending]) {
        const x = rng.next();
        if (x < 0.1) continue; // left unanswered for now (time out, redelivery)
        if (x < 0.16) {
          entries.push({ cookie, code: uapi ? 7 : rng.pick([2, 'maybe', -1]) });
          this.stats.badCodes++;
          continue; // a bad code leaves the cookie valid
        }
        entries.push({ cookie, code: uapi ? rng.pick([0, 0, 1]) : rng.pick([0, 0, 1, 'success', 'invalid']) });
        pending.delete(cookie);
      }
      if (rng.chance(0.1)) {
        entries.splice(rng.int(0, entries.length), 0, { cookie: rng.int(1, 40), code: 0 });
        this.stats.stale++;
      }
      if (entries.length === 0) continue;
      this.stats.answersSent += entries.length;
      if (uapi) {
        // write() stops at the first bad entry: send the good ones first, then each bad one alone.
        const good = entries.filter((e) => e.code === 0 || e.code === 1);
        const bad = entries.filter((e) => !(e.code === 0 || e.code === 1));
        for (const batch of [good, ...bad.map((b) => [b])]) {
          if (batch.length === 0) continue;
          const b = Buffer.alloc(batch.length * 8);
          batch.forEach((e, i) => {
            b.writeUInt32LE(e.cookie >>> 0, i * 8);
            b.writeUInt32LE(Number(e.code) >>> 0, i * 8 + 4);
          });
          ws.send(b);
        }
      } else {
        ws.send(JSON.stringify({ type: 'responses', responses: entries }));
      }
    }
    const how = rng.next();
    if (!this.running || how < 0.5) {
      this.stats.closes++;
      ws.close();
    } else if (how < 0.8) {
      // Drop the TCP connection without a close frame.
      this.stats.drops++;
      ws.terminate();
    } else {
      // Vanish: stop reading and answering; the daemon's heartbeat finds out.
      this.stats.vanished++;
      vanished = true;
      (ws as unknown as { _socket: { pause(): void } })._socket.pause();
      await sleep(700);
      ws.terminate();
    }
    await Promise.race([closed, sleep(2000)]);
  }

  // ---- the run -------------------------------------------------------------------

  async run(): Promise<void> {
    for (const d of this.devices) await this.plug(d);
    for (let i = 0; i < 3; i++) this.slots.push(await this.openSlot(i, this.rng.fork()));
    for (const s of this.slots) await this.bindDevices(s, this.rng.fork());
    const actors: Array<Promise<void>> = [this.platformActor(this.rng.fork())];
    for (const d of this.devices) {
      actors.push(
        d.kind === 'traffic'
          ? this.trafficActor(d, this.rng.fork())
          : d.kind === 'dma'
            ? this.dmaActor(d, this.rng.fork())
            : this.injectorActor(d, this.rng.fork()),
      );
      if (d.kind === 'raw') actors.push(this.pollerActor(d));
    }
    for (let i = 0; i < 3; i++) {
      actors.push(this.topologyActor(i, this.rng.fork()));
      for (let k = 0; k < FAULT_OPTIONS.length; k++) for (let j = 0; j < 2; j++) actors.push(this.streamActor(i, k, this.rng.fork()));
    }
    // At least CHAOS_MS, and on until every kind of event happened often
    // enough: how much a fixed time covers depends on the machine's load.
    const cap = Date.now() + CHAOS_MS + CHAOS_EXTRA_MS;
    await sleep(CHAOS_MS);
    while (!this.enough() && Date.now() < cap) await sleep(100);
    this.running = false;
    await Promise.all(actors);
    // Every fault queue's counters add up, then every context goes.
    for (const s of this.slots) for (const f of s.faults) await this.checkCounters(s, f);
    for (const s of this.slots) await this.releaseSlot(s);
  }
}

test('chaos: every page request that needs a response gets exactly one, and every table empties', { timeout: CHAOS_MS + CHAOS_EXTRA_MS + 60_000 }, async () => {
  const seed = testSeed();
  const log: LogCapture = captureLog('warn');
  const server = await startServer({
    adminToken: ADMIN,
    logger: log.logger,
    platform: {
      iommus: [
        { name: 'dmar0', model: 'vtd', prq_depth: 64 },
        { name: 'smmu0', model: 'smmuv3', prq_depth: 512 },
        { name: 'gen0', model: 'generic', prq_depth: 256 },
      ],
      devices: [],
    },
    stream: { heartbeatMs: 250 },
    // Small quotas, so that maps (4 pages each) meet ENOSPC (8 pages a
    // context) and ENOMEM (the daemon's budget: 12 pages for 3 contexts), and
    // partials ENOSPC (3 per device; groups have up to 3).
    limits: { maxMappedPages: 8, memoryLimit: 12 * LIMITS.pageCost, maxPartials: 3 },
  });
  try {
    await withSeed('chaos', seed, async () => {
      const admin = server.api.withToken(ADMIN);
      const chaos = new Chaos(server, admin, new Rng(seed));
      await chaos.run();

      // Traffic runs end on their own once nothing handles their faults.
      for (const d of chaos.devices) {
        if (d.kind !== 'traffic') continue;
        for (const inst of d.instances) {
          for (let t = 0; !(await chaos.recordRun(d, inst)); t++) {
            assert.ok(t < 500, `${d.name}: a traffic run never ended`);
            await sleep(10);
          }
        }
      }
      for (const d of chaos.devices) if (d.kind === 'raw') await chaos.pollResponses(d);
      assert.deepEqual(chaos.problems, [], 'REST and stream replies as the protocol says');

      let groups = 0;
      for (const d of chaos.devices) {
        for (const [n, inst] of d.instances.entries()) {
          const what = `${d.name}#${n}`;
          const fn = inst.fn;
          assert.equal(fn.unexpectedResponses, 0, `${what}: responses for a PRG index that was not outstanding`);
          assert.equal(fn.outstandingGroups, 0, `${what}: PRGs never answered`);
          assert.ok(fn.priEnabled || !inst.plugged, `${what}: PRI stopped (a Response Failure)`);
          const logged = inst.plugged
            ? (await admin.ok('platform.device.responses', 'GET', `/v1/platform/devices/${d.name}/responses`)).responses.length
            : fn.responses.length;
          if (d.kind === 'dma') {
            // Each DMA ended (above); its page request groups were each answered once (unexpected 0, outstanding 0).
            groups += logged;
          } else if (d.kind === 'traffic') {
            let sent = 0;
            for (const r of inst.runs) {
              assert.equal(r.answered, r.sent, `${what}: a run answered ${r.answered} of the ${r.sent} groups it sent`);
              assert.equal(r.failure, 0, `${what}: Response Failure`);
              sent += r.sent;
            }
            assert.equal(logged, sent, `${what}: ${logged} responses for ${sent} groups sent`);
            groups += sent;
          } else {
            assert.deepEqual(inst.violations, [], `${what}: every response matched an outstanding last request`);
            assert.deepEqual([...inst.outstanding.keys()], [], `${what}: last requests never answered`);
            assert.equal(logged, inst.lastsSent, `${what}: ${logged} responses for ${inst.lastsSent} last requests`);
            groups += inst.lastsSent;
          }
        }
      }

      // Every table of the daemon is empty, seen from outside (/metrics) and inside (audit).
      const metrics = (await server.api.get('/metrics')).text;
      // Partials are the device's (lone partials injected above wait for a last request with their index), and the
      // SVA bond of rA keeps its process's pages: both are checked after the unplug below.
      for (const table of [
        'contexts',
        'objects',
        'fault_queued',
        'fault_outstanding',
        'fault_cookies',
        'mapped_pages',
        'device_outstanding_prgs',
        'iopf_pending',
        'prq',
        'stalls',
      ]) {
        assert.equal(metricValue(metrics, 'iopfd_table_entries', `table="${table}"`), 0, `table ${table} is not empty`);
      }
      assert.equal(metricValue(metrics, 'iopfd_streams_open'), 0);
      // The quotas were in play, counted by limit; every context is gone, so is its charge.
      // (budget.test.ts meets each refusal deterministically; here at least one happened amid the rest.)
      assert.ok(chaos.stats.mapsRefusedQuota + chaos.stats.mapsRefusedBudget > 0, 'no map was refused');
      assert.equal(metricValue(metrics, 'iopfd_limit_refusals_total', 'limit="mapped_pages"'), chaos.stats.mapsRefusedQuota);
      assert.equal(metricValue(metrics, 'iopfd_limit_refusals_total', 'limit="memory"'), chaos.stats.mapsRefusedBudget);
      assert.equal(metricValue(metrics, 'iopfd_limit_refusals_total', 'limit="partials"'), chaos.stats.partialsRefused);
      assert.equal(metricValue(metrics, 'iopfd_memory_budget_bytes', 'kind="in_use"'), 0);
      const platform = server.daemon.platform;
      assert.deepEqual({ ...platform.audit(), partials: 0 }, { outstandingGroups: 0, unexpectedResponses: 0, iopfPending: 0, partials: 0, prq: 0, stalls: 0 });
      assert.equal(platform.contextCount, 0);
      const before = chaos.devices.map((d) => d.inst?.fn.responses.length);
      for (const d of chaos.devices) await admin.ok('platform.device.remove', 'DELETE', `/v1/platform/devices/${d.name}`);
      assert.deepEqual(platform.audit(), { outstandingGroups: 0, unexpectedResponses: 0, iopfPending: 0, partials: 0, prq: 0, stalls: 0 });
      assert.deepEqual(
        chaos.devices.map((d) => d.inst?.fn.responses.length),
        before,
        'nothing was left to answer at unplug',
      );
      assert.equal(platform.frames.inUse, 0, 'every host frame (IOAS mappings, SVA page tables and pages) is free');
      // Every group queued on a fault queue was answered once: by a client or by the daemon (overflow groups are never queued).
      const sum = (name: string, filter: RegExp = /./): number =>
        metrics
          .split('\n')
          .filter((l) => l.startsWith(name) && filter.test(l))
          .reduce((n, l) => n + Number(l.split(' ').pop()), 0);
      const reported = sum('iopfd_groups_reported_total');
      const answered = sum('iopfd_groups_answered_total{');
      const auto = sum('iopfd_groups_auto_answered_total{', /^(?!.*cause="overflow")/);
      assert.equal(answered + auto, reported, `metrics: ${reported} groups reported, ${answered} answered by clients, ${auto} by the daemon`);
      assert.deepEqual(unexpectedErrors(log), [], 'nothing logged at error level');

      assert.ok(groups >= 2000, `only ${groups} page request groups`);
      // The last three releases are the clean-up's; the run itself released at least one.
      const s = chaos.stats;
      assert.ok(s.sessions > 20 && s.unplugs > 3 && s.releases > 3 && s.recycles > 0 && s.dmas > 20 && s.svaRebinds > 0, JSON.stringify(s));
      process.stdout.write(`# chaos seed ${seed}: ${groups} groups needing a response, ${JSON.stringify({ ...s, reported, answered, auto })}\n`);
    });
  } finally {
    await server.close();
  }
});
