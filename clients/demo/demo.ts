#!/usr/bin/env node
/**
 * DOC: npm run demo
 *
 * The topology of docker-compose.yml as processes on 127.0.0.1: the daemon
 * (`dist/server/main.js --port 0`), the VMM handler (a guest with nic0 and
 * accel0 passed through, PASIDs 1 and 2 on each, serving 12 of the 16 MiB
 * the traffic touches) and the traffic process (mixed reads and writes,
 * every pattern, on both devices and PASIDs). Each runs under leash.js, so
 * that it ends when the demo does, however the demo ends.
 *
 * After --duration seconds of traffic (default 10) the demo stops the VMM
 * handler and the daemon and prints exactly one line on stdout:
 *
 *     demo: <n> DMAs, <n> faults resolved, <n> invalid, <n> lost
 *
 * from the devices' own response logs: faults resolved = groups answered
 * SUCCESS, invalid = groups answered INVALID; lost = DMAs that timed out,
 * plus page requests that got no response (the traffic's DMAs stay inside
 * one page, so each page request is its own group and must meet exactly one
 * response), plus groups the VMM still held at its end. It exits 0 when
 * nothing was lost (and no response was duplicated, and every process
 * ended cleanly), 1 otherwise, 2 on bad usage. Progress goes to stderr.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { EXIT, parseSeconds, runMain } from '../common/args.js';
import { IopfdClient } from '../sdk/index.js';
import type { TrafficStats } from '../traffic/index.js';
import type { VmmStats } from '../vmm/index.js';

const USAGE = `usage: npm run demo -- [--duration S] [--verbose]

Starts the daemon, the VMM handler and the traffic as processes on 127.0.0.1,
runs the traffic for S seconds (default 10), then prints one summary line.
  --duration S   seconds of traffic
  --verbose      pass the processes' stderr through
`;

const DEVICES = ['nic0', 'accel0'];
const PASIDS = ['1', '2'];
const START_TIMEOUT_MS = 15000;

const path = (rel: string): string => fileURLToPath(new URL(rel, import.meta.url));

/** A child process under leash, its stdout read line by line. */
class Child {
  readonly proc: ChildProcess;
  readonly lines: string[] = [];
  stderr = '';
  readonly exited: Promise<number>;
  #waiters: Array<() => void> = [];

