import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { z } from 'zod';
import {
  COMMANDS,
  commandByName,
  formatZodError,
  zAddDeviceBody,
  zFaultAllocBody,
  zHwptAllocBody,
  zIoasMapBody,
  zPlatformFile,
  zTrafficBody,
} from '../../protocol/schemas.js';
import { ERRNO_HTTP } from '../../protocol/errno.js';
import { openApiDocument } from '../../protocol/json-schema.js';

type Parts = { params?: unknown; query?: unknown; body?: unknown; response?: unknown };

const device = {
  name: 'dev0',
  bdf: '0000:00:03.0',
  iommu: 'dmar0',
  caps: { pasid_bits: 20, pri: true, pri_outstanding: 512, ats: true, is_vf: false, prg_response_needs_pasid: true },
  bound: false,
  pri_enabled: true,
  pri_status: { response_failure: false, stopped: false },
  ctx: null,
};

/** A valid example of every part of every command. */
const EXAMPLES: Record<string, Parts> = {
  'platform.get': { response: { iommus: [{ name: 'dmar0', model: 'vtd', prq_depth: 2048 }], devices: [device] } },
  'platform.device.add': { body: { name: 'dev2', iommu: 'dmar0', bdf: '00:05.0', caps: { pasid_bits: 0, pri: false } }, response: device },
  'platform.device.remove': { params: { name: 'dev0' } },
  'platform.device.dma': {
    params: { name: 'dev0' },
    body: { pasid: 1, iova: '0x1000', length: '0x4', access: 'write', data: 'deadbeef', priv: false, exec: false, timeout_ms: 500 },
    response: { status: 'ok', page_requests: 1, retries: 1, data: 'deadbeef' },
  },
  'platform.device.page-request': { params: { name: 'dev0' }, body: { pasid: 1, grpid: 511, addr: '0x2000', perm: 3, last: true }, response: {} },
  'platform.device.responses': {
    params: { name: 'dev0' },
    query: { since: '3' },
    response: {
      responses: [
        { pasid: 1, grpid: 2, code: 'success', seq: 4 },
        { grpid: 3, code: 'failure', seq: 5 },
      ],
    },
  },
  'platform.device.pri-reset': { params: { name: 'dev0' }, body: {} },
  'platform.device.walk': {
    params: { name: 'dev0' },
    query: { pasid: '1', addr: '0x7000', perm: '2' },
    response: {
      device: 'dev0',
      pasid: 1,
      addr: '0x7000',
      perm: 2,
      context: 'nested',
      s1_root: '0x10000',
      addr_width: 48,
      stage1: [
        { level: 4, entry_gpa: '0x10000', s2: { gpa: '0x10000', hpa: '0x3000', read: true, write: true }, entry: '0x11007' },
        { level: 3, entry_gpa: '0x11000', s2: { gpa: '0x11000', read: false, write: false } },
      ],
      result: { kind: 'fault', stage: 2, reason: 'table entry not readable in stage 2', level: 3 },
    },
  },
  'platform.observe': {
    query: { events: '1' },
    response: {
      events: [{ t: 1, kind: 'answered', device: 'dev0', pasid: 1, grpid: 3, addr: '0x7000', perm: 1, ctx: 1, queue: 3, code: 'success', latency_ms: 0.4 }],
    },
  },
  'platform.sva.bind': {
    params: { name: 'dev0' },
    body: { pasid: 7, vmas: [{ start: '0x400000', length: '0x10000', write: false }] },
    response: {},
  },
  'platform.sva.unbind': { params: { name: 'dev0', pasid: '7' } },
  'platform.traffic.start': {
    params: { name: 'dev0' },
    body: { count: 1000, pages_per_group: 2, in_flight: 64, pasid: 1, base: '0x200000000', perm: 1 },
    response: {},
  },
  'platform.traffic.status': {
    params: { name: 'dev0' },
    response: {
      running: false,
      sent: 1000,
      answered: 1000,
      by_code: { success: 1000, invalid: 0, failure: 0 },
      elapsed_ms: 120,
      latency_us: { p50: 40, p99: 300, max: 900 },
    },
  },
  'platform.traffic.stop': {
    params: { name: 'dev0' },
    response: {
      running: true,
      sent: 70,
      answered: 6,
      by_code: { success: 6, invalid: 0, failure: 0 },
      elapsed_ms: 3,
      latency_us: { p50: 40, p99: 300, max: 900 },
    },
  },
  'platform.device.get': { params: { name: 'dev0' }, response: { ...device, bound: true, ctx: 3 } },
  'platform.contexts.list': {
    response: {
      contexts: [
        { ctx: 3, devices: ['dev0'], objects: 4, streams: 1, age_ms: 5000000000 },
        { ctx: 4, devices: [], objects: 0, streams: 0, age_ms: 0 },
      ],
    },
  },
  'platform.contexts.release': { params: { ctx: '3' } },
  'context.create': { body: {}, response: { ctx: 1, token: 'abcdef' } },
  'context.destroy': { params: { ctx: '1' } },
  'object.list': {
    params: { ctx: '1' },
    response: {
      objects: [
        { id: 1, type: 'device', name: 'dev0' },
        { id: 2, type: 'ioas' },
        { id: 3, type: 'fault', depth: 0 },
      ],
    },
  },
  'object.destroy': { params: { ctx: '1', id: '2' } },
  'device.bind': { params: { ctx: '1' }, body: { name: 'dev0' }, response: { dev_id: 1 } },
  'ioas.alloc': { params: { ctx: '1' }, body: {}, response: { id: 2 } },
  'ioas.map': { params: { ctx: '1', id: '2' }, body: { iova: '0x100000', length: '0x2000', read: true, write: false }, response: {} },
  'ioas.unmap': { params: { ctx: '1', id: '2' }, body: { iova: '0x100000', length: '0x2000' }, response: { unmapped: '0x2000' } },
  'ioas.memory.write': {
    params: { ctx: '1', id: '2' },
    body: {
      writes: [
        { iova: '0x100000', data: '00ff' },
        { iova: '0x100010', data: '' },
      ],
    },
  },
  'ioas.memory.read': { params: { ctx: '1', id: '2' }, body: { iova: '0x100000', length: '0x2' }, response: { data: '00ff' } },
  'hwpt.alloc': {
    params: { ctx: '1' },
    body: {
      dev_id: 1,
      pt_id: 4,
      flags: 12,
      data_type: 'vtd_s1',
      data: { flags: 0, pgtbl_addr: '0x5000', addr_width: 48 },
      fault_id: 3,
      __reserved: 0,
    },
    response: { id: 5 },
  },
  'hwpt.invalidate': { params: { ctx: '1', id: '5' }, body: { entries: [{ addr: '0x7000', npages: 1, flags: 0 }] }, response: { done: 1 } },
  'device.attach': { params: { ctx: '1', dev_id: '1' }, body: { pt_id: 5, pasid: 1 }, response: {} },
  'device.replace': { params: { ctx: '1', dev_id: '1' }, body: { pt_id: 6 }, response: {} },
  'device.detach': { params: { ctx: '1', dev_id: '1' }, body: { pasid: 1 }, response: {} },
  'fault.alloc': {
    params: { ctx: '1' },
    body: { flags: 0, depth: 16, overflow: 'invalid', response_timeout_ms: 1000 },
    response: { id: 3, stream: '/v1/contexts/1/faults/3/stream' },
  },
  'fault.get': {
    params: { ctx: '1', id: '3' },
    response: { id: 3, queued: 0, outstanding: 2, connections: 1, counters: { reported: 2, delivered: 2 } },
  },
  'viommu.alloc': { params: { ctx: '1' }, body: { type: 'arm_smmuv3', dev_id: 1, hwpt_id: 4, flags: 0 }, response: { id: 6 } },
  'viommu.invalidate': {
    params: { ctx: '1', id: '6' },
    body: {
      data_type: 'arm_smmuv3',
      commands: [
        ['0x30', '0x0'],
        ['0x9900000005', '0x0'],
      ],
    },
    response: { done: 2 },
  },
  'vdevice.alloc': { params: { ctx: '1' }, body: { viommu_id: 6, dev_id: 1, virt_id: '0x99' }, response: { id: 7 } },
  'veventq.alloc': {
    params: { ctx: '1' },
    body: { viommu_id: 6, type: 'arm_smmuv3', depth: 64, flags: 0, __reserved: 0 },
    response: { id: 8, stream: '/v1/contexts/1/veventq/8/stream' },
  },
  'veventq.get': { params: { ctx: '1', id: '8' }, response: { id: 8, queued: 1, depth: 64, sequence: 3, lost: 0, connections: 1 } },
  healthz: { response: { status: 'ok' } },
};

