/**
 * Model-based test of the invariants: random interleavings of reports (partial
 * and last, through the PRQ, with overflow), reads, responses (good and bad),
 * connection close/open, attach, detach, replace, destroy, unplug, context
 * release, response timeouts and depth overflow, and, on a vIOMMU of a second
 * (SMMUv3) unit in the same context, vEVENTQ operations: events reported
 * through arm_smmu_handle_event, reads of random sizes, vEVENTQ destroy and
 * re-alloc (small depths, a sequence counter started near the wrap, so the
 * queue overflows and wraps). On the SMMUv3 model one device has no stall
 * cap, so its requests take arm_smmu_handle_ppr. After each run every page
 * request that needed a response got exactly one, and nothing is left in
 * any table; at every step no vEVENTQ event was lost without a LOST_EVENTS
 * header and none was read twice (VeventqRef).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  ManualScheduler,
  Platform,
  IommuError,
  iommufdDeviceAttach,
  iommufdDeviceBind,
  iommufdDeviceDetach,
  iommufdDeviceReplace,
  iommufdFaultAlloc,
  iommufdHwptAlloc,
  iommufdIoasAlloc,
  type IommufdCtx,
  type IommufdDevice,
  type IommufdFault,
  type IommufdFaultConn,
  type IommufdHwpt,
  type IopfGroup,
  type IommuDevice,
  kernelProfile,
} from '../../core/index.js';
import type { PcieFunction } from '../../core/hw/pcie-function.js';
import type { SimIommu } from '../../core/drivers/sim-iommu.js';
import { STE_CFG_S1_TRANS, encodeSte } from '../../core/hw/smmuv3.js';
import { iommufdVdeviceAlloc, iommufdVeventqAlloc, iommufdViommuAlloc, type IommufdVeventq, type IommufdViommu } from '../../core/index.js';
import { SEQ_MOD, VeventqRef, smmuEvent } from './arm-events.js';
import { respond } from './harness.js';

const DEVICES = ['d0', 'd1', 'd2'] as const;
const PASIDS = [undefined, 5, 9] as const;

type Cmd =
  | { k: 'report'; dev: number; pasid: number; grpid: number; last: boolean; burst: number }
  | { k: 'drain' }
  | { k: 'read'; conn: number; max: number }
  | { k: 'respond'; conn: number; pick: number; code: number }
  | { k: 'respondStale'; cookie: number }
  | { k: 'close'; conn: number }
  | { k: 'open'; fault: number; window: number }
  | { k: 'attach'; dev: number; pasid: number; hwpt: number }
  | { k: 'replace'; dev: number; pasid: number; hwpt: number }
  | { k: 'detach'; dev: number; pasid: number }
  | { k: 'destroy'; id: number }
  | { k: 'unplug'; dev: number }
  | { k: 'release' }
  | { k: 'advance'; ms: number }
  | { k: 'vreport'; n: number }
  | { k: 'vread'; max: number }
  | { k: 'vdestroy' }
  | { k: 'valloc'; depth: number; nearWrap: boolean };

const cmdArb: fc.Arbitrary<Cmd> = fc.oneof(
  {
    weight: 8,
    arbitrary: fc.record({
      k: fc.constant('report' as const),
      dev: fc.nat(2),
      pasid: fc.nat(2),
      grpid: fc.nat(5),
      last: fc.boolean(),
      burst: fc.integer({ min: 1, max: 4 }),
    }),
  },
  { weight: 2, arbitrary: fc.constant({ k: 'drain' as const }) },
  { weight: 5, arbitrary: fc.record({ k: fc.constant('read' as const), conn: fc.nat(3), max: fc.integer({ min: 1, max: 8 }) }) },
  { weight: 5, arbitrary: fc.record({ k: fc.constant('respond' as const), conn: fc.nat(3), pick: fc.nat(20), code: fc.constantFrom(0, 0, 1, 2) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('respondStale' as const), cookie: fc.integer({ min: 0, max: 12 }) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('close' as const), conn: fc.nat(3) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('open' as const), fault: fc.nat(2), window: fc.integer({ min: 1, max: 6 }) }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('attach' as const), dev: fc.nat(2), pasid: fc.nat(2), hwpt: fc.nat(3) }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('replace' as const), dev: fc.nat(2), pasid: fc.nat(2), hwpt: fc.nat(3) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('detach' as const), dev: fc.nat(2), pasid: fc.nat(2) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('destroy' as const), id: fc.integer({ min: 1, max: 20 }) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('unplug' as const), dev: fc.nat(2) }) },
  { weight: 1, arbitrary: fc.constant({ k: 'release' as const }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('advance' as const), ms: fc.integer({ min: 1, max: 120 }) }) },
  { weight: 3, arbitrary: fc.record({ k: fc.constant('vreport' as const), n: fc.integer({ min: 1, max: 6 }) }) },
  { weight: 3, arbitrary: fc.record({ k: fc.constant('vread' as const), max: fc.integer({ min: 1, max: 8 }) }) },
  { weight: 1, arbitrary: fc.constant({ k: 'vdestroy' as const }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('valloc' as const), depth: fc.integer({ min: 1, max: 5 }), nearWrap: fc.boolean() }) },
);

/** The vSID of the SMMUv3 device `a0`. */
const VSID = 0x5;

