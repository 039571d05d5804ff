#!/usr/bin/env node
/**
 * DOC: npm run demo
 *
 * The topology of docker-compose.yml as processes on 127.0.0.1: one daemon
 * and two VMs side by side on it, each a VMM handler with its own traffic:
 *
 * - x86: a guest with nic0 and accel0 (behind the VT-d unit) passed
 *   through, PASIDs 1 and 2 on each, serving 12 of the 16 MiB the traffic
 *   touches (mixed reads and writes, every pattern, on both devices and
 *   PASIDs);
 * - arm: a guest with arm0 (behind the SMMUv3 unit) as vSID 0x100, its CDs
 *   for PASIDs 1 and 2 stalling (S=1) and PASID 3's not (S=0), serving the
 *   same 12 MiB; its traffic uses the three PASIDs, so it sees stalls served
 *   and aborted, unrecoverable events (PASID 3, and nothing mapped there),
 *   and the invalidations the guest issues when it upgrades a page.
 *
 * Each process runs under leash.js, so that it ends when the demo does,
 * however the demo ends. After --duration seconds of traffic (default 10)
 * the demo stops the VMM handlers and the daemon and prints exactly two
 * lines on stdout:
 *
 *     demo: x86: <n> DMAs, <n> faults resolved, <n> invalid, <n> lost
 *     demo: arm: <n> DMAs, <n> stalls served, <n> aborted, <n> events, <n> invalidations (<n> TLBI, <n> CFGI), <n> lost
 *
 * x86, from the devices' own response logs: faults resolved = groups
 * answered SUCCESS, invalid = groups answered INVALID; lost = DMAs that
 * timed out, plus page requests that got no response (the traffic's DMAs
 * stay inside one page, so each page request is its own group and must
 * meet exactly one response), plus groups the VMM still held at its end.
 *
 * arm, also from the device's response log (a stall is a transaction
 * waiting for CMD_RESUME, not a PRI page request; the log holds one entry
 * per CMD_RESUME): stalls served = stalls resumed RETRY, aborted = stalls
 * resumed ABORT, events = unrecoverable event records the guest's queue
 * received from the vEVENTQ, invalidations = commands forwarded to the
 * vIOMMU (TLBI_NH_VA after a page upgrade, CFGI_CD after writing a CD);
 * lost = DMAs that timed out, plus stalls the daemon reported on the fault
 * queues that no CMD_RESUME reached (the daemon's own counters against the
 * device's log, whichever is more), plus vEVENTQ events the daemon produced
 * that the VMM neither received nor was told were lost.
 *
 * It exits 0 when nothing was lost on either side (and no response was
 * duplicated, and every process ended cleanly), 1 otherwise, 2 on bad
 * usage. Progress goes to stderr.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { EXIT, parseSeconds, runMain } from '../common/args.js';
import { IopfdClient } from '../sdk/index.js';
import type { TrafficStats } from '../traffic/index.js';
import type { ArmVmmStats, VmmStats } from '../vmm/index.js';

const USAGE = `usage: npm run demo -- [--duration S] [--verbose]

Starts the daemon, an x86 and an arm VMM handler and their traffic as
processes on 127.0.0.1, runs the traffic for S seconds (default 10), then
prints one summary line for each guest.
  --duration S   seconds of traffic
  --verbose      pass the processes' stderr through
`;

const DEVICES = ['nic0', 'accel0'];
const PASIDS = ['1', '2'];
const ARM_DEVICES = ['arm0'];
const ARM_PASIDS = ['1', '2'];
const ARM_TERMINATE = ['3'];
const ALLOW = '0x10000000:12M';
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
  const armTargets = [...ARM_DEVICES.flatMap((d) => ['--device', d]), ...ARM_PASIDS.flatMap((p) => ['--pasid', p])];
  const vmm = start('vmm-handler', '../vmm/main.js', ['--url', url, ...targets, '--allow', ALLOW, '--json'], verbose, env);
  const armArgs = ['--url', url, '--arch', 'arm', ...armTargets, ...ARM_TERMINATE.flatMap((p) => ['--terminate-pasid', p]), '--allow', ALLOW, '--json'];
  const armVmm = start('arm-vmm-handler', '../vmm/main.js', armArgs, verbose, env);
  await vmm.line(/"event":"ready"/);
  say(`VMM handler ready (pid ${vmm.proc.pid}): x86 guest, ${DEVICES.join(', ')} at PASIDs ${PASIDS.join(', ')}`);
  await armVmm.line(/"event":"ready"/);
  say(
    `VMM handler ready (pid ${armVmm.proc.pid}): arm guest, ${ARM_DEVICES.join(', ')} at PASIDs ${[...ARM_PASIDS, ...ARM_TERMINATE].join(', ')} (${ARM_TERMINATE.join(', ')} without stall)`,
  );

  const seconds = String(durationMs / 1000);
  const trafficOf = (t: readonly string[]): string[] => [
    '--url',
    url,
    ...t,
    ...['--pattern', 'sequential', '--pattern', 'strided', '--pattern', 'random'],
    ...['--access', 'mixed', '--size', '256', '--span', '16M', '--concurrency', '8', '--duration', seconds, '--json'],
  ];
  const traffic = start('traffic', '../traffic/main.js', trafficOf(targets), verbose, env);
  say(`traffic running for ${seconds} s (pid ${traffic.proc.pid})`);
  const armTraffic = start('arm-traffic', '../traffic/main.js', trafficOf([...armTargets, ...ARM_TERMINATE.flatMap((p) => ['--pasid', p])]), verbose, env);
  say(`arm traffic running for ${seconds} s (pid ${armTraffic.proc.pid})`);
  const [trafficStatus, armTrafficStatus] = await Promise.all([traffic.exited, armTraffic.exited]);
  if (trafficStatus !== 0) throw traffic.failure('failed');
  // Every DMA of the PASID without stall ends invalid, never all of them: the traffic's own "all failed" check does not apply.
  if (armTrafficStatus !== 0) throw armTraffic.failure('failed');
  const t = lastJson<TrafficStats>(traffic, 'stats');
  const at = lastJson<TrafficStats>(armTraffic, 'stats');

  const [vmmStatus, armVmmStatus] = await Promise.all([vmm.stop(), armVmm.stop()]);
  const v = lastJson<VmmStats>(vmm, 'stats');
  const a = lastJson<ArmVmmStats>(armVmm, 'stats');
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
  let retried = 0;
  let aborted = 0;
  for (const device of ARM_DEVICES) {
    for (const r of (await client.responses(device)).responses) {
      if (r.code === 'success') retried++;
      else aborted++;
    }
  }
  const daemonStatus = await daemon.stop();

  const responses = success + invalid + other;
  const lost = t.byStatus.timeout + Math.max(0, t.pageRequests - responses) + v.outstanding;
  const duplicated = Math.max(0, responses - t.pageRequests);
  // The VMM's count of stalls the daemon left unanswered, or the device's: the larger.
  const resumes = retried + aborted;
  const unresumed = Math.max(0, a.faultQueues.reported - resumes);
  const armLost = at.byStatus.timeout + a.unaccounted + Math.max(a.lost - a.unaccounted, unresumed);
  const armDuplicated = Math.max(0, resumes - a.faultQueues.reported);
  if (armDuplicated > 0) say(`${armDuplicated} more CMD_RESUMEs than stalls`);
  if (duplicated > 0) say(`${duplicated} more responses than page requests`);
  if (other > 0) say(`${other} Response Failures reached the devices`);
  if (a.resumesUnmatched > 0) say(`the arm guest issued ${a.resumesUnmatched} CMD_RESUMEs for no stall`);
  for (const [c, status] of [
    [vmm, vmmStatus],
    [armVmm, armVmmStatus],
    [daemon, daemonStatus],
  ] as const) {
    if (status !== 0) say(`the ${c.name} exited with ${status}:\n${c.stderr.trim()}`);
  }
  process.stdout.write(`demo: x86: ${t.dmas} DMAs, ${success} faults resolved, ${invalid} invalid, ${lost} lost\n`);
  process.stdout.write(
    `demo: arm: ${at.dmas} DMAs, ${retried} stalls served, ${aborted} aborted, ${a.events} events, ${a.commands} invalidations (${a.tlbi} TLBI, ${a.cfgi} CFGI), ${armLost} lost\n`,
  );
  const clean = vmmStatus === 0 && armVmmStatus === 0 && daemonStatus === 0;
  return lost === 0 && armLost === 0 && duplicated === 0 && armDuplicated === 0 && other === 0 && a.resumesUnmatched === 0 && clean ? EXIT.OK : EXIT.DAEMON;
}

runMain('demo', main);
