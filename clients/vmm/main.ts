#!/usr/bin/env node
/**
 * DOC: the VMM handler process
 *
 * Runs one VM against a daemon: --arch x86 (the default, Vmm: a virtual
 * VT-d with PRI) or --arch arm (ArmVmm: a virtual SMMUv3 with stalls and an
 * event queue; its devices must sit behind an SMMUv3-model IOMMU, else a
 * usage error) until --duration elapses, SIGINT /
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
import { ArmVmm, ArmVmmConfigError, Vmm, type AllowedRange, type ArmVmmStats, type VmmStats } from './index.js';

const USAGE = `usage: node dist/clients/vmm/main.js --device NAME [--device NAME ...] [options]

The nested-translation VMM handler: a guest with its RAM in an IOAS under a
nest-parent stage 2; the guest maps the pages its devices fault on.
  x86: per device and guest PASID a fault queue and a nested vtd_s1 hwpt.
  arm: a vIOMMU, a vDEVICE per device, a vEVENTQ, per device a nested hwpt of
       the guest's STE (CD table and AArch64 tables in guest RAM) with a fault
       queue for its stalls; the guest's event queue lives in its RAM.

  --arch x86|arm        the virtual IOMMU (default x86; arm needs devices
                        behind an SMMUv3-model IOMMU)
  --url URL             the daemon (IOPFD_URL; default http://127.0.0.1:8080)
  --admin-token T       admin token (IOPFD_ADMIN_TOKEN): x86 PRI resets; arm:
                        the check that the devices sit behind an SMMUv3
  --device NAME         a platform device to pass through (repeatable)
  --pasid N             a guest PASID on every device (repeatable; none: the RID;
                        arm: its CD stalls on faults, S=1)
  --terminate-pasid N   arm: a PASID whose CD does not stall (S=0): its faults
                        terminate and reach the guest as events (repeatable)
  --evtq-log2 N         arm: the guest event queue holds 2^N records (default 7)
  --veventq-depth N     arm: the host vEVENTQ's depth (default 256)
  --allow START:LEN[:ro]  a VA range the guest serves (repeatable;
                        default ${formatU64(DEFAULT_VA_RANGE.start)}:${formatU64(DEFAULT_VA_RANGE.length)})
  --duration S          stop after S seconds (default: at SIGINT/SIGTERM)
  --ram SIZE            guest RAM (default 64M)
  --prq-depth N         x86: virtual page request queue depth (default 64)
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

/** armStatsLine() - the arm VM's statistics in one human-readable line. */
function armStatsLine(s: ArmVmmStats): string {
  return (
    `vmm(arm): ${s.stalls} stalls, ${s.success} resumed RETRY, ${s.invalid} ABORT (${s.evtqFull} on a full event queue), ` +
    `${s.events} events (${s.eventsLost} lost by the vEVENTQ, ${s.evtqDropped} dropped by the guest queue, ${s.overflows} overflows), ` +
    `${s.guest.pagesMapped} pages mapped, ${s.guest.upgrades} upgrades, ${s.commands} commands (${s.tlbi} TLBI, ${s.cfgi} CFGI) in ${s.invalidations} invalidations, ` +
    `${s.steInstalls} CFGI_STE (${s.steReplaced} replaced, ${s.steErrors} refused), ${s.outstanding} outstanding, ${s.lost} lost; latency ms p50 ${s.latencyMs.p50} p99 ${s.latencyMs.p99} max ${s.latencyMs.max}`
  );
}