interface Ctx {
  ctx: IommufdCtx;
  devs: Array<IommufdDevice | undefined>;
  faults: IommufdFault[];
  hwpts: IommufdHwpt[];
  conns: IommufdFaultConn[];
  /** a0's vIOMMU (on its own SMMUv3 unit) and its vEVENTQ with the reference, while one exists. */
  viommu: IommufdViommu;
  vq: { q: IommufdVeventq; ref: VeventqRef } | undefined;
}

/** A vEVENTQ of @depth on @viommu, its sequence counter started at @startSeq, with a fresh reference. */
function allocVeventq(ctx: IommufdCtx, viommu: IommufdViommu, depth: number, startSeq: number): { q: IommufdVeventq; ref: VeventqRef } {
  const q = iommufdVeventqAlloc(ctx, { viommu_id: viommu.id, type: 'arm_smmuv3', depth });
  q.sequence = startSeq;
  return { q, ref: new VeventqRef(q, VSID) };
}

function setup(p: Platform, plugged: boolean[]): Ctx {
  const ctx = p.createContext();
  const devs = DEVICES.map((name, i) => (plugged[i] ? iommufdDeviceBind(ctx, name) : undefined));
  const any = devs.find((d) => d)!;
  const ioas = iommufdIoasAlloc(ctx);
  // F0: plain; F1: depth 2, overflow answered INVALID; F2: response timeout 50 ms.
  const faults = [iommufdFaultAlloc(ctx, {}), iommufdFaultAlloc(ctx, { depth: 2, overflow: 'invalid' }), iommufdFaultAlloc(ctx, { response_timeout_ms: 50 })];
  const parent = iommufdHwptAlloc(ctx, { dev_id: any.id, pt_id: ioas.id, flags: 1 | 8 });
  const nested = (f: IommufdFault | undefined): IommufdHwpt =>
    iommufdHwptAlloc(ctx, {
      dev_id: any.id,
      pt_id: parent.id,
      flags: (f ? 4 : 0) | 8,
      data_type: 'vtd_s1',
      data: { flags: 0, pgtbl_addr: 0n, addr_width: 48 },
      ...(f ? { fault_id: f.id } : {}),
    });
  const hwpts = [nested(faults[0]), nested(faults[1]), nested(faults[2]), parent];
  const conns: IommufdFaultConn[] = [];
  // a0: attached to a translating arm_smmuv3 nested hwpt through vDEVICE VSID, a vEVENTQ of depth 3
  // whose sequence numbers wrap after 3 events.
  const a0 = iommufdDeviceBind(ctx, 'a0');
  const aparent = iommufdHwptAlloc(ctx, { dev_id: a0.id, pt_id: iommufdIoasAlloc(ctx).id, flags: 1 });
  const viommu = iommufdViommuAlloc(ctx, { type: 'arm_smmuv3', dev_id: a0.id, hwpt_id: aparent.id });
  iommufdVdeviceAlloc(ctx, { viommu_id: viommu.id, dev_id: a0.id, virt_id: BigInt(VSID) });
  const anested = iommufdHwptAlloc(ctx, {
    dev_id: a0.id,
    pt_id: viommu.id,
    data_type: 'arm_smmuv3',
    data: { ste: encodeSte({ cfg: STE_CFG_S1_TRANS, s1ContextPtr: 0x1000n }) },
  });
  iommufdDeviceAttach(a0, anested.id);
  return { ctx, devs, faults, hwpts, conns, viommu, vq: allocVeventq(ctx, viommu, 3, SEQ_MOD - 3) };
}

function openConn(c: Ctx, fault: IommufdFault, window: number): void {
  c.conns.push(fault.open(window, { readable() {}, expired() {}, overflow() {}, revoked() {}, kill() {} }));
}

function tolerate(fn: () => void): void {
  try {
    fn();
  } catch (e) {
    if (!(e instanceof IommuError)) throw e;
  }
}

/**
 * IOPF follows the fault-capable attachments: a present device is on its
 * IOMMU's iopf queue exactly when one of its attachments (RID or PASID) has a
 * fault-capable domain.
 */
