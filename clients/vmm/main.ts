#!/usr/bin/env node
/**
 * DOC: the VMM handler process
 *
 * Runs one VM (Vmm) against a daemon until --duration elapses, SIGINT /
 * SIGTERM, or its fault streams end (the daemon went away), then prints its
 * statistics and exits. Prints a ready line once
 * every device is attached and its fault streams are open (and creates
 * --ready-file then, for health checks). Exit codes as iopfctl's: 0, 1 the
 * daemon refused (or the handler met errors), 2 usage, 3 no connection.
 */
import { rmSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { formatU64 } from '../../protocol/index.js';
import {
  CONNECTION_OPTIONS,
  connectionOf,
  DEFAULT_VA_RANGE,
  EXIT,
  onTermination,
  parseBig,
  parseSeconds,
  parseU32,
  runMain,
  UsageError,
} from '../common/args.js';
import { Vmm, type AllowedRange, type VmmStats } from './index.js';

const USAGE = `usage: node dist/clients/vmm/main.js --device NAME [--device NAME ...] [options]

The nested-translation VMM handler: a guest with its RAM in an IOAS, a
nest-parent stage 2, and per device and guest PASID a fault queue and a
nested vtd_s1 hwpt; the guest maps the pages its devices fault on.

  --url URL             the daemon (IOPFD_URL; default http://127.0.0.1:8080)
  --admin-token T       admin token, for PRI resets (IOPFD_ADMIN_TOKEN)
  --device NAME         a platform device to pass through (repeatable)
  --pasid N             a guest PASID on every device (repeatable; none: the RID)
  --allow START:LEN[:ro]  a VA range the guest serves (repeatable;
                        default ${formatU64(DEFAULT_VA_RANGE.start)}:${formatU64(DEFAULT_VA_RANGE.length)})
  --duration S          stop after S seconds (default: at SIGINT/SIGTERM)
  --ram SIZE            guest RAM (default 64M)
  --prq-depth N         virtual page request queue depth (default 64)
  --mode uapi|json      how the fault queues are read (default uapi)
  --ready-file PATH     create PATH once ready (removed at exit)
  --json                print the ready line and the statistics as JSON
  -h, --help            this help
`;

/** parseAllow() - `START:LEN[:ro]`. */
function parseAllow(s: string): AllowedRange {
  const parts = s.split(':');
  if (parts.length < 2 || parts.length > 3 || (parts.length === 3 && parts[2] !== 'ro')) {
    throw new UsageError(`--allow: expected START:LEN[:ro], got ${JSON.stringify(s)}`);
  }
  const start = parseBig('--allow start', parts[0]!);
  const length = parseBig('--allow length', parts[1]!);
  if (start % 0x1000n !== 0n || length % 0x1000n !== 0n || length === 0n) throw new UsageError(`--allow ${s}: start and length must be whole 4 KiB pages`);
  return { start, length, write: parts.length === 2 };
}

/** statsLine() - the statistics in one human-readable line. */
function statsLine(s: VmmStats): string {
  return (
    `vmm: ${s.groups} groups, ${s.success} success, ${s.invalid} invalid (${s.failures} guest failures), ` +
    `${s.prqFull} answered on a full PRQ, ${s.guest.pagesMapped} pages mapped, ${s.guest.upgrades} upgrades, ` +
    `${s.invalidations} invalidations, ${s.outstanding} outstanding; latency ms p50 ${s.latencyMs.p50} p99 ${s.latencyMs.p99} max ${s.latencyMs.max}`
  );
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      ...CONNECTION_OPTIONS,
      device: { type: 'string', multiple: true },
      pasid: { type: 'string', multiple: true },
      allow: { type: 'string', multiple: true },
      duration: { type: 'string' },
      ram: { type: 'string' },
      'prq-depth': { type: 'string' },
      mode: { type: 'string' },
      'ready-file': { type: 'string' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(USAGE);
    return EXIT.OK;
  }
  if (!values.device?.length) throw new UsageError(`at least one --device is needed\n${USAGE}`);
  if (values.mode !== undefined && values.mode !== 'uapi' && values.mode !== 'json') throw new UsageError('--mode: expected uapi or json');
  const { url, adminToken } = connectionOf(values, process.env);
  const durationMs = values.duration === undefined ? undefined : parseSeconds('--duration', values.duration);
  const vmm = await Vmm.start({
    url,
    adminToken,
    devices: values.device,
    pasids: (values.pasid ?? []).map((p) => parseU32('--pasid', p, 1, 0xfffff)),
    allow: values.allow?.length ? values.allow.map(parseAllow) : [{ ...DEFAULT_VA_RANGE, write: true }],
    ramSize: values.ram === undefined ? undefined : parseBig('--ram', values.ram),
    prqDepth: values['prq-depth'] === undefined ? undefined : parseU32('--prq-depth', values['prq-depth'], 1),
    mode: values.mode,
  });
  const bindings = vmm.bindings.map((b) => ({ device: b.device, pasid: b.pasid ?? null, dev_id: b.devId, fault: b.faultId, hwpt: b.hwptId }));
  const out = (line: object | string): boolean => process.stdout.write(`${typeof line === 'string' ? line : JSON.stringify(line)}\n`);
  // The ready file first: whoever reads the ready line may look for it at once.
  const readyFile = values['ready-file'];
  if (readyFile !== undefined) writeFileSync(readyFile, `${process.pid}\n`);
  if (values.json) out({ event: 'ready', ctx: vmm.ctx.ctx, bindings });
  else out(`vmm: ready: ctx ${vmm.ctx.ctx}, ${bindings.map((b) => `${b.device}@${b.pasid ?? 'rid'} (fault ${b.fault}, hwpt ${b.hwpt})`).join(', ')}`);

  await new Promise<void>((resolve) => {
    onTermination(resolve);
    if (durationMs !== undefined) setTimeout(resolve, durationMs);
    void vmm.ended().then(resolve);
  });
  const stats = await vmm.stop();
  if (readyFile !== undefined) rmSync(readyFile, { force: true });
  if (values.json) out({ event: 'stats', ...stats });
  else out(statsLine(stats));
  for (const e of vmm.errors) process.stderr.write(`vmm: ${e.message}\n`);
  return vmm.errors.length === 0 ? EXIT.OK : EXIT.DAEMON;
}

runMain('vmm', main);