const PARTS = ['params', 'query', 'body', 'response'] as const;

test('schemas: command names are unique and every command has examples', () => {
  assert.equal(new Set(COMMANDS.map((c) => c.name)).size, COMMANDS.length);
  assert.equal(new Set(COMMANDS.map((c) => `${c.method} ${c.url}`)).size, COMMANDS.length);
  assert.deepEqual(COMMANDS.map((c) => c.name).sort(), Object.keys(EXAMPLES).sort());
});

test('schemas: every part of every command accepts its example', () => {
  for (const c of COMMANDS) {
    for (const part of PARTS) {
      const schema = c[part];
      const example = EXAMPLES[c.name]![part];
      assert.equal(schema === undefined, example === undefined, `${c.name}.${part}: schema and example go together`);
      if (!schema) continue;
      const r = schema.safeParse(example);
      assert.ok(r.success, `${c.name}.${part}: ${r.success ? '' : formatZodError(r.error, part)}`);
    }
  }
});

test('schemas: every part of every command refuses an unknown key', () => {
  for (const c of COMMANDS) {
    for (const part of PARTS) {
      const schema = c[part];
      const example = EXAMPLES[c.name]![part];
      if (!schema) continue;
      const r = schema.safeParse({ ...(example as object), zz_unknown: 1 });
      assert.equal(r.success, false, `${c.name}.${part}`);
      assert.match(formatZodError(r.error!, part), new RegExp(`^${part}: unknown key "zz_unknown"$`), `${c.name}.${part}`);
    }
  }
});