function checkIopfFollowsAttachments(fns: PcieFunction[], plugged: boolean[]): void {
  for (let i = 0; i < fns.length; i++) {
    if (!plugged[i]) continue;
    const dev = fns[i]!.iommu as IommuDevice;
    const handles = [0, ...PASIDS.filter((x) => x !== undefined)].map((pasid) => dev.group.pasidArray.get(pasid));
    const faultCapable = handles.some((h) => h?.domain.iopfHandler !== undefined);
    assert.equal(dev.faultParam !== undefined, faultCapable, `${dev.name}: on the iopf queue ⇔ a fault-capable attachment`);
  }
}

function run(cmds: Cmd[], model: 'vtd' | 'generic' | 'smmuv3', kernel = 'latest'): void {
  const sched = new ManualScheduler();
  const p = new Platform({
    // A release's E1 answer to a non-last request breaks the one-response-per-
    // last-request count by design (it is the kernel's bug): off here.
    profile: { ...kernelProfile(kernel)!, nonLastInvalid: false },
    sched,
    desc: {
      iommus: [
        { name: 'iommu0', model, prq_depth: 6 },
        { name: 'smmu1', model: 'smmuv3', prq_depth: 6 },
      ],
      devices: [
        // On the SMMUv3 model d2 has no stall cap: its page requests are PCIe PRI requests the driver answers (arm_smmu_handle_ppr).
        ...DEVICES.map((name, i) => ({
          name,
          bdf: `00:0${i + 2}.0`,
          caps: { prg_response_needs_pasid: true, ...(model === 'smmuv3' && i === 2 ? { stall: false } : {}) },
        })),
        { name: 'a0', iommu: 'smmu1', bdf: '01:00.0' },
      ],
    },
  });
  const armDriver = p.iommuDevice('a0').ops as SimIommu;
  const armSid = p.function('a0').rid;
  /** Tag of the next vEVENTQ event (its address >> 12), unique over the run. */
  let nextTag = 0;
  const fns: PcieFunction[] = DEVICES.map((n) => p.function(n));
  const plugged = DEVICES.map(() => true);
  // Last requests each function actually sent (the ones that need a response).
  const lasts = new Map<PcieFunction, number>(fns.map((f) => [f, 0]));
  let c = setup(p, plugged);
  const delivered = (conn: IommufdFaultConn): IopfGroup[] => conn.delivered.toArray();

  for (const cmd of cmds) {
    switch (cmd.k) {
      case 'report': {
        if (!plugged[cmd.dev]) break;
        const fn = fns[cmd.dev]!;
        for (let i = 0; i < cmd.burst; i++) {
          const last = cmd.last && i === cmd.burst - 1;
          const sent = fn.injectPageRequest({
            pasid: PASIDS[cmd.pasid],
            prgi: cmd.grpid,
            addr: BigInt(0x10000 + i * 0x1000),
            read: true,
            write: false,
            exec: false,
            priv: false,
            last,
          });
          if (sent && last) lasts.set(fn, lasts.get(fn)! + 1);
        }
        break;
      }
      case 'drain':
        sched.run();
        break;
      case 'read': {
        const conn = c.conns[cmd.conn];
        if (conn?.open) conn.fault.read(conn, Infinity, cmd.max);
        break;
      }
      case 'respond': {
        const conn = c.conns[cmd.conn];
        if (!conn?.open) break;
        const ds = delivered(conn);
        const g = ds[cmd.pick % Math.max(1, ds.length)];
        if (g) respond(conn.fault, [{ cookie: g.cookie, code: cmd.code }], false);
        break;
      }
      case 'respondStale':
        for (const f of c.faults) respond(f, [{ cookie: cmd.cookie, code: 0 }], true);
        break;
      case 'close': {
        const conn = c.conns[cmd.conn];
        if (conn) conn.fault.close(conn);
        break;
      }
      case 'open':
        if (c.conns.length < 4) tolerate(() => openConn(c, c.faults[cmd.fault]!, cmd.window));
        break;
      case 'attach': {
        const d = c.devs[cmd.dev];
        if (d) tolerate(() => iommufdDeviceAttach(d, c.hwpts[cmd.hwpt]!.id, PASIDS[cmd.pasid]));
        break;
      }
      case 'replace': {
        const d = c.devs[cmd.dev];
        if (d) tolerate(() => iommufdDeviceReplace(d, c.hwpts[cmd.hwpt]!.id, PASIDS[cmd.pasid]));
        break;
      }
      case 'detach': {
        const d = c.devs[cmd.dev];
        if (d) tolerate(() => iommufdDeviceDetach(d, PASIDS[cmd.pasid]));
        break;
      }
      case 'destroy':
        tolerate(() => c.ctx.destroyObject(cmd.id));
        break;
      case 'unplug':
        if (plugged[cmd.dev] && plugged.filter(Boolean).length > 1) {
          p.removeDevice(DEVICES[cmd.dev]!);
          plugged[cmd.dev] = false;
          c.devs[cmd.dev] = undefined;
        }
        break;
      case 'release':
        p.releaseContext(c.ctx.id);
        c = setup(p, plugged);
        break;
      case 'advance':
        sched.advance(cmd.ms);
        break;
      case 'vreport':
        for (let i = 0; i < cmd.n; i++) {
          const tag = nextTag++;
          const before = c.vq?.q.counters.reported;
          const ret = armDriver.handleEvent(smmuEvent(armSid, undefined, { addr: BigInt(tag) << 12n }));
          // Taken by the vEVENTQ exactly when there is one and a0 is still a vmaster (a random destroy may
          // have unbound it); otherwise the host's.
          const forwards = c.vq !== undefined && armDriver.vmasters.size > 0;
          assert.equal(ret === 0, forwards, 'arm_smmu_handle_event forwards to the vEVENTQ iff there is one');
          if (forwards) {
            assert.equal(c.vq!.q.counters.reported, before! + 1);
            c.vq!.ref.reported(tag);
          } else if (c.vq) assert.equal(c.vq.q.counters.reported, before, 'an event the queue did not take is not counted');
        }
        break;
      case 'vread':
        if (c.vq) c.vq.ref.read(c.vq.q.read(cmd.max), cmd.max);
        break;
      case 'vdestroy':
        if (c.vq) {
          c.ctx.destroyObject(c.vq.q.id);
          c.vq = undefined;
        }
        break;
      case 'valloc':
        if (c.vq) assert.throws(() => iommufdVeventqAlloc(c.ctx, { viommu_id: c.viommu.id, type: 'arm_smmuv3', depth: cmd.depth }), /already has/);
        else c.vq = allocVeventq(c.ctx, c.viommu, cmd.depth, cmd.nearWrap ? SEQ_MOD - 3 : 0);
        break;
    }
    // A random destroy may have taken the vEVENTQ (or a context release everything).
    if (c.vq && c.viommu.veventqs.get('arm_smmuv3') !== c.vq.q) c.vq = undefined;
    c.vq?.ref.checkCounters();
    checkIopfFollowsAttachments(fns, plugged);
    // Never more responses than last requests, at any time.
    for (const fn of fns) assert.ok(fn.responses.length <= lasts.get(fn)!, `${fn.name}: ${fn.responses.length} responses for ${lasts.get(fn)} last requests`);
  }

  // Teardown: the vEVENTQ gives every kept event not yet read, once; everything outstanding is answered, exactly once.
  c.vq?.ref.drain();
  p.releaseContext(c.ctx.id);
  p.shutdown();
  sched.run();
  for (let i = 0; i < fns.length; i++) {
    if (plugged[i]) p.removeDevice(DEVICES[i]!);
  }
  sched.run();
  for (const fn of fns) {
    assert.equal(fn.unexpectedResponses, 0, `${fn.name}: unexpected responses`);
    assert.equal(fn.outstandingGroups, 0, `${fn.name}: groups never answered`);
    assert.equal(fn.responses.length, lasts.get(fn), `${fn.name}: responses vs last requests`);
  }
  assert.deepEqual(p.audit(), { outstandingGroups: 0, unexpectedResponses: 0, iopfPending: 0, partials: 0, prq: 0, stalls: 0 });
  assert.equal(p.contextCount, 0);
  assert.equal(p.frames.inUse, 0);
}

