/**
 * DOC: iopfctl's long-running commands
 *
 * - `watch FAULT_ID`: a live view of a fault stream, one line per group as
 *   it arrives (a table, or JSON lines with --json), answering each group
 *   with a fixed policy if asked; until --count groups, the end of the
 *   stream, or SIGINT/SIGTERM.
 * - `traffic DEVICE`: the device's built-in traffic generator, with a
 *   progress bar on stderr when it is a terminal and groups/s and latency
 *   at the end; with --answer it answers the groups itself on a stream of
 *   its own (on --fault of the context given, or on a context it sets up
 *   for the run and releases afterwards).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { CLOSE, formatU64, HWPT_FLAGS, PGFAULT_FLAGS } from '../../protocol/index.js';
import { parseU32 } from '../common/args.js';
import type { FaultGroup, FaultQueue, IopfdContext, TrafficStatus, VEventItem } from '../sdk/index.js';
import { permOf, permText, type CliCommand, type Invocation, type Output } from './command.js';

const WATCH_COLUMNS: ReadonlyArray<readonly [string, number]> = [
  ['COOKIE', 8],
  ['DEV_ID', 8],
  ['PASID', 8],
  ['GRPID', 7],
  ['PERM', 6],
  ['ADDR', 20],
  ['PAGES', 7],
  ['REDELIVERED', 13],
  ['ANSWER', 0],
];

function watchRow(cells: readonly (string | number)[]): string {
  return cells.map((c, i) => String(c).padEnd(WATCH_COLUMNS[i]![1])).join('').trimEnd();
}

/** The wire form of a group, for `watch --json`. */
function groupJson(g: FaultGroup, answer: string | null): string {
  const records = g.records.map((r) => ({ flags: r.flags, dev_id: r.dev_id, pasid: r.pasid, grpid: r.grpid, perm: r.perm, addr: formatU64(r.addr), length: r.length }));
  return JSON.stringify({ cookie: g.cookie, redelivered: g.redelivered, answer, records });
}

/** SMMUv3 event names by id (EVT_ID_*), for `watch --veventq`. */
const EVT_NAMES: Readonly<Record<number, string>> = {
  0x04: 'C_BAD_STE', 0x06: 'F_STREAM_DISABLED', 0x08: 'C_BAD_SUBSTREAMID', 0x0a: 'C_BAD_CD',
  0x10: 'F_TRANSLATION', 0x11: 'F_ADDR_SIZE', 0x12: 'F_ACCESS', 0x13: 'F_PERMISSION',
};

/** veventLine() - one vEVENTQ entry: sequence, loss, and the event's id, vSID, SSID, access and address. */
function veventLine(e: VEventItem, json: boolean): string {
  const lost = e.missed + (e.lost ? 1 : 0);
  if (!e.evt) return json ? JSON.stringify({ vevent: { sequence: e.sequence, lost } }) : `vevent ${e.sequence} LOST_EVENTS (${lost} lost)`;
  const [w0, w1, addr] = e.evt;
  const id = Number(w0 & 0xffn);
  const vsid = Number(w0 >> 32n);
  const ssid = (w0 >> 11n) & 1n ? String(Number((w0 >> 12n) & 0xfffffn)) : '-';
  const rw = (w1 >> 35n) & 1n ? 'read' : 'write';
  const name = EVT_NAMES[id] ?? `0x${id.toString(16)}`;
  if (json) return JSON.stringify({ vevent: { sequence: e.sequence, lost, id: name, vsid, ssid, access: rw, addr: formatU64(addr), evt: e.evt.map(formatU64) } });
  return `vevent ${e.sequence} ${name} vsid=0x${vsid.toString(16)} ssid=${ssid} ${rw} ${formatU64(addr)}${lost > 0 ? ` (${lost} lost before it)` : ''}`;
}

