/**
 * DOC: iopfctl's platform and context commands
 *
 * One entry per REST operation a person runs by hand: the platform
 * (devices, DMA, page request injection, responses, PRI reset) and a
 * context's objects (ctx, bind, ioas, hwpt, fault, attach/replace/detach).
 */
import { formatU64, HWPT_FLAGS } from '../../protocol/index.js';
import { parseU32, UsageError } from '../common/args.js';
import type { ContextList, FaultAllocRequest, HwptAllocRequest, IopfdClient, IopfdContext, PlatformDevice } from '../sdk/index.js';
import { permOf, table, type CliCommand, type Invocation } from './command.js';
import { twoWords } from './viommu-commands.js';

const id = (name: string, inv: Invocation): number => parseU32(name, inv.args[name]!, 1);

/** --iova and --length, both required: the IOVA range of the ioas commands. */
const RANGE_OPTIONS = [
  { name: 'iova', arg: 'VA', help: 'first IOVA (required)' },
  { name: 'length', arg: 'LEN', help: 'bytes (required)' },
] as const;

const iovaOf = (inv: Invocation): string => inv.opts.u64('iova') ?? inv.opts.need('iova');
const rangeOf = (inv: Invocation): { iova: string; length: string } => ({ iova: iovaOf(inv), length: inv.opts.u64('length') ?? inv.opts.need('length') });

/** devicesTable() - platform devices as a table; @wide adds the caps not shown otherwise and the context. */
function devicesTable(devices: readonly PlatformDevice[], wide: boolean): string {
  const header = ['DEVICE', 'BDF', 'IOMMU', 'PASID', 'PRI', 'ATS', 'VF', 'BOUND', 'PRI-STATE'];
  return table(
    wide ? [...header, 'CTX', 'PRG-RESP-PASID'] : header,
    devices.map((d) => {
      const row = [
        d.name,
        d.bdf,
        d.iommu,
        d.caps.pasid_bits,
        d.caps.pri ? d.caps.pri_outstanding : '-',
        d.caps.ats ? 'yes' : 'no',
        d.caps.is_vf ? 'yes' : 'no',
        d.bound ? 'yes' : 'no',
        d.pri_status.response_failure ? 'response-failure' : d.pri_status.stopped ? 'stopped' : d.pri_enabled ? 'enabled' : 'off',
      ];
      return wide ? [...row, d.ctx ?? '-', d.caps.prg_response_needs_pasid ? 'yes' : 'no'] : row;
    }),
  );
}