for (const model of ['vtd', 'generic', 'smmuv3'] as const) {
  test(`model: every page request that needs a response gets exactly one (${model})`, () => {
    fc.assert(
      fc.property(fc.array(cmdArb, { minLength: 1, maxLength: 120 }), (cmds) => run(cmds, model)),
      { numRuns: 150 },
    );
  });
}

// Attach/detach with IOPF on and off under the profile where PRI itself follows the attachments.
test('model: every page request that needs a response gets exactly one (vtd, kernel v6.14: PRI at attach)', () => {
  fc.assert(
    fc.property(fc.array(cmdArb, { minLength: 1, maxLength: 120 }), (cmds) => run(cmds, 'vtd', 'v6.14')),
    { numRuns: 100 },
  );
});

test('model: the checker itself catches a double response', () => {
  // Guard the guard: answering a group twice at the hardware level must trip the invariant.
  const sched = new ManualScheduler();
  const p = new Platform({ sched, desc: { iommus: [{ name: 'iommu0', model: 'vtd', prq_depth: 8 }], devices: [{ name: 'd0', bdf: '00:02.0' }] } });
  const fn = p.function('d0');
  fn.injectPageRequest({ pasid: undefined, prgi: 1, addr: 0x1000n, read: true, write: false, exec: false, priv: false, last: true });
  sched.run();
  fn.receiveResponse(undefined, 1, 0);
  assert.equal(fn.responses.length, 2);
  assert.equal(fn.unexpectedResponses, 1);
});