/** WATCH - `iopfctl watch FAULT_ID`. */
export const WATCH: CliCommand = {
  words: ['watch'],
  args: ['FAULT_ID'],
  summary: 'stream a fault queue live, one line per group (JSON lines with --json), optionally answering',
  options: [
    { name: 'answer', arg: 'success|invalid|none', help: 'answer every group so (default none)' },
    { name: 'mode', arg: 'json|uapi', help: 'the stream subprotocol (default json)' },
    { name: 'window', arg: 'N', help: 'groups delivered and unanswered at most (default 1024)' },
    { name: 'count', arg: 'N', help: 'stop after N groups' },
    { name: 'veventq', arg: 'ID', help: "also print this vEVENTQ's events (one `vevent` line each; loss reported)" },
  ],
  run: async (inv) => {
    const answer = inv.opts.oneOf('answer', ['success', 'invalid', 'none'] as const) ?? 'none';
    const mode = inv.opts.oneOf('mode', ['json', 'uapi'] as const) ?? 'json';
    const count = inv.opts.u32('count', 1);
    const window = inv.opts.u32('window', 1, 65536);
    const faultId = parseU32('FAULT_ID', inv.args['FAULT_ID']!, 1);
    const q = inv.context().faultQueue(faultId, { mode, window });
    await q.connect();
    const { stdout, stderr } = inv.io;
    const veventqId = inv.opts.u32('veventq', 1);
    const vq = veventqId === undefined ? undefined : inv.context().veventQueue(veventqId, { mode });
    let vevents: Promise<void> = Promise.resolve();
    if (vq) {
      await vq.connect();
      vevents = (async () => {
        for await (const e of vq) stdout.write(`${veventLine(e, inv.json)}\n`);
      })().catch((err: unknown) => void stderr.write(`watch: vEVENTQ stream ended: ${(err as Error).message}\n`));
    }
    q.on('expired', (cookies) => stderr.write(`watch: expired (answered INVALID by the timeout): ${cookies.join(' ')}\n`));
    q.on('revoked', (cookies, cause) => stderr.write(`watch: revoked (answered INVALID by ${cause}): ${cookies.join(' ')}\n`));
    q.on('overflow', (n) => stderr.write(`watch: ${n} groups answered by the queue's depth policy\n`));
    q.on('reconnecting', ({ attempt, delayMs }) => stderr.write(`watch: connection lost, reconnecting in ${delayMs} ms (attempt ${attempt})\n`));
    q.on('close', ({ code, reason }) => {
      if (code === CLOSE.GOING_AWAY) stderr.write(`watch: the daemon closed the stream (${reason || code})\n`);
    });
    const stop = (): void => void q.close();
    inv.io.signal?.addEventListener('abort', stop, { once: true });
    if (!inv.json) stdout.write(`${watchRow(WATCH_COLUMNS.map(([h]) => h))}\n`);
    let n = 0;
    try {
      for await (const g of q) {
        if (answer !== 'none') q.respond(g, answer);
        const r = g.records[0]!;
        if (inv.json) stdout.write(`${groupJson(g, answer === 'none' ? null : answer)}\n`);
        else {
          const pasid = r.flags & PGFAULT_FLAGS.PASID_VALID ? r.pasid : '-';
          stdout.write(`${watchRow([g.cookie, r.dev_id, pasid, r.grpid, permText(r.perm), formatU64(r.addr), g.records.length, g.redelivered ? 'yes' : 'no', answer])}\n`);
        }
        if (count !== undefined && ++n >= count) break;
      }
    } finally {
      inv.io.signal?.removeEventListener('abort', stop);
      await q.close();
      vq?.close();
      await vevents;
    }
    return undefined;
  },
};

/** A stream that answers every group of a device's traffic with one code. */
interface Responder {
  stop(): Promise<void>;
}

/**
 * startResponder() - answer @device's groups with @answer: on --fault of the
 * context given, or on a context set up for the run (the device bound,
 * attached at its RID and --pasid to a fault-capable paging hwpt).
 */
async function startResponder(inv: Invocation, device: string, answer: 'success' | 'invalid', mode: 'json' | 'uapi'): Promise<Responder> {
  const faultId = inv.opts.u32('fault', 1);
  let ctx: IopfdContext;
  let queue: FaultQueue;
  let own = false;
  if (faultId !== undefined) {
    ctx = inv.context();
    queue = ctx.faultQueue(faultId, { mode });
  } else {
    ctx = await inv.client.createContext();
    own = true;
    try {
      const { dev_id } = await ctx.bindDevice(device);
      const { id: ioas } = await ctx.allocIoas();
      const { id: fault } = await ctx.allocFault();
      const { id: hwpt } = await ctx.allocHwpt({ dev_id, pt_id: ioas, flags: HWPT_FLAGS.FAULT_ID_VALID | HWPT_FLAGS.PASID, fault_id: fault });
      await ctx.attach(dev_id, { pt_id: hwpt });
      if (inv.opts.pasid().pasid !== undefined) await ctx.attach(dev_id, { pt_id: hwpt, ...inv.opts.pasid() });
      queue = ctx.faultQueue(fault, { mode });
    } catch (e) {
      await ctx.release().catch(() => {});
      throw e;
    }
  }
  try {
    await queue.connect();
  } catch (e) {
    if (own) await ctx.release().catch(() => {});
    throw e;
  }
  const pump = (async () => {
    for await (const g of queue) queue.respond(g, answer);
  })();
  return {
    stop: async () => {
      await queue.close();
      await pump.catch(() => {});
      if (own) await ctx.release();
    },
  };
}

