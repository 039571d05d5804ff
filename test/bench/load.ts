/**
 * The benchmark's load side: child processes (the echo server, the daemon),
 * the baseline echo client, a REST client for the daemon, and the fault
 * stream clients that answer every group SUCCESS as it arrives.
 *
 * Everything here runs in the bench process; the servers it measures run in
 * their own child processes.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath, pathToFileURL } from 'node:url';
import WebSocket from 'ws';
import { PGFAULT_FLAGS, RECORD_SIZE, RESPONSE_SIZE, SUBPROTOCOL_UAPI, type Subprotocol, type TrafficStatus } from '../../protocol/index.js';

/** The repository root (this file is dist/test/bench/load.js once built). */
export const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A JSON value as the bench reads it (shapes are the protocol's, not re-checked). */
// biome-ignore lint/suspicious/noExplicitAny: the bench's deliberate escape hatch: it reads replies whose shapes the protocol tests already check
export type Json = any;

/** A child process that printed the port it listens on. */
export interface Child {
  readonly proc: ChildProcess;
  readonly port: number;
  /** The last lines it wrote to stderr (for error reports). */
  stderrTail(): string;
  /** SIGTERM, then wait for the exit. */
  stop(): Promise<void>;
}

/**
 * spawnChild() - run `node ...args` and wait for the line that carries its port.
 * @args: node arguments (flags, then the script and its arguments).
 * @ready: matches the ready line; group 1 is the port.
 * @ipc: open an IPC channel (for the daemon's heap probe).
 */
export function spawnChild(args: string[], ready: RegExp, ipc = false): Promise<Child> {
  const proc = spawn(process.execPath, args, { cwd: ROOT, stdio: ipc ? ['ignore', 'pipe', 'pipe', 'ipc'] : ['ignore', 'pipe', 'pipe'] });
  let err = '';
  proc.stderr!.on('data', (d: Buffer) => {
    err = (err + d.toString()).slice(-4000);
  });
  return new Promise((resolve, reject) => {
    let out = '';
    const onExit = (code: number | null): void => reject(new Error(`${args.join(' ')} exited with ${code} before it was ready:\n${err}`));
    proc.once('exit', onExit);
    proc.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = ready.exec(out);
      if (!m) return;
      proc.off('exit', onExit);
      proc.stdout!.removeAllListeners('data');
      proc.stdout!.resume();
      const exited = new Promise<void>((r) => proc.once('exit', () => r()));
      resolve({
        proc,
        port: Number(m[1]),
        stderrTail: () => err,
        stop: async () => {
          if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
          await Promise.race([exited, sleep(5000).then(() => proc.kill('SIGKILL'))]);
        },
      });
    });
  });
}

/** openWs() - a WebSocket client, open. */
async function openWs(url: string, protocol?: string, headers: Record<string, string> = {}): Promise<WebSocket> {
  const ws = new WebSocket(url, protocol === undefined ? [] : [protocol], { headers, perMessageDeflate: false });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  return ws;
}

/** An echo-baseline message: JSON text of @bytes bytes shaped like a one-group `faults` frame. */
export function baselineJsonMessage(bytes: number): string {
  const frame = {
    type: 'faults',
    groups: [
      {
        cookie: 1,
        redelivered: false,
        records: [{ flags: 2, dev_id: 1, pasid: 0, grpid: 5, perm: 1, __reserved: 0, addr: '0x100000000', length: 0, cookie: 1 }],
      },
    ],
    pad: '',
  };
  const base = JSON.stringify(frame).length;
  frame.pad = 'x'.repeat(Math.max(0, bytes - base));
  return JSON.stringify(frame);
}

/**
 * echoRate() - one baseline run: keep @inFlight copies of @message in flight
 * on @port's echo server and count the echoes for @seconds (after @warmupMs).
 *
 * Return: echo round trips (messages) per second.
 */
