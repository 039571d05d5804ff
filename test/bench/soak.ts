/**
 * Soak: `npm run soak [-- --minutes M]` (not part of npm test).
 *
 * Starts the daemon as its own process, measures its capacity for a few
 * seconds (groups per second through the fault streams, traffic generators
 * at full speed), then runs it for M minutes (default 10) at about half of
 * that, with churn: stream connections closed and reopened (cleanly and by
 * dropping the TCP connection), contexts released and opened again, devices
 * hot-unplugged and added back. Every sample (default every 10 s) reads the
 * daemon's /metrics: RSS, heap, and the size of every table
 * (iopfd_table_entries: contexts, objects, queued/outstanding groups,
 * cookies, device outstanding PRGs, partials, PRQ, response log, ...).
 *
 * At the end the load stops, every context is released, the daemon is sent
 * SIGTERM, and the report gives RSS and heap at start, peak and end, each
 * table's size over time, and verdicts: every table but the response log
 * (which holds the newest --response-log responses of each device) back to
 * zero, no table growing from the first third of the run to the last, RSS
 * flat over the second half, the shutdown summary clean.
 * Exit status 1 if a verdict fails.
 *
 * Flags: --minutes M (default 10), --sample-seconds S (10), --load F (0.5 of
 * capacity), --devices N (4), --measure-seconds S (5), --json FILE (write
 * the samples and the report as JSON).
 */
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { HWPT_FLAGS, PGFAULT_FLAGS, RECORD_SIZE } from '../../protocol/index.js';
import type { Json } from './load.js';

const MAIN = fileURLToPath(new URL('../../server/main.js', import.meta.url));
const ADMIN = 'soak-admin';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/* ----------------------------------------------------------------- options */

function flag(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return def;
  const v = Number(process.argv[i + 1]);
  if (!Number.isFinite(v) || v <= 0) throw new Error(`--${name} needs a positive number`);
  return v;
}
const MINUTES = flag('minutes', 10);
const SAMPLE_S = flag('sample-seconds', 10);
const LOAD = flag('load', 0.5);
const DEVICES = flag('devices', 4);
const MEASURE_S = flag('measure-seconds', 5);
const JSON_OUT = process.argv.includes('--json') ? process.argv[process.argv.indexOf('--json') + 1] : undefined;

/* ------------------------------------------------------------------ REST */

let base = '';