/** progressBar() - one frame of the progress bar (carriage return first). */
function progressBar(out: Output, st: TrafficStatus, count: number): void {
  const width = 30;
  const done = Math.min(width, Math.round((st.answered / count) * width));
  const rate = st.elapsed_ms > 0 ? Math.round((st.answered * 1000) / st.elapsed_ms) : 0;
  out.write(`\r[${'#'.repeat(done)}${'.'.repeat(width - done)}] ${st.answered}/${count} groups  ${rate} groups/s `);
}

/** struct TrafficResult - the final status and the rate. */
type TrafficResult = TrafficStatus & { groups_per_s: number };

/** DEVICE_TRAFFIC - `iopfctl traffic DEVICE`. */
export const DEVICE_TRAFFIC: CliCommand = {
  words: ['traffic'],
  args: ['DEVICE'],
  summary: "run the device's traffic generator; progress on stderr, groups/s and latency at the end",
  options: [
    { name: 'count', arg: 'N', help: 'page request groups to issue (required)' },
    { name: 'pages-per-group', arg: 'N', help: 'pages per group (default 1)' },
    { name: 'in-flight', arg: 'N', help: 'groups outstanding at most (default: the PRI budget)' },
    { name: 'pasid', arg: 'N', help: 'with this PASID' },
    { name: 'base', arg: 'VA', help: 'first page address (default 0x100000000)' },
    { name: 'perm', arg: 'rwxp', help: 'access letters or PERM bits (default r)' },
    { name: 'answer', arg: 'success|invalid', help: 'answer the groups on a stream of its own' },
    { name: 'fault', arg: 'N', help: 'with --answer: the fault queue of --ctx to answer on (default: a context set up for the run)' },
    { name: 'mode', arg: 'json|uapi', help: 'with --answer: the stream subprotocol (default uapi)' },
  ],
  run: async (inv): Promise<TrafficResult> => {
    const o = inv.opts;
    const device = inv.args['DEVICE']!;
    const count = o.u32('count', 1) ?? parseU32('--count', o.need('count'), 1);
    const ppg = o.u32('pages-per-group', 1);
    const inFlight = o.u32('in-flight', 1);
    const base = o.u64('base');
    const perm = o.str('perm');
    const answer = o.oneOf('answer', ['success', 'invalid'] as const);
    const mode = o.oneOf('mode', ['json', 'uapi'] as const) ?? 'uapi';
    const responder = answer === undefined ? undefined : await startResponder(inv, device, answer, mode);
    try {
      await inv.client.startTraffic(device, {
        count,
        ...(ppg === undefined ? {} : { pages_per_group: ppg }),
        ...(inFlight === undefined ? {} : { in_flight: inFlight }),
        ...o.pasid(),
        ...(base === undefined ? {} : { base }),
        ...(perm === undefined ? {} : { perm: permOf(perm) }),
      });
      const tty = inv.io.stderr.isTTY === true;
      let st = await inv.client.trafficStatus(device);
      while (st.running && !inv.io.signal?.aborted) {
        if (tty) progressBar(inv.io.stderr, st, count);
        await sleep(100);
        st = await inv.client.trafficStatus(device);
      }
      // Interrupted: the generator issues no more groups (those in flight stay until answered).
      if (st.running) st = await inv.client.stopTraffic(device);
      if (tty) {
        progressBar(inv.io.stderr, st, count);
        inv.io.stderr.write('\n');
      }
      return withRate(st);
    } finally {
      await responder?.stop();
    }
  },
  text: trafficText,
};

/** TRAFFIC_STOP - `iopfctl traffic stop DEVICE`. */
export const TRAFFIC_STOP: CliCommand = {
  words: ['traffic', 'stop'],
  args: ['DEVICE'],
  summary: "stop the device's traffic generator: no new groups, those in flight are still answered",
  options: [],
  run: async (inv): Promise<TrafficResult> => withRate(await inv.client.stopTraffic(inv.args['DEVICE']!)),
  text: trafficText,
};

function withRate(st: TrafficStatus): TrafficResult {
  return { ...st, groups_per_s: st.elapsed_ms > 0 ? Math.round((st.answered * 1000) / st.elapsed_ms) : 0 };
}

function trafficText(r: TrafficResult): string {
  return (
    `traffic: ${r.answered}/${r.sent} groups answered in ${r.elapsed_ms} ms: ${r.groups_per_s} groups/s; ` +
    `success ${r.by_code.success}, invalid ${r.by_code.invalid}, failure ${r.by_code.failure}; ` +
    `latency µs p50 ${r.latency_us.p50} p99 ${r.latency_us.p99} max ${r.latency_us.max}${r.running ? ' (groups still in flight)' : ''}`
  );
}
