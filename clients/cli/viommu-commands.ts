/**
 * DOC: iopfctl's vIOMMU commands
 *
 * vIOMMU (arm_smmuv3), vDEVICE and vEVENTQ of a context, and the guest's
 * SMMUv3 invalidation commands through the vIOMMU (--ctx, --token). A
 * nested hwpt on a vIOMMU is `hwpt create --pt-id VIOMMU --ste W0,W1`.
 */
import { parseU32, UsageError } from '../common/args.js';
import type { IopfdContext } from '../sdk/index.js';
import { table, type CliCommand, type Invocation } from './command.js';

const need32 = (inv: Invocation, name: string): number => inv.opts.u32(name, 1) ?? parseU32(`--${name}`, inv.opts.need(name), 1);

/** twoWords() - "W0,W1" as two u64 wire strings (the STE words, or one SMMUv3 command). */
export function twoWords(what: string, v: string): [string, string] {
  const parts = v.split(',').map((p) => p.trim());
  const ok = parts.length === 2 && parts.every((p) => /^(0x[0-9a-f]{1,16}|[0-9]+)$/i.test(p) && BigInt(p) < 1n << 64n);
  if (!ok) throw new UsageError(`${what}: expected two u64 words W0,W1 (hex 0x… or decimal), got ${JSON.stringify(v)}`);
  return [`0x${BigInt(parts[0]!).toString(16)}`, `0x${BigInt(parts[1]!).toString(16)}`];
}

/** VIOMMU_COMMANDS - vIOMMU, vDEVICE and vEVENTQ objects. */
export const VIOMMU_COMMANDS: readonly CliCommand[] = [
  {
    words: ['viommu', 'create'],
    args: [],
    summary: 'allocate an arm_smmuv3 vIOMMU on a nest-parent hwpt of an SMMUv3 device; prints its id',
    options: [
      { name: 'dev-id', arg: 'N', help: 'the device (required)' },
      { name: 'hwpt-id', arg: 'N', help: 'the NEST_PARENT hwpt (required)' },
    ],
    run: (inv) => inv.context().allocViommu({ type: 'arm_smmuv3', dev_id: need32(inv, 'dev-id'), hwpt_id: need32(inv, 'hwpt-id') }),
    text: (r: { id: number }) => String(r.id),
  },
  {
    words: ['viommu', 'invalidate'],
    args: ['VIOMMU'],
    summary: "run guest SMMUv3 invalidation commands (vSIDs translated); stops at the first bad one (EIO)",
    options: [{ name: 'cmd', arg: 'W0,W1', help: 'one command, two u64 words (required; several: separate with ";")' }],
    run: (inv) => {
      const commands = inv.opts
        .need('cmd')
        .split(';')
        .map((c) => twoWords('--cmd', c));
      return inv.context().invalidateViommu(parseU32('VIOMMU', inv.args['VIOMMU']!, 1), { data_type: 'arm_smmuv3', commands });
    },
    text: (r: { done: number }) => `${r.done} commands done`,
  },
  {
    words: ['vdevice', 'create'],
    args: [],
    summary: 'name a device inside a vIOMMU by its virtual id (the vSID); prints its id',
    options: [
      { name: 'viommu-id', arg: 'N', help: 'the vIOMMU (required)' },
      { name: 'dev-id', arg: 'N', help: 'the device (required)' },
      { name: 'virt-id', arg: 'VSID', help: 'its virtual id (required)' },
    ],
    run: (inv) =>
      inv.context().allocVdevice({ viommu_id: need32(inv, 'viommu-id'), dev_id: need32(inv, 'dev-id'), virt_id: inv.opts.u64('virt-id') ?? inv.opts.need('virt-id') }),
    text: (r: { id: number }) => String(r.id),
  },
  {
    words: ['veventq', 'create'],
    args: [],
    summary: "allocate a vIOMMU's vEVENTQ; prints its id and stream path",
    options: [
      { name: 'viommu-id', arg: 'N', help: 'the vIOMMU (required)' },
      { name: 'depth', arg: 'N', help: 'events queued at most (default 1024)' },
    ],
    run: (inv) => inv.context().allocVeventq({ viommu_id: need32(inv, 'viommu-id'), type: 'arm_smmuv3', depth: inv.opts.u32('depth', 1) ?? 1024 }),
    text: (r: { id: number; stream: string }) => `${r.id} ${r.stream}`,
  },
  {
    words: ['veventq', 'show'],
    args: ['ID'],
    summary: 'the state of a vEVENTQ: queued, depth, sequence, lost, connections',
    options: [],
    run: (inv) => inv.context().veventqStatus(parseU32('ID', inv.args['ID']!, 1)),
    text: (s: Awaited<ReturnType<IopfdContext['veventqStatus']>>) =>
      table(['VEVENTQ', 'QUEUED', 'DEPTH', 'SEQUENCE', 'LOST', 'CONNECTIONS'], [[s.id, s.queued, s.depth, s.sequence, s.lost, s.connections]]),
  },
];