test('schemas: a JSON number where a u64 goes is refused with a clear message', () => {
  const r = commandByName('ioas.map').body!.safeParse({ iova: 4096, length: '0x1000' });
  assert.equal(r.success, false);
  assert.equal(formatZodError(r.error!), 'body.iova: expected a "0x…" u64 string');
  const w = commandByName('ioas.memory.write').body!.safeParse({ writes: [{ iova: '0x1000', data: 'abc' }] });
  assert.match(formatZodError(w.error!), /^body\.writes\[0\]\.data: expected a hex data string/);
  const m = commandByName('device.bind').body!.safeParse({});
  assert.equal(formatZodError(m.error!), 'body.name: required');
});

test('schemas: nonzero flags and __reserved pass the schema (the core says EOPNOTSUPP)', () => {
  assert.equal(zHwptAllocBody.safeParse({ dev_id: 1, pt_id: 2, flags: 0x80000002, __reserved: 5 }).success, true);
  assert.equal(zFaultAllocBody.safeParse({ flags: 1 }).success, true);
  assert.equal(commandByName('hwpt.invalidate').body!.safeParse({ entries: [{ addr: '0x0', npages: 1, flags: 9 }] }).success, true);
});

test('schemas: defaults of the contract are applied on parse', () => {
  assert.deepEqual(zAddDeviceBody.parse({ name: 'd' }).caps, {
    pasid_bits: 20,
    pri: true,
    pri_outstanding: 512,
    ats: true,
    is_vf: false,
    prg_response_needs_pasid: true,
  });
  assert.deepEqual(zAddDeviceBody.parse({ name: 'd', caps: { pasid_bits: 0 } }).caps.pasid_bits, 0);
  assert.deepEqual(zFaultAllocBody.parse({}), { flags: 0, depth: 0, overflow: 'success', response_timeout_ms: 0 });
  assert.deepEqual(zTrafficBody.parse({ count: 5 }), { count: 5, pages_per_group: 1, base: 0x100000000n, perm: 1 });
  assert.deepEqual(zIoasMapBody.parse({ iova: '0x1000', length: '0x1000' }), { iova: 0x1000n, length: 0x1000n, read: true, write: true });
  assert.deepEqual(zHwptAllocBody.parse({ dev_id: 1, pt_id: 2 }), { dev_id: 1, pt_id: 2, flags: 0, __reserved: 0 });
  const dma = commandByName('platform.device.dma').body!.parse({ iova: '0x0', length: '0x1', access: 'read' });
  assert.deepEqual(dma, { iova: 0n, length: 1n, access: 'read', priv: false, exec: false, timeout_ms: 10000 });
});

test('schemas: contract ranges', () => {
  const caps = (c: object) => zAddDeviceBody.safeParse({ name: 'd', caps: c }).success;
  assert.equal(caps({ pasid_bits: 21 }), false);
  assert.equal(caps({ pri_outstanding: 0 }), false);
  assert.equal(caps({ pri_outstanding: 513 }), false);
  assert.equal(caps({ pri: 1 }), false);
  const hw = (w: number) =>
    zHwptAllocBody.safeParse({ dev_id: 1, pt_id: 2, data_type: 'vtd_s1', data: { flags: 0, pgtbl_addr: '0x0', addr_width: w } }).success;
  assert.equal(hw(57), true);
  assert.equal(hw(39), false);
  assert.equal(commandByName('platform.device.page-request').body!.safeParse({ grpid: 512, addr: '0x0', perm: 1, last: true }).success, false);
  assert.equal(zFaultAllocBody.safeParse({ overflow: 'failure' }).success, false);
  assert.equal(commandByName('object.destroy').params!.safeParse({ ctx: '1', id: 'abc' }).success, false);
});