export async function echoRate(port: number, message: string | Buffer, inFlight: number, seconds: number, warmupMs: number): Promise<number> {
  const ws = await openWs(`ws://127.0.0.1:${port}/`);
  const binary = typeof message !== 'string';
  let echoes = 0;
  ws.on('message', () => {
    echoes++;
    ws.send(message, { binary });
  });
  for (let i = 0; i < inFlight; i++) ws.send(message, { binary });
  await sleep(warmupMs);
  const e0 = echoes;
  const t0 = performance.now();
  await sleep(seconds * 1000);
  const rate = (echoes - e0) / ((performance.now() - t0) / 1000);
  ws.terminate();
  return rate;
}

/** The daemon in its own process, with the heap probe preloaded. */
export class Daemon {
  readonly base: string;
  readonly wsBase: string;
  private constructor(readonly child: Child) {
    this.base = `http://127.0.0.1:${child.port}`;
    this.wsBase = `ws://127.0.0.1:${child.port}`;
  }

  /** start() - `node dist/server/main.js --port 0 --platform @platformFile`. */
  static async start(platformFile: string): Promise<Daemon> {
    const probe = pathToFileURL(`${ROOT}dist/test/bench/daemon-probe.js`).href;
    const child = await spawnChild(
      ['--expose-gc', '--import', probe, 'dist/server/main.js', '--port', '0', '--host', '127.0.0.1', '--platform', platformFile],
      /iopfd listening on http:\/\/[^:]+:(\d+)/,
      true,
    );
    return new Daemon(child);
  }

