/**
 * DOC: /v1/platform routes (the protocol reference, docs/protocol.md)
 *
 * The simulated hardware: devices, DMA, raw page requests, the response log,
 * PRI reset, SVA and the traffic generator. Admin token when one is set.
 */
import type { DmaResult as CoreDmaResult, TrafficStatus as CoreTrafficStatus, WalkS2Step, WalkTrace } from '../../core/index.js';
import { formatU64, hexOf, PERM, type CommandName, type DeviceResponses, type DmaResult, type TrafficStatus, type WalkResult } from '../../protocol/index.js';
import { HttpError } from '../errors.js';
import type { AdminCommand } from './admin.js';
import { checkNoWrap } from './range.js';
import type { RouteDeps, RoutesOf } from './types.js';

/** The `platform.*` commands but the contexts ones (server/routes/admin.ts). */
type PlatformCommand = Exclude<Extract<CommandName, `platform.${string}`>, AdminCommand>;

/** PERM bits the traffic generator understands. */
const PERM_MASK = PERM.READ | PERM.WRITE | PERM.EXEC | PERM.PRIV;

/** dmaResultWire() - a DMA outcome in wire form (`data` as hex, when any). */
function dmaResultWire(r: CoreDmaResult): DmaResult {
  const out: DmaResult = { status: r.status, page_requests: r.pageRequests, retries: r.retries };
  if (r.data !== undefined) out.data = hexOf(r.data);
  return out;
}

/** trafficStatusWire() - traffic status in wire form (whole ms and µs). */
function trafficStatusWire(s: CoreTrafficStatus): TrafficStatus {
  return {
    running: s.running,
    sent: s.sent,
    answered: s.answered,
    by_code: { ...s.byCode },
    elapsed_ms: Math.round(s.elapsedMs),
    latency_us: { p50: Math.round(s.latencyUs.p50), p99: Math.round(s.latencyUs.p99), max: Math.round(s.latencyUs.max) },
  };
}

/** walkS2Wire() - a stage-2 step in wire form. */
function walkS2Wire(s: WalkS2Step): NonNullable<WalkResult['stage2']> {
  const out: NonNullable<WalkResult['stage2']> = { gpa: formatU64(s.gpa), read: s.read, write: s.write };
  if (s.hpa !== undefined) out.hpa = formatU64(s.hpa);
  return out;
}

/** walkWire() - a walk trace in wire form (u64 as hex, absent fields left out). */
function walkWire(device: string, pasid: number | undefined, addr: bigint, perm: number, t: WalkTrace): WalkResult {
  const out: WalkResult = {
    device,
    addr: formatU64(addr),
    perm,
    context: t.context,
    stage1: t.s1.map((l) => {
      const level: WalkResult['stage1'][number] = { level: l.level, entry_gpa: formatU64(l.entryGpa) };
      if (l.s2) level.s2 = walkS2Wire(l.s2);
      if (l.entry !== undefined) level.entry = formatU64(l.entry);
      return level;
    }),
    result: t.result.kind === 'ok' ? { kind: 'ok', hpa: formatU64(t.result.hpa) } : { ...t.result },
  };
  if (pasid !== undefined) out.pasid = pasid;
  if (t.ste) {
    const { config, s1ContextPtr, s1CdMax, s1dss } = t.ste;
    out.ste = { config, s1_context_ptr: formatU64(s1ContextPtr), s1_cd_max: s1CdMax, s1dss };
  }
  if (t.cd) {
    const cd: NonNullable<WalkResult['cd']> = { index: t.cd.index, entry_gpa: formatU64(t.cd.entryGpa) };
    if (t.cd.s2) cd.s2 = walkS2Wire(t.cd.s2);
    if (t.cd.words) cd.words = t.cd.words.map(formatU64);
    out.cd = cd;
  }
  if (t.t0sz !== undefined) out.t0sz = t.t0sz;
  if (t.s1Root !== undefined) out.s1_root = formatU64(t.s1Root);
  if (t.addrWidth !== undefined) out.addr_width = t.addrWidth;
  if (t.s2) out.stage2 = walkS2Wire(t.s2);
  return out;
}

/**
 * platformRoutes() - implementations of the `platform.*` commands.
 * @deps: the platform.
 *
 * Return: the route table part.
 */
export function platformRoutes({ platform, observe }: RouteDeps): RoutesOf<PlatformCommand> {
  return {
    'platform.get': () => platform.describe(),

    'platform.device.get': ({ params }) => platform.deviceInfo(params.name),

    'platform.device.add': ({ body }) => platform.addDevice(body),

    'platform.device.remove': ({ params }) => platform.removeDevice(params.name),

    'platform.device.dma': ({ params, body }) => {
      checkNoWrap(body.iova, body.length);
      const req = {
        pasid: body.pasid,
        iova: body.iova,
        length: Number(body.length),
        write: body.access === 'write',
        data: body.data,
        priv: body.priv,
        exec: body.exec,
        timeoutMs: body.timeout_ms,
      };
      return new Promise<DmaResult>((resolve) => platform.dma(params.name, req, (r) => resolve(dmaResultWire(r))));
    },

    'platform.device.page-request': ({ params, body }) => {
      platform.injectPageRequest(params.name, body);
      return {};
    },

    'platform.device.responses': ({ params, query }) => {
      const responses: DeviceResponses['responses'] = platform
        .responses(params.name, query.since)
        .map((r) => (r.pasid === undefined ? { grpid: r.grpid, code: r.code, seq: r.seq } : { pasid: r.pasid, grpid: r.grpid, code: r.code, seq: r.seq }));
      return { responses };
    },

    'platform.device.walk': ({ params, query }) => {
      const perm = query.perm ?? PERM.READ;
      return walkWire(params.name, query.pasid, query.addr, perm, platform.walk(params.name, query.pasid, query.addr, perm));
    },

    'platform.observe': ({ query }) => observe.subscribe(query.events !== '0'),

    'platform.device.pri-reset': ({ params }) => platform.priReset(params.name),

    'platform.sva.bind': ({ params, body }) => {
      platform.bindSva(params.name, body.pasid, body.vmas);
      return {};
    },

    'platform.sva.unbind': ({ params }) => platform.unbindSva(params.name, params.pasid),

    'platform.traffic.start': ({ params, body }) => {
      if (body.perm & ~PERM_MASK) throw new HttpError('EINVAL', `perm 0x${body.perm.toString(16)} has unknown bits`);
      platform.startTraffic(params.name, {
        count: body.count,
        pagesPerGroup: body.pages_per_group,
        inFlight: body.in_flight,
        pasid: body.pasid,
        base: body.base,
        perm: {
          read: (body.perm & PERM.READ) !== 0,
          write: (body.perm & PERM.WRITE) !== 0,
          exec: (body.perm & PERM.EXEC) !== 0,
          priv: (body.perm & PERM.PRIV) !== 0,
        },
      });
      return {};
    },

    'platform.traffic.status': ({ params }) => trafficStatusWire(platform.trafficStatus(params.name)),

    'platform.traffic.stop': ({ params }) => trafficStatusWire(platform.stopTraffic(params.name)),
  };
}