  constructor(
    readonly name: string,
    script: string,
    args: readonly string[],
    verbose: boolean,
    env: NodeJS.ProcessEnv,
  ) {
    this.proc = spawn(process.execPath, [path('./leash.js'), process.execPath, script, ...args], { stdio: ['pipe', 'pipe', 'pipe'], env });
    createInterface({ input: this.proc.stdout! }).on('line', (line) => {
      this.lines.push(line);
      for (const w of this.#waiters.splice(0)) w();
    });
    this.proc.stderr!.on('data', (chunk: Buffer) => {
      this.stderr += chunk.toString();
      if (verbose) process.stderr.write(chunk);
    });
    this.exited = new Promise((resolve) =>
      this.proc.on('exit', (code, signal) => {
        for (const w of this.#waiters.splice(0)) w();
        resolve(code ?? (signal ? 128 : 1));
      }),
    );
  }

  get running(): boolean {
    return this.proc.exitCode === null && this.proc.signalCode === null;
  }

  /** line() - the first stdout line matching @re (waits up to @timeoutMs). */
  async line(re: RegExp, timeoutMs = START_TIMEOUT_MS): Promise<RegExpExecArray> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      for (const l of this.lines) {
        const m = re.exec(l);
        if (m) return m;
      }
      if (!this.running) throw new Error(`${this.name} exited without printing ${re}:\n${this.stderr.trim()}`);
      if (Date.now() > deadline) throw new Error(`${this.name} did not print ${re} within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.max(0, deadline - Date.now()));
        this.#waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** stop() - SIGTERM (passed on by the leash); the exit status. */
  stop(): Promise<number> {
    if (this.running) this.proc.kill('SIGTERM');
    return this.exited;
  }

  /** failure() - an Error carrying this child's stderr. */
  failure(what: string): Error {
    return new Error(`${this.name} ${what}:\n${this.stderr.trim()}`);
  }
}

/** Children alive, ended on any exit of the demo. */
const children = new Set<Child>();
process.on('exit', () => {
  for (const c of children) if (c.running) c.proc.kill('SIGTERM');
});
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(signal, () => {
    for (const c of children) if (c.running) c.proc.kill('SIGTERM');
    process.exit(130);
  });
}

function start(name: string, script: string, args: readonly string[], verbose: boolean, env: NodeJS.ProcessEnv = process.env): Child {
  const c = new Child(name, path(script), args, verbose, env);
  children.add(c);
  return c;
}

/** lastJson() - the last stdout line of @c that is a JSON object with @event. */
function lastJson<T>(c: Child, event: string): T {
  for (const l of [...c.lines].reverse()) {
    if (l.startsWith('{')) {
      const v = JSON.parse(l) as { event?: string };
      if (v.event === event) return v as T;
    }
  }
  throw c.failure(`printed no ${event} line`);
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: { duration: { type: 'string' }, verbose: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(USAGE);
    return EXIT.OK;
  }
  const durationMs = parseSeconds('--duration', values.duration ?? '10');
  const verbose = values.verbose === true;
  const adminToken = randomBytes(16).toString('hex');
  const env = { ...process.env, IOPFD_ADMIN_TOKEN: adminToken };
  const say = (s: string): boolean => process.stderr.write(`demo: ${s}\n`);

  const daemon = start('daemon', '../../server/main.js', ['--host', '127.0.0.1', '--port', '0', '--log-level', 'warn'], verbose, env);
  const url = (await daemon.line(/listening on (http:\/\/\S+)/))[1]!;
  say(`daemon at ${url} (pid ${daemon.proc.pid})`);

  const targets = [...DEVICES.flatMap((d) => ['--device', d]), ...PASIDS.flatMap((p) => ['--pasid', p])];
  const vmm = start('vmm-handler', '../vmm/main.js', ['--url', url, ...targets, '--allow', '0x10000000:12M', '--json'], verbose, env);
  await vmm.line(/"event":"ready"/);
  say(`VMM handler ready (pid ${vmm.proc.pid}): ${DEVICES.join(', ')} at PASIDs ${PASIDS.join(', ')}`);

  const trafficArgs = ['--url', url, ...targets, '--pattern', 'sequential', '--pattern', 'strided', '--pattern', 'random'];
  trafficArgs.push('--access', 'mixed', '--size', '256', '--span', '16M', '--concurrency', '8', '--duration', String(durationMs / 1000), '--json');
  const traffic = start('traffic', '../traffic/main.js', trafficArgs, verbose, env);
  say(`traffic running for ${durationMs / 1000} s (pid ${traffic.proc.pid})`);
  if ((await traffic.exited) !== 0) throw traffic.failure('failed');
  const t = lastJson<TrafficStats>(traffic, 'stats');

  const vmmStatus = await vmm.stop();
  const v = lastJson<VmmStats>(vmm, 'stats');
  const client = new IopfdClient({ url, adminToken });
  let success = 0;
  let invalid = 0;
  let other = 0;
  for (const device of DEVICES) {
    for (const r of (await client.responses(device)).responses) {
      if (r.code === 'success') success++;
      else if (r.code === 'invalid') invalid++;
      else other++;
    }
  }
  const daemonStatus = await daemon.stop();

  const responses = success + invalid + other;
  const lost = t.byStatus.timeout + Math.max(0, t.pageRequests - responses) + v.outstanding;
  const duplicated = Math.max(0, responses - t.pageRequests);
  if (duplicated > 0) say(`${duplicated} more responses than page requests`);
  if (other > 0) say(`${other} Response Failures reached the devices`);
  if (vmmStatus !== 0) say(`the VMM handler exited with ${vmmStatus}:\n${vmm.stderr.trim()}`);
  if (daemonStatus !== 0) say(`the daemon exited with ${daemonStatus}:\n${daemon.stderr.trim()}`);
  process.stdout.write(`demo: ${t.dmas} DMAs, ${success} faults resolved, ${invalid} invalid, ${lost} lost\n`);
  return lost === 0 && duplicated === 0 && other === 0 && vmmStatus === 0 && daemonStatus === 0 ? EXIT.OK : EXIT.DAEMON;
}

runMain('demo', main);