  /** call() - one REST request; throws on an HTTP error status. Its JSON body, shapes as the protocol says (not re-checked here). */
  async call(method: string, path: string, body?: unknown, token?: string): Promise<Json> {
    const headers: Record<string, string> = {};
    if (token !== undefined) headers.authorization = `Bearer ${token}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    const res = await fetch(this.base + path, { method, headers, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
    const text = await res.text();
    if (res.status >= 300) throw new Error(`${method} ${path}: ${res.status} ${text}`);
    return text === '' ? undefined : JSON.parse(text);
  }

  /** heapUsed() - the daemon's heap after two full collections (the probe, over IPC). */
  heapUsed(): Promise<number> {
    const proc = this.child.proc;
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('heap probe: no answer')), 10_000);
      proc.once('message', (m: { heapUsed: number; gc: boolean }) => {
        clearTimeout(t);
        if (!m.gc) reject(new Error('heap probe: the daemon runs without --expose-gc'));
        else resolve(m.heapUsed);
      });
      proc.send('heap');
    });
  }

  stop(): Promise<void> {
    return this.child.stop();
  }
}

/** A context with one fault queue, and devices attached to it through nested hwpts with FAULT_ID_VALID. */
export interface FaultSetup {
  token: string;
  /** The stream URL path of the fault queue. */
  stream: string;
}

/**
 * setupFaultQueue() - open a context, allocate a fault queue and attach each
 * of @devices: bind, a NEST_PARENT hwpt on one IOAS, a nested vtd_s1 hwpt
 * with FAULT_ID_VALID on the queue, attach.
 */
export async function setupFaultQueue(d: Daemon, devices: readonly string[]): Promise<FaultSetup> {
  const { ctx, token } = await d.call('POST', '/v1/contexts');
  const c = `/v1/contexts/${ctx}`;
  const { id: ioas } = await d.call('POST', `${c}/ioas`, {}, token);
  const { id: fault, stream } = await d.call('POST', `${c}/faults`, {}, token);
  for (const name of devices) {
    const { dev_id } = await d.call('POST', `${c}/devices`, { name }, token);
    const { id: parent } = await d.call('POST', `${c}/hwpt`, { dev_id, pt_id: ioas, flags: 1 }, token);
    const { id: nested } = await d.call(
      'POST',
      `${c}/hwpt`,
      { dev_id, pt_id: parent, flags: 4, data_type: 'vtd_s1', data: { flags: 0, pgtbl_addr: '0x0', addr_width: 48 }, fault_id: fault },
      token,
    );
    await d.call('POST', `${c}/devices/${dev_id}/attach`, { pt_id: nested }, token);
  }
  return { token, stream };
}

/**
 * Tally - answers the daemon confirmed, summed over the clients that share
 * it, with a promise for a target count (no polling during a run).
 */
export class Tally {
  count = 0;
  private target = Infinity;
  private resolve: (() => void) | undefined;

  add(n: number): void {
    this.count += n;
    if (this.count >= this.target) {
      this.target = Infinity;
      this.resolve?.();
    }
  }

  /** until() - resolves once the count reaches @target. */
  until(target: number): Promise<void> {
    if (this.count >= target) return Promise.resolve();
    return new Promise((resolve) => {
      this.target = target;
      this.resolve = resolve;
    });
  }
}

/**
 * FaultClient - one fault stream connection that answers every group
 * SUCCESS as soon as its frame arrives (one responses frame per faults
 * frame), and counts the answers the daemon confirmed (`results.ok`,
 * `write.bytes / 8`).
 */
export class FaultClient {
  /** Groups received (one per frame record with LAST_PAGE). */
  groups = 0;
  /** Frames of groups received. */
  frames = 0;
  /** Refused responses or error frames (a correct run has none). */
  failures = 0;

  private constructor(
    readonly ws: WebSocket,
    readonly protocol: Subprotocol,
    readonly tally: Tally,
  ) {
    ws.on('message', (data: Buffer, isBinary: boolean) => (isBinary ? this.onBinary(data) : this.onText(data)));
  }

  /** open() - connect to @setup's fault queue in @protocol mode with @window; confirmations go to @tally. */
  static async open(d: Daemon, setup: FaultSetup, protocol: Subprotocol, window: number, tally: Tally): Promise<FaultClient> {
    const ws = await openWs(`${d.wsBase}${setup.stream}?window=${window}`, protocol, { authorization: `Bearer ${setup.token}` });
    return new FaultClient(ws, protocol, tally);
  }

  private onText(data: Buffer): void {
    const m = JSON.parse(data.toString());
    if (m.type === 'faults') {
      const groups = m.groups as Array<{ cookie: number }>;
      let s = '{"type":"responses","responses":[';
      for (let i = 0; i < groups.length; i++) s += `${i === 0 ? '{"cookie":' : ',{"cookie":'}${groups[i]!.cookie},"code":0}`;
      this.ws.send(`${s}]}`);
      this.frames++;
      this.groups += groups.length;
    } else if (m.type === 'results') {
      if (m.errors.length > 0) this.failures += m.errors.length;
      this.tally.add(m.ok);
    } else if (m.type === 'write') {
      if (m.errno !== undefined) this.failures++;
      this.tally.add(m.bytes / RESPONSE_SIZE);
    } else if (m.type === 'error') {
      this.failures++;
    }
  }

  private onBinary(data: Buffer): void {
    const out = Buffer.allocUnsafe((data.length / RECORD_SIZE) * RESPONSE_SIZE);
    let n = 0;
    for (let o = 0; o < data.length; o += RECORD_SIZE) {
      if ((data[o]! & PGFAULT_FLAGS.LAST_PAGE) === 0) continue;
      out.writeUInt32LE(data.readUInt32LE(o + 36), n);
      out.writeUInt32LE(0, n + 4);
      n += RESPONSE_SIZE;
    }
    this.ws.send(n === out.length ? out : out.subarray(0, n));
    this.frames++;
    this.groups += n / RESPONSE_SIZE;
  }

  close(): void {
    this.ws.terminate();
  }
}

/**
 * ParkedClient - a connection that takes groups and never answers them,
 * its window exactly the number it is to hold.
 */
export class ParkedClient {
  received = 0;
  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      if (isBinary) this.received += data.length / RECORD_SIZE;
    });
  }

  /** open() - a uapi connection (records are cheaper to receive) with @window. */
  static async open(d: Daemon, setup: FaultSetup, window: number): Promise<ParkedClient> {
    const ws = await openWs(`${d.wsBase}${setup.stream}?window=${window}`, SUBPROTOCOL_UAPI, { authorization: `Bearer ${setup.token}` });
    return new ParkedClient(ws);
  }

  close(): void {
    this.ws.terminate();
  }
}

/** The devices parkGroups() needs for @n groups: one per PRI budget of 512. */
export function parkDevicesFor(n: number): number {
  return Math.ceil(n / PARK_BUDGET);
}

/** Groups one parking device holds: its whole Outstanding Page Request Allocation. */
const PARK_BUDGET = 512;

/**
 * parkGroups() - make @n groups outstanding: the traffic generators of
 * @devices (attached to the queue) each send up to 512 single-request
 * groups, started one device at a time (so the PRQ never overflows), and
 * @parked (windows summing to @n) take them and never answer.
 */
export async function parkGroups(d: Daemon, devices: readonly string[], n: number, parked: readonly ParkedClient[]): Promise<void> {
  const have = (): number => parked.reduce((s, p) => s + p.received, 0);
  const start = have();
  for (let i = 0, left = n; left > 0; i++, left -= PARK_BUDGET) {
    await d.call('POST', `/v1/platform/devices/${devices[i]!}/traffic`, {
      count: Math.min(PARK_BUDGET, left),
      in_flight: PARK_BUDGET,
      base: `0x${(0x1_0000_0000 * (i + 1)).toString(16)}`,
    });
  }
  const deadline = performance.now() + 60_000;
  while (have() - start < n) {
    if (performance.now() > deadline) throw new Error(`parked ${have() - start} of ${n} groups`);
    await sleep(20);
  }
  for (const name of devices.slice(0, parkDevicesFor(n))) {
    const st = (await d.call('GET', `/v1/platform/devices/${name}/traffic`)) as TrafficStatus;
    if (st.answered !== 0) throw new Error(`parking: ${name} had ${st.answered} groups answered (PRQ overflow?)`);
  }
}

/**
 * struct TrafficResult - one traffic run.
 * @groupsPerSec: groups answered per second of wall clock, from the first
 *   start request to the daemon's confirmation of the last answer.
 * @status: each device's GET .../traffic after the run.
 */
export interface TrafficResult {
  groupsPerSec: number;
  status: TrafficStatus[];
}

/**
 * trafficRun() - start @count single-request groups on each of @devices
 * (in_flight @inFlight) and wait until @clients confirmed every answer.
 */
export async function trafficRun(
  d: Daemon,
  clients: readonly FaultClient[],
  devices: readonly string[],
  count: number,
  inFlight: number,
): Promise<TrafficResult> {
  const tally = clients[0]!.tally;
  const target = tally.count + devices.length * count;
  const done = tally.until(target);
  const t0 = performance.now();
  await Promise.all(devices.map((name) => d.call('POST', `/v1/platform/devices/${name}/traffic`, { count, in_flight: inFlight })));
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`traffic run: ${target - tally.count} groups unanswered after 120 s\n${d.child.stderrTail()}`)), 120_000);
  });
  try {
    await Promise.race([done, timeout]);
  } finally {
    clearTimeout(timer);
  }
  const wallMs = performance.now() - t0;
  let status: TrafficStatus[];
  for (;;) {
    status = await Promise.all(devices.map((name) => d.call('GET', `/v1/platform/devices/${name}/traffic`) as Promise<TrafficStatus>));
    if (status.every((s) => !s.running)) break;
    await sleep(5);
  }
  for (const s of status) if (s.by_code.success !== count) throw new Error(`traffic run: ${JSON.stringify(s)}`);
  const failures = clients.reduce((s, c) => s + c.failures, 0);
  if (failures > 0) throw new Error(`traffic run: ${failures} responses refused`);
  return { groupsPerSec: (devices.length * count) / (wallMs / 1000), status };
}