/** PLATFORM_COMMANDS - the simulated hardware (admin token). */
export const PLATFORM_COMMANDS: readonly CliCommand[] = [
  {
    words: ['devices', 'list'],
    args: [],
    summary: 'list the IOMMUs and PCIe functions of the platform (-o wide: caps and the holding context)',
    options: [],
    run: (inv) => inv.client.platform(),
    text: (p: Awaited<ReturnType<IopfdClient['platform']>>, wide: boolean) =>
      `${table(
        ['IOMMU', 'MODEL', 'PRQ'],
        p.iommus.map((u) => [u.name, u.model, u.prq_depth]),
      )}\n\n${devicesTable(p.devices, wide)}`,
  },
  {
    words: ['devices', 'show'],
    args: ['NAME'],
    summary: 'one PCIe function of the platform (-o wide: caps and the holding context)',
    options: [],
    run: (inv) => inv.client.device(inv.args['NAME']!),
    text: (d: PlatformDevice, wide: boolean) => devicesTable([d], wide),
  },
  {
    words: ['devices', 'add'],
    args: ['NAME'],
    summary: 'hot-plug a PCIe function',
    options: [
      { name: 'iommu', arg: 'NAME', help: 'its IOMMU (default: the first)' },
      { name: 'bdf', arg: 'BB:DD.F', help: 'its PCI address (default: the next free)' },
      { name: 'pasid-bits', arg: 'N', help: 'PASID width 0..20 (default 20)' },
      { name: 'pri-outstanding', arg: 'N', help: 'page request allocation 1..512 (default 512)' },
      { name: 'no-pri', help: 'without PRI' },
      { name: 'no-ats', help: 'without ATS' },
      { name: 'vf', help: 'a virtual function' },
    ],
    run: (inv) => {
      const o = inv.opts;
      const caps = {
        ...(o.u32('pasid-bits', 0, 20) === undefined ? {} : { pasid_bits: o.u32('pasid-bits', 0, 20)! }),
        ...(o.u32('pri-outstanding', 1, 512) === undefined ? {} : { pri_outstanding: o.u32('pri-outstanding', 1, 512)! }),
        ...(o.flag('no-pri') ? { pri: false } : {}),
        ...(o.flag('no-ats') ? { ats: false } : {}),
        ...(o.flag('vf') ? { is_vf: true } : {}),
      };
      return inv.client.addDevice({
        name: inv.args['NAME']!,
        ...(o.str('iommu') === undefined ? {} : { iommu: o.str('iommu')! }),
        ...(o.str('bdf') === undefined ? {} : { bdf: o.str('bdf')! }),
        caps,
      });
    },
    text: (d: Awaited<ReturnType<IopfdClient['addDevice']>>) => `${d.name} ${d.bdf} on ${d.iommu}`,
  },
  {
    words: ['devices', 'remove'],
    args: ['NAME'],
    summary: 'hot-unplug a PCIe function (its outstanding groups are answered INVALID)',
    options: [],
    run: (inv) => inv.client.removeDevice(inv.args['NAME']!),
  },
  {
    words: ['dma'],
    args: ['DEVICE'],
    summary: 'perform a DMA through the IOMMU and wait for its outcome (a write with --data)',
    options: [
      { name: 'iova', arg: 'VA', help: 'the address (required)' },
      { name: 'length', arg: 'LEN', help: 'bytes to read' },
      { name: 'data', arg: 'HEX', help: 'bytes to write (a write; its length is the length)' },
      { name: 'pasid', arg: 'N', help: 'with this PASID (default: none)' },
      { name: 'priv', help: 'a privileged request' },
      { name: 'exec', help: 'an instruction fetch' },
      { name: 'timeout-ms', arg: 'MS', help: 'give up after MS (default 10000)' },
    ],
    run: (inv) => {
      const o = inv.opts;
      const data = o.str('data');
      if ((data === undefined) === (o.str('length') === undefined)) throw new UsageError('give --length (a read) or --data (a write)');
      if (data !== undefined && !/^([0-9a-f]{2})+$/i.test(data)) throw new UsageError('--data: expected hex bytes');
      const timeout = o.u32('timeout-ms', 1);
      return inv.client.dma(inv.args['DEVICE']!, {
        ...o.pasid(),
        iova: o.u64('iova') ?? o.need('iova'),
        length: data === undefined ? o.u64('length')! : formatU64(BigInt(data.length / 2)),
        access: data === undefined ? 'read' : 'write',
        ...(data === undefined ? {} : { data }),
        ...(o.flag('priv') ? { priv: true } : {}),
        ...(o.flag('exec') ? { exec: true } : {}),
        ...(timeout === undefined ? {} : { timeout_ms: timeout }),
      });
    },
    text: (r: Awaited<ReturnType<IopfdClient['dma']>>) =>
      `${r.status} (${r.page_requests} page requests, ${r.retries} retries)${r.data === undefined ? '' : `\n${r.data}`}`,
  },
  {
    words: ['inject'],
    args: ['DEVICE'],
    summary: "inject one raw page request into the device's IOMMU page request queue",
    options: [
      { name: 'grpid', arg: 'N', help: 'PRG index 0..511 (required)' },
      { name: 'addr', arg: 'VA', help: 'page address (required)' },
      { name: 'perm', arg: 'rwxp', help: 'access letters or PERM bits (default r)' },
      { name: 'pasid', arg: 'N', help: 'with this PASID' },
      { name: 'not-last', help: 'not the last request of its group' },
    ],
    run: async (inv) => {
      const o = inv.opts;
      await inv.client.injectPageRequest(inv.args['DEVICE']!, {
        ...o.pasid(),
        grpid: o.u32('grpid', 0, 511) ?? parseU32('--grpid', o.need('grpid')),
        addr: o.u64('addr') ?? o.need('addr'),
        perm: permOf(o.str('perm') ?? 'r'),
        last: !o.flag('not-last'),
      });
    },
  },
  {
    words: ['responses'],
    args: ['DEVICE'],
    summary: 'the page group responses the device received',
    options: [{ name: 'since', arg: 'SEQ', help: 'only those after SEQ' }],
    run: (inv) => inv.client.responses(inv.args['DEVICE']!, inv.opts.u32('since')),
    text: (r: Awaited<ReturnType<IopfdClient['responses']>>) =>
      table(['SEQ', 'PASID', 'GRPID', 'CODE'], r.responses.map((x) => [x.seq, x.pasid ?? '-', x.grpid, x.code])),
  },
  {
    words: ['pri-reset'],
    args: ['DEVICE'],
    summary: 'clear Response Failure and re-enable PRI',
    options: [],
    run: (inv) => inv.client.priReset(inv.args['DEVICE']!),
  },
];