test('schemas: errnos are known, map to statuses, and include the generic ones', () => {
  for (const c of COMMANDS) {
    for (const e of c.errnos) assert.ok(e in ERRNO_HTTP, `${c.name}: ${e}`);
    assert.ok(c.errnos.includes('EIO'), c.name);
    assert.equal(c.errnos.includes('EACCES'), c.auth !== 'none', c.name);
    assert.equal(c.errnos.includes('EINVAL'), Boolean(c.params || c.query || c.body), c.name);
    assert.equal(c.status === 204, c.response === undefined, `${c.name}: 204 iff no response body`);
    if (c.url.startsWith('/v1/platform')) assert.equal(c.auth, 'admin', c.name);
    if (c.url.startsWith('/v1/contexts/:ctx')) assert.equal(c.auth, 'ctx', c.name);
    for (const p of c.url.match(/:\w+/g) ?? []) assert.ok(c.params, `${c.name} has ${p} but no params schema`);
  }
});

test('schemas: the routes where the kernel answers EIO for bad input say so, and OpenAPI lists that EIO under 400 (elsewhere only under 500)', () => {
  assert.deepEqual(
    COMMANDS.filter((c) => c.inputEio !== undefined).map((c) => c.name),
    ['hwpt.alloc', 'viommu.invalidate'],
  );
  const doc = openApiDocument() as { paths: Record<string, Record<string, { operationId?: string; responses: Record<string, { description: string }> }>> };
  const ops = Object.values(doc.paths).flatMap((p) => Object.values(p));
  for (const c of COMMANDS) {
    const op = ops.find((o) => o.operationId === c.name);
    assert.ok(op, c.name);
    assert.match(op.responses['500']?.description ?? '', /EIO/, c.name);
    assert.equal(/\bEIO\b/.test(op.responses['400']?.description ?? ''), c.inputEio !== undefined, c.name);
  }
});

test('schemas: commandByName finds commands and throws on unknown names', () => {
  assert.equal(commandByName('ioas.map').url, '/v1/contexts/:ctx/ioas/:id/map');
  assert.throws(() => commandByName('nope'), /no such command/);
});

test('schemas: platform file', () => {
  const f = zPlatformFile.parse({ iommus: [{ name: 'dmar0', model: 'vtd', prq_depth: 64 }], devices: [{ name: 'dev0', iommu: 'dmar0' }] });
  assert.equal(f.devices[0]!.caps.pri_outstanding, 512);
  assert.equal(zPlatformFile.safeParse({ iommus: [], devices: [] }).success, false);
  // GET /v1/platform's output is a platform file: the read-only state is ignored.
  const back = zPlatformFile.parse({ iommus: [{ name: 'dmar0', model: 'vtd', prq_depth: 64 }], devices: [{ ...device, bound: true, ctx: 2 }] });
  assert.deepEqual(back.devices[0], { name: 'dev0', bdf: '0000:00:03.0', iommu: 'dmar0', caps: device.caps });
  // ... but still checked, and anything else is refused.
  const bad = zPlatformFile.safeParse({ iommus: [{ name: 'dmar0', model: 'vtd', prq_depth: 64 }], devices: [{ ...device, ctx: 'two' }] });
  assert.equal(bad.success, false);
  const unknown = zPlatformFile.safeParse({ iommus: [{ name: 'dmar0', model: 'vtd', prq_depth: 64 }], devices: [{ ...device, colour: 'red' }] });
  assert.match(formatZodError(unknown.error!, 'platform'), /unknown key "colour"/);
});

test('schemas: formatZodError joins issues on one line with paths', () => {
  const r = zHwptAllocBody.safeParse({ dev_id: -1, pt_id: '2', data: { flags: 0, pgtbl_addr: 1, addr_width: 48 } });
  const msg = formatZodError((r as z.ZodSafeParseError<unknown>).error);
  assert.ok(!msg.includes('\n'));
  assert.match(msg, /body\.dev_id: expected a u32 JSON number/);
  assert.match(msg, /body\.pt_id: expected a u32 JSON number/);
  assert.match(msg, /body\.data\.pgtbl_addr: expected a "0x…" u64 string/);
});