/** parseLog2() - --evtq-log2. */
function parseLog2(s: string | undefined): number | undefined {
  return s === undefined ? undefined : parseU32('--evtq-log2', s, 0, 16);
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      ...CONNECTION_OPTIONS,
      arch: { type: 'string' },
      device: { type: 'string', multiple: true },
      'terminate-pasid': { type: 'string', multiple: true },
      'evtq-log2': { type: 'string' },
      'veventq-depth': { type: 'string' },
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
  const arch = values.arch ?? 'x86';
  if (arch !== 'x86' && arch !== 'arm') throw new UsageError('--arch: expected x86 or arm');
  if (arch === 'x86') {
    for (const f of ['terminate-pasid', 'evtq-log2', 'veventq-depth'] as const) if (values[f] !== undefined) throw new UsageError(`--${f} needs --arch arm`);
  } else if (values['prq-depth'] !== undefined) throw new UsageError('--prq-depth needs --arch x86');
  const durationMs = values.duration === undefined ? undefined : parseSeconds('--duration', values.duration);
  const common = {
    url,
    adminToken,
    devices: values.device,
    pasids: (values.pasid ?? []).map((p) => parseU32('--pasid', p, 1, 0xfffff)),
    allow: values.allow?.length ? values.allow.map(parseAllow) : [{ ...DEFAULT_VA_RANGE, write: true }],
    ramSize: values.ram === undefined ? undefined : parseBig('--ram', values.ram),
    mode: values.mode as 'uapi' | 'json' | undefined,
  };
  const out = (line: object | string): boolean => process.stdout.write(`${typeof line === 'string' ? line : JSON.stringify(line)}\n`);
  let vm: { ctx: { ctx: number }; errors: Error[]; ended(): Promise<void> };
  let stop: () => Promise<VmmStats | ArmVmmStats>;
  let line: (s: VmmStats & ArmVmmStats) => string;
  let bindings: object[];
  let readyText: string;
  if (arch === 'arm') {
    let vmm: ArmVmm;
    try {
      vmm = await ArmVmm.start({
        ...common,
        terminate: (values['terminate-pasid'] ?? []).map((p) => parseU32('--terminate-pasid', p, 1, 0xfffff)),
        evtqLog2: parseLog2(values['evtq-log2']),
        veventqDepth: values['veventq-depth'] === undefined ? undefined : parseU32('--veventq-depth', values['veventq-depth'], 1),
      });
    } catch (e) {
      if (e instanceof ArmVmmConfigError) throw new UsageError(e.message);
      throw e;
    }
    vm = vmm;
    stop = () => vmm.stop();
    line = armStatsLine;
    bindings = vmm.bindings.map((b) => ({
      device: b.device,
      vsid: formatU64(BigInt(b.vsid)),
      dev_id: b.devId,
      vdevice: b.vdeviceId,
      fault: b.faultId,
      hwpt: b.hwptId,
    }));
    readyText = `vmm(arm): ready: ctx ${vmm.ctx.ctx}, viommu ${vmm.viommuId}, veventq ${vmm.veventqId}, ${vmm.bindings.map((b) => `${b.device} as vSID ${formatU64(BigInt(b.vsid))} (fault ${b.faultId}, hwpt ${b.hwptId})`).join(', ')}`;
  } else {
    const vmm = await Vmm.start({ ...common, prqDepth: values['prq-depth'] === undefined ? undefined : parseU32('--prq-depth', values['prq-depth'], 1) });
    vm = vmm;
    stop = () => vmm.stop();
    line = statsLine;
    bindings = vmm.bindings.map((b) => ({ device: b.device, pasid: b.pasid ?? null, dev_id: b.devId, fault: b.faultId, hwpt: b.hwptId }));
    readyText = `vmm: ready: ctx ${vmm.ctx.ctx}, ${vmm.bindings.map((b) => `${b.device}@${b.pasid ?? 'rid'} (fault ${b.faultId}, hwpt ${b.hwptId})`).join(', ')}`;
  }
  // The ready file first: whoever reads the ready line may look for it at once.
  const readyFile = values['ready-file'];
  if (readyFile !== undefined) writeFileSync(readyFile, `${process.pid}\n`);
  if (values.json) out({ event: 'ready', arch, ctx: vm.ctx.ctx, bindings });
  else out(readyText);

  await new Promise<void>((resolve) => {
    onTermination(resolve);
    if (durationMs !== undefined) setTimeout(resolve, durationMs);
    void vm.ended().then(resolve);
  });
  const stats = await stop();
  if (readyFile !== undefined) rmSync(readyFile, { force: true });
  if (values.json) out({ event: 'stats', ...stats });
  else out(line(stats as VmmStats & ArmVmmStats));
  for (const e of vm.errors) process.stderr.write(`vmm: ${e.message}\n`);
  return vm.errors.length === 0 ? EXIT.OK : EXIT.DAEMON;
}

runMain('vmm', main);