/**
 * ADMIN_CONTEXT_COMMANDS - every open context, as the administrator sees
 * it (admin token): the list, and the force-release of a context whose
 * token is lost.
 */
export const ADMIN_CONTEXT_COMMANDS: readonly CliCommand[] = [
  {
    words: ['ctx', 'list'],
    args: [],
    summary: 'list every open context: its devices, objects, open streams and age (admin)',
    options: [],
    run: (inv) => inv.client.contexts(),
    text: (r: ContextList, wide: boolean) =>
      table(
        wide ? ['CTX', 'DEVICES', 'OBJECTS', 'STREAMS', 'AGE', 'AGE-MS'] : ['CTX', 'DEVICES', 'OBJECTS', 'STREAMS', 'AGE'],
        r.contexts.map((c) => {
          const row = [c.ctx, c.devices.join(',') || '-', c.objects, c.streams, ageText(c.age_ms)];
          return wide ? [...row, c.age_ms] : row;
        }),
      ),
  },
  {
    words: ['ctx', 'release'],
    args: ['CTX'],
    summary: 'force-release a context without its token (admin): its groups are answered INVALID, its streams closed',
    options: [],
    run: (inv) => inv.client.releaseContext(id('CTX', inv)),
  },
];

/** ageText() - a duration in ms as `12s`, `3m04s`, `2h05m`, `1d03h`. */
export function ageText(ms: number): string {
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h${String(Math.floor(s / 60) % 60).padStart(2, '0')}m`;
  return `${Math.floor(s / 86400)}d${String(Math.floor(s / 3600) % 24).padStart(2, '0')}h`;
}

/** CONTEXT_COMMANDS - a context and its objects (--ctx, --token). */
export const CONTEXT_COMMANDS: readonly CliCommand[] = [
  {
    words: ['ctx', 'create'],
    args: [],
    summary: 'open a context; prints `export IOPFD_CTX=… IOPFD_TOKEN=…` (for eval)',
    options: [],
    run: async (inv) => {
      const c = await inv.client.createContext();
      return { ctx: c.ctx, token: c.token };
    },
    text: (c: { ctx: number; token: string }) => `export IOPFD_CTX=${c.ctx} IOPFD_TOKEN=${c.token}`,
  },
  {
    words: ['ctx', 'rm'],
    args: [],
    summary: 'release the context: destroy its objects, answer its groups INVALID',
    options: [],
    run: (inv) => inv.context().release(),
  },
  {
    words: ['objects'],
    args: [],
    summary: 'list the objects of the context',
    options: [],
    run: (inv) => inv.context().objects(),
    text: (r: Awaited<ReturnType<IopfdContext['objects']>>) =>
      table(
        ['ID', 'TYPE', 'DETAILS'],
        r.objects.map((o) => [
          o.id,
          o.type,
          Object.entries(o)
            .filter(([k]) => k !== 'id' && k !== 'type')
            .map(([k, v]) => `${k}=${typeof v === 'object' ? JSON.stringify(v) : String(v)}`)
            .join(' '),
        ]),
      ),
  },
  {
    words: ['objects', 'rm'],
    args: ['ID'],
    summary: 'destroy an object (IOMMU_DESTROY)',
    options: [],
    run: (inv) => inv.context().destroyObject(id('ID', inv)),
  },
  {
    words: ['bind'],
    args: ['DEVICE'],
    summary: 'bind a platform device to the context; prints its dev_id',
    options: [],
    run: (inv) => inv.context().bindDevice(inv.args['DEVICE']!),
    text: (r: { dev_id: number }) => String(r.dev_id),
  },
  {
    words: ['ioas', 'create'],
    args: [],
    summary: 'allocate an IO address space; prints its id',
    options: [],
    run: (inv) => inv.context().allocIoas(),
    text: (r: { id: number }) => String(r.id),
  },
  {
    words: ['ioas', 'map'],
    args: ['IOAS'],
    summary: 'map fresh zeroed memory at an IOVA range',
    options: [
      { name: 'iova', arg: 'VA', help: 'first IOVA, 4 KiB aligned (required)' },
      { name: 'length', arg: 'LEN', help: 'bytes, 4 KiB multiple (required)' },
      { name: 'readonly', help: 'not writable' },
    ],
    run: (inv) => inv.context().map(id('IOAS', inv), { ...rangeOf(inv), ...(inv.opts.flag('readonly') ? { write: false } : {}) }),
    text: () => '',
  },
  {
    words: ['ioas', 'unmap'],
    args: ['IOAS'],
    summary: 'unmap an IOVA range; prints the bytes unmapped',
    options: [...RANGE_OPTIONS],
    run: (inv) => inv.context().unmap(id('IOAS', inv), rangeOf(inv)),
    text: (r: { unmapped: string }) => r.unmapped,
  },
  {
    words: ['ioas', 'read'],
    args: ['IOAS'],
    summary: 'read memory mapped in the IOAS (hex)',
    options: [...RANGE_OPTIONS],
    run: (inv) => inv.context().readMemory(id('IOAS', inv), rangeOf(inv)),
    text: (r: { data: string }) => r.data,
  },
  {
    words: ['ioas', 'write'],
    args: ['IOAS'],
    summary: 'write memory mapped in the IOAS',
    options: [
      { name: 'iova', arg: 'VA', help: 'first IOVA (required)' },
      { name: 'data', arg: 'HEX', help: 'the bytes (required)' },
    ],
    run: (inv) => inv.context().writeMemory(id('IOAS', inv), [{ iova: iovaOf(inv), data: inv.opts.need('data') }]),
  },
  {
    words: ['hwpt', 'create'],
    args: [],
    summary: 'allocate a paging hwpt on an IOAS, or a nested vtd_s1 hwpt on a nest parent; prints its id',
    options: [
      { name: 'dev-id', arg: 'N', help: 'the device (required)' },
      { name: 'pt-id', arg: 'N', help: 'the IOAS, or the nest-parent hwpt (required)' },
      { name: 'nest-parent', help: 'flag NEST_PARENT' },
      { name: 'fault-id', arg: 'N', help: 'its fault queue (sets FAULT_ID_VALID)' },
      { name: 'pasid-capable', help: 'flag PASID (attachable at a PASID)' },
      { name: 'flags', arg: 'N', help: 'more flag bits, or-ed in' },
      { name: 'vtd-s1', arg: 'GPA', help: "nested: the guest's stage-1 root table" },
      { name: 'addr-width', arg: '48|57', help: 'of the stage-1 table (default 48)' },
      { name: 'ste', arg: 'W0,W1', help: 'nested on a vIOMMU (--pt-id VIOMMU): the guest STE words (arm_smmuv3)' },
    ],
    run: (inv) => {
      const o = inv.opts;
      const fault = o.u32('fault-id', 1);
      const root = o.u64('vtd-s1');
      const ste = o.str('ste');
      if (ste !== undefined && root !== undefined) throw new UsageError('--ste and --vtd-s1 exclude each other');
      const width = o.oneOf('addr-width', ['48', '57'] as const) ?? '48';
      const flags =
        (o.u32('flags') ?? 0) |
        (o.flag('nest-parent') ? HWPT_FLAGS.NEST_PARENT : 0) |
        (fault === undefined ? 0 : HWPT_FLAGS.FAULT_ID_VALID) |
        (o.flag('pasid-capable') ? HWPT_FLAGS.PASID : 0);
      const body: HwptAllocRequest = {
        dev_id: o.u32('dev-id', 1) ?? parseU32('--dev-id', o.need('dev-id')),
        pt_id: o.u32('pt-id', 1) ?? parseU32('--pt-id', o.need('pt-id')),
        flags: flags >>> 0,
        ...(fault === undefined ? {} : { fault_id: fault }),
        ...(root === undefined ? {} : { data_type: 'vtd_s1' as const, data: { flags: 0, pgtbl_addr: root, addr_width: Number(width) as 48 | 57 } }),
        ...(ste === undefined ? {} : { data_type: 'arm_smmuv3' as const, data: { ste: twoWords('--ste', ste) } }),
      };
      return inv.context().allocHwpt(body);
    },
    text: (r: { id: number }) => String(r.id),
  },
  {
    words: ['hwpt', 'invalidate'],
    args: ['HWPT'],
    summary: 'invalidate stage-1 IOTLB entries of a nested hwpt',
    options: [
      { name: 'addr', arg: 'VA', help: 'first page (required)' },
      { name: 'npages', arg: 'N', help: 'pages (default 1)' },
    ],
    run: (inv) => inv.context().invalidate(id('HWPT', inv), [{ addr: inv.opts.u64('addr') ?? inv.opts.need('addr'), npages: inv.opts.u32('npages') ?? 1 }]),
    text: (r: { done: number }) => `${r.done} entries done`,
  },
  {
    words: ['fault', 'create'],
    args: [],
    summary: 'allocate a fault queue; prints its id and stream path',
    options: [
      { name: 'depth', arg: 'N', help: 'groups queued at most (default 0: unbounded)' },
      { name: 'overflow', arg: 'success|invalid', help: 'answer to a group over the depth (default success)' },
      { name: 'response-timeout-ms', arg: 'MS', help: 'answer INVALID after MS unanswered (default 0: never)' },
    ],
    run: (inv) => {
      const o = inv.opts;
      const depth = o.u32('depth');
      const overflow = o.oneOf('overflow', ['success', 'invalid'] as const);
      const timeout = o.u32('response-timeout-ms');
      const body: FaultAllocRequest = {
        ...(depth === undefined ? {} : { depth }),
        ...(overflow === undefined ? {} : { overflow }),
        ...(timeout === undefined ? {} : { response_timeout_ms: timeout }),
      };
      return inv.context().allocFault(body);
    },
    text: (r: { id: number; stream: string }) => `${r.id} ${r.stream}`,
  },
  {
    words: ['fault', 'show'],
    args: ['ID'],
    summary: 'the state of a fault queue: queued, outstanding, connections, counters',
    options: [],
    run: (inv) => inv.context().faultStatus(id('ID', inv)),
    text: (s: Awaited<ReturnType<IopfdContext['faultStatus']>>) =>
      `fault ${s.id}: ${s.queued} queued, ${s.outstanding} outstanding, ${s.connections} connections\n` +
      table(['COUNTER', 'VALUE'], Object.entries(s.counters)),
  },
  ...(['attach', 'replace'] as const).map(
    (verb): CliCommand => ({
      words: [verb],
      args: ['DEV_ID'],
      summary: verb === 'attach' ? 'attach a device (its RID, or a PASID) to an hwpt' : "replace a device's attachment (the old one's groups are answered INVALID)",
      options: [
        { name: 'pt-id', arg: 'N', help: 'the hwpt (required)' },
        { name: 'pasid', arg: 'N', help: 'at this PASID (default: the RID)' },
      ],
      run: (inv) => {
        const body = { pt_id: inv.opts.u32('pt-id', 1) ?? parseU32('--pt-id', inv.opts.need('pt-id')), ...inv.opts.pasid() };
        return verb === 'attach' ? inv.context().attach(id('DEV_ID', inv), body) : inv.context().replace(id('DEV_ID', inv), body);
      },
      text: () => '',
    }),
  ),
  {
    words: ['detach'],
    args: ['DEV_ID'],
    summary: 'detach a device (its RID, or a PASID); its groups are answered INVALID',
    options: [{ name: 'pasid', arg: 'N', help: 'at this PASID (default: the RID)' }],
    run: (inv) => inv.context().detach(id('DEV_ID', inv), inv.opts.pasid()),
    text: () => '',
  },
];