async function call(method: string, path: string, body?: unknown, token = ADMIN): Promise<{ status: number; body: Json }> {
  const headers: Record<string, string> = { authorization: `Bearer ${token}` };
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(base + path, { method, headers, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined };
}

async function ok(method: string, path: string, body?: unknown, token = ADMIN): Promise<Json> {
  const r = await call(method, path, body, token);
  if (r.status >= 300) throw new Error(`${method} ${path}: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
}

/* --------------------------------------------------------------- streams */

/** A fault stream client that answers every group SUCCESS as it arrives. */
class Answerer {
  ws: WebSocket | undefined;
  answered = 0;
  constructor(
    readonly path: string,
    readonly token: string,
    readonly uapi: boolean,
  ) {}

  async open(): Promise<void> {
    const ws = new WebSocket(`${base.replace('http', 'ws')}${this.path}?window=4096`, this.uapi ? 'iopf.v1.uapi' : 'iopf.v1.json', {
      headers: { authorization: `Bearer ${this.token}` },
    });
    ws.on('error', () => {});
    ws.on('message', (data: Buffer, binary: boolean) => {
      if (binary) {
        const cookies: number[] = [];
        for (let o = 0; o < data.length; o += RECORD_SIZE) if (data.readUInt32LE(o) & PGFAULT_FLAGS.LAST_PAGE) cookies.push(data.readUInt32LE(o + 36));
        const b = Buffer.alloc(cookies.length * 8);
        cookies.forEach((c, i) => {
          b.writeUInt32LE(c, i * 8);
        });
        if (cookies.length > 0 && ws.readyState === WebSocket.OPEN) ws.send(b);
        this.answered += cookies.length;
        return;
      }
      const text = data.toString('utf8');
      if (!text.startsWith('{"type":"faults"')) return;
      const m = JSON.parse(text) as { groups: Array<{ cookie: number }> };
      if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: 'responses', responses: m.groups.map((g) => ({ cookie: g.cookie, code: 0 })) }));
      this.answered += m.groups.length;
    });
    await new Promise<void>((resolve) => {
      ws.once('open', () => resolve());
      ws.once('close', () => resolve());
    });
    this.ws = ws.readyState === WebSocket.OPEN ? ws : undefined;
  }

  /** End the connection cleanly, or by dropping the TCP connection. */
  async close(abrupt: boolean): Promise<void> {
    const ws = this.ws;
    this.ws = undefined;
    if (!ws) return;
    const closed = new Promise((r) => ws.once('close', r));
    if (abrupt) ws.terminate();
    else ws.close();
    await Promise.race([closed, sleep(2000)]);
  }
}

/* ------------------------------------------------------------- platform */

interface Slot {
  ctx: number;
  token: string;
  devices: string[];
  streams: Answerer[];
}

const deviceNames = Array.from({ length: DEVICES }, (_, i) => `soak${i}`);
/** Devices being unplugged (no traffic start meanwhile). */
const unplugging = new Set<string>();

/** A context with its devices bound and attached (RID and PASID 1) to a fault-capable hwpt, and two answering streams (one per mode). */
async function openSlot(devices: string[]): Promise<Slot> {
  const c = await ok('POST', '/v1/contexts', {});
  const p = `/v1/contexts/${c.ctx}`;
  const ioas = (await ok('POST', `${p}/ioas`, {}, c.token)).id;
  const fault = await ok('POST', `${p}/faults`, { response_timeout_ms: 5000 }, c.token);
  let hwpt = 0;
  for (const name of devices) {
    const r = await call('POST', `${p}/devices`, { name }, c.token);
    if (r.status !== 201) continue; // unplugged right now: bound when it comes back
    const devId = r.body.dev_id;
    if (!hwpt)
      hwpt = (await ok('POST', `${p}/hwpt`, { dev_id: devId, pt_id: ioas, flags: HWPT_FLAGS.FAULT_ID_VALID | HWPT_FLAGS.PASID, fault_id: fault.id }, c.token))
        .id;
    await call('POST', `${p}/devices/${devId}/attach`, { pt_id: hwpt }, c.token);
    await call('POST', `${p}/devices/${devId}/attach`, { pt_id: hwpt, pasid: 1 }, c.token);
  }
  const streams = [new Answerer(fault.stream, c.token, false), new Answerer(fault.stream, c.token, true)];
  for (const s of streams) await s.open();
  return { ctx: c.ctx, token: c.token, devices, streams };
}

async function releaseSlot(s: Slot): Promise<void> {
  await call('DELETE', `/v1/contexts/${s.ctx}`, undefined, s.token);
  for (const a of s.streams) await a.close(false);
}

/* ---------------------------------------------------------------- metrics */

interface Sample {
  t: number;
  rss: number;
  heapUsed: number;
  heapTotal: number;
  tables: Record<string, number>;
  groups: number;
  rate: number;
  streams: number;
}

async function metrics(): Promise<Omit<Sample, 't' | 'groups' | 'rate'>> {
  const text = await (await fetch(`${base}/metrics`)).text();
  const value = (name: string): number => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? 0);
  const tables: Record<string, number> = {};
  for (const m of text.matchAll(/^iopfd_table_entries\{table="([a-z_]+)"\} (\S+)$/gm)) tables[m[1]!] = Number(m[2]);
  return {
    rss: value('iopfd_process_resident_memory_bytes'),
    heapUsed: value('iopfd_nodejs_heap_size_used_bytes'),
    heapTotal: value('iopfd_nodejs_heap_size_total_bytes'),
    tables,
    streams: value('iopfd_streams_open'),
  };
}

/** Groups answered so far, from the traffic generators (runs recorded as they end, plus the running ones). */
let finishedGroups = 0;
const runningCount = new Map<string, number>();
/** Devices whose last run was counted in finishedGroups already. */
const recorded = new Set<string>();

/** Count a finished run of @name once. */
function recordRun(name: string, answered: number): void {
  if (!recorded.has(name)) finishedGroups += answered;
  recorded.add(name);
  runningCount.set(name, 0);
}

async function trafficAnswered(): Promise<number> {
  let n = finishedGroups;
  for (const name of deviceNames) n += runningCount.get(name) ?? 0;
  return n;
}

/* ---------------------------------------------------------------- the run */

const MB = (b: number): string => `${(b / 1e6).toFixed(1)} MB`;

async function main(): Promise<void> {
  const child = spawn(process.execPath, [MAIN, '--port', '0', '--admin-token', ADMIN, '--log-level', 'warn', '--heartbeat-ms', '5000'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  base = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => {
      out += c;
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m) resolve(m[1]!);
    });
    void exited.then((code) => reject(new Error(`daemon exited with ${code}: ${stderr}`)));
  });
  console.log(`soak: daemon ${base} (pid ${child.pid}), ${DEVICES} devices, ${MINUTES} min at ${LOAD} of capacity, a sample every ${SAMPLE_S} s`);

  const idle = await metrics();
  for (const name of deviceNames) await ok('POST', '/v1/platform/devices', { name });
  const slotDevices = [deviceNames.filter((_, i) => i % 2 === 0), deviceNames.filter((_, i) => i % 2 === 1)];
  const slots = [await openSlot(slotDevices[0]!), await openSlot(slotDevices[1]!)];

  // ---- capacity: every generator at full speed for MEASURE_S seconds
  const probe = 2_000_000;
  for (const [i, name] of deviceNames.entries()) await ok('POST', `/v1/platform/devices/${name}/traffic`, { count: probe, pasid: i % 2 ? 1 : undefined });
  const t0 = performance.now();
  await sleep(MEASURE_S * 1000);
  let measured = 0;
  for (const name of deviceNames) measured += (await ok('GET', `/v1/platform/devices/${name}/traffic`)).answered;
  const capacity = measured / ((performance.now() - t0) / 1000);
  // No stop route: unplugging stops a run; the devices come back at once (and are bound again).
  for (const name of deviceNames) {
    await ok('DELETE', `/v1/platform/devices/${name}`);
    await ok('POST', '/v1/platform/devices', { name });
  }
  for (const s of slots) await releaseSlot(s);
  slots[0] = await openSlot(slotDevices[0]!);
  slots[1] = await openSlot(slotDevices[1]!);
  const target = capacity * LOAD;
  console.log(
    `soak: capacity ${Math.round(capacity)} groups/s (${MEASURE_S} s, ${DEVICES} generators at full speed); soaking at ${Math.round(target)} groups/s`,
  );

  // ---- the soak
  const samples: Sample[] = [];
  const start = performance.now();
  const endAt = start + MINUTES * 60_000;
  let running = true;
  const churn = { streamCloses: 0, streamDrops: 0, contextReleases: 0, unplugs: 0 };

  // Load: every 100 ms each device starts a run of its share if the last one ended.
  const perTick = Math.max(1, Math.round(target / DEVICES / 10));
  const loadActor = (async () => {
    while (running) {
      const tick = performance.now();
      for (const [i, name] of deviceNames.entries()) {
        if (unplugging.has(name)) continue;
        const st = await call('GET', `/v1/platform/devices/${name}/traffic`);
        if (st.status !== 200) continue;
        if (st.body.running) {
          runningCount.set(name, st.body.answered);
          continue;
        }
        recordRun(name, st.body.answered);
        const r = await call('POST', `/v1/platform/devices/${name}/traffic`, {
          count: perTick,
          pasid: i % 2 ? 1 : undefined,
          base: `0x${(0x100000000 + Math.floor(Math.random() * 0xfffff) * 0x1000).toString(16)}`,
        });
        if (r.status === 202) recorded.delete(name);
      }
      await sleep(Math.max(0, 100 - (performance.now() - tick)));
    }
  })();

  // Churn: streams every 2 s, a context every 15 s, a device every 30 s.
  const churnActor = (async () => {
    let n = 0;
    while (running) {
      await sleep(2000);
      if (!running) break;
      n++;
      const slot = slots[n % 2]!;
      const s = slot.streams[Math.floor(Math.random() * slot.streams.length)]!;
      const abrupt = Math.random() < 0.4;
      await s.close(abrupt);
      if (abrupt) churn.streamDrops++;
      else churn.streamCloses++;
      await sleep(100);
      await s.open();
      if (n % 8 === 0) {
        const i = (n / 8) % 2;
        await releaseSlot(slots[i]!);
        slots[i] = await openSlot(slotDevices[i]!);
        churn.contextReleases++;
      }
      if (n % 15 === 0) {
        const name = deviceNames[(n / 15) % DEVICES]!;
        unplugging.add(name);
        const st = await call('GET', `/v1/platform/devices/${name}/traffic`);
        if (st.status === 200) recordRun(name, st.body.answered);
        await ok('DELETE', `/v1/platform/devices/${name}`);
        recorded.add(name);
        await ok('POST', '/v1/platform/devices', { name });
        // Bind it again in its context: release and reopen that context (the simplest full re-setup).
        const i = deviceNames.indexOf(name) % 2;
        await releaseSlot(slots[i]!);
        slots[i] = await openSlot(slotDevices[i]!);
        unplugging.delete(name);
        churn.unplugs++;
      }
    }
  })();

  let lastGroups = 0;
  let lastT = start;
  const header = 'min     rate/s   RSS       heap used  streams  contexts objects queued outst. cookies dev_prgs partials prq  response_log';
  console.log(header);
  while (performance.now() < endAt) {
    await sleep(Math.min(SAMPLE_S * 1000, endAt - performance.now()));
    const m = await metrics();
    const now = performance.now();
    const groups = await trafficAnswered();
    const rate = (groups - lastGroups) / ((now - lastT) / 1000);
    lastGroups = groups;
    lastT = now;
    const s: Sample = { t: (now - start) / 60_000, ...m, groups, rate };
    samples.push(s);
    const t = m.tables;
    console.log(
      [
        s.t.toFixed(2).padEnd(7),
        String(Math.round(rate)).padStart(7),
        MB(m.rss).padStart(10),
        MB(m.heapUsed).padStart(10),
        String(m.streams).padStart(8),
        String(t.contexts).padStart(9),
        String(t.objects).padStart(7),
        String(t.fault_queued).padStart(6),
        String(t.fault_outstanding).padStart(6),
        String(t.fault_cookies).padStart(7),
        String(t.device_outstanding_prgs).padStart(8),
        String(t.partials).padStart(8),
        String(t.prq).padStart(4),
        String(t.response_log).padStart(13),
      ].join(' '),
    );
  }
  running = false;
  await loadActor;
  await churnActor;

  // ---- drain and release: every table but the response log must be empty
  for (let t = 0; t < 100; t++) {
    let busy = false;
    for (const name of deviceNames) if ((await ok('GET', `/v1/platform/devices/${name}/traffic`)).running) busy = true;
    if (!busy) break;
    await sleep(100);
  }
  for (const s of slots) await releaseSlot(s);
  await sleep(200);
  const final = await metrics();
  child.kill('SIGTERM');
  const code = await exited;
  const summary = /iopfd: shutdown: answered (\d+) outstanding groups INVALID, audit (\{[^}]*\})/.exec(stderr);

  // ---- report
  const pick = (f: (s: Sample) => number): { start: number; peak: number; end: number } => ({
    start: f(samples[0]!),
    peak: Math.max(...samples.map(f)),
    end: f(samples[samples.length - 1]!),
  });
  const rss = pick((s) => s.rss);
  const heap = pick((s) => s.heapUsed);
  const third = Math.max(1, Math.floor(samples.length / 3));
  const tableNames = Object.keys(samples[0]!.tables);
  const verdicts: Array<[string, boolean]> = [];
  const tableReport: Record<string, { max: number; firstThirdMax: number; lastThirdMax: number; final: number }> = {};
  for (const name of tableNames) {
    const series = samples.map((s) => s.tables[name] ?? 0);
    const first = Math.max(...series.slice(0, third));
    const last = Math.max(...series.slice(-third));
    tableReport[name] = { max: Math.max(...series), firstThirdMax: first, lastThirdMax: last, final: final.tables[name] ?? 0 };
    // Bounded: the last third never holds much more than the first (a fixed allowance covers load noise).
    verdicts.push([`${name}: last third max ${last} ≤ 2 × first third max ${first} + 64`, last <= 2 * first + 64]);
    // The response log holds the newest responses (--response-log): bounded, not emptied.
    if (name !== 'response_log') verdicts.push([`${name}: empty after release (${final.tables[name]})`, (final.tables[name] ?? 0) === 0]);
  }
  verdicts.push([`heap used at the end ${MB(heap.end)} ≤ 2 × start ${MB(heap.start)} + 64 MB`, heap.end <= 2 * heap.start + 64e6]);
  // RSS: the second half of the run may not keep climbing (a table or buffer growing with the load).
  const half = samples.slice(Math.floor(samples.length / 2));
  const rssRise = half.length > 1 ? half[half.length - 1]!.rss - half[0]!.rss : 0;
  verdicts.push([`RSS rise over the second half ${MB(rssRise)} ≤ 64 MB (start ${MB(rss.start)}, end ${MB(rss.end)})`, rssRise <= 64e6]);
  verdicts.push([`daemon exit code ${code}`, code === 0]);
  verdicts.push([
    `shutdown summary: ${summary ? `${summary[1]} answered INVALID, audit ${summary[2]}` : 'missing'}`,
    !!summary && /"outstandingGroups":0,"unexpectedResponses":0/.test(summary[2]!),
  ]);
  const rates = samples.map((s) => s.rate);
  const log = tableReport.response_log;
  console.log('');
  console.log(
    `soak report (${MINUTES} min, capacity ${Math.round(capacity)} groups/s, target ${Math.round(target)}, achieved mean ${Math.round(rates.reduce((a, b) => a + b, 0) / rates.length)} groups/s, ${samples[samples.length - 1]!.groups} groups)`,
  );
  console.log(`  churn: ${JSON.stringify(churn)}`);
  console.log(`  RSS:  idle ${MB(idle.rss)}; under load start ${MB(rss.start)}, peak ${MB(rss.peak)}, end ${MB(rss.end)}; after release ${MB(final.rss)}`);
  console.log(
    `  heap: idle ${MB(idle.heapUsed)}; under load start ${MB(heap.start)}, peak ${MB(heap.peak)}, end ${MB(heap.end)}; after release ${MB(final.heapUsed)}`,
  );
  console.log(`  tables (max over the run; max in the first and last thirds; after release):`);
  for (const [name, r] of Object.entries(tableReport))
    console.log(
      `    ${name.padEnd(24)} max ${String(r.max).padStart(9)}  first ${String(r.firstThirdMax).padStart(9)}  last ${String(r.lastThirdMax).padStart(9)}  final ${r.final}`,
    );
  if (log) console.log(`  response_log: ${log.final} entries held at the end (GET .../responses)`);
  for (const [what, pass] of verdicts) console.log(`  ${pass ? 'ok  ' : 'FAIL'} ${what}`);
  if (JSON_OUT) writeFileSync(JSON_OUT, JSON.stringify({ capacity, target, churn, idle, samples, final, rss, heap, tables: tableReport, verdicts }, null, 2));
  process.exit(verdicts.every(([, pass]) => pass) ? 0 : 1);
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
