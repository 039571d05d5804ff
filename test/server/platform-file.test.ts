// --platform FILE: the template examples/platform.json loads, and the output
// of GET /v1/platform is a platform file (its read-only state ignored): a
// daemon started from it has the same platform.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadPlatformFile } from '../../server/config.js';
import { startServer, type Json } from './helpers.js';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const PLATFORM = '/v1/platform';

/** The platform with each device's state as a fresh daemon has it. */
function fresh(p: Json): Json {
  // PRI is enabled at probe where the IOMMU's driver can (VT-d: ATS, PRI and,
  // with PASID, "PRG Response PASID Required"); no PRI was stopped here.
  return {
    kernel: p.kernel,
    iommus: p.iommus,
    devices: p.devices.map((d: Json) => ({ ...d, bound: false, ctx: null, pri_status: { response_failure: false, stopped: false } })),
  };
}

test('examples/platform.json: a daemon starts with its IOMMUs and devices, defaults applied', async () => {
  const server = await startServer({ platform: loadPlatformFile(join(repo, 'examples', 'platform.json')) });
  try {
    const p = await server.api.ok('platform.get', 'GET', PLATFORM);
    assert.deepEqual(p.iommus.map((i: Json) => [i.name, i.model]), [['dmar0', 'vtd'], ['smmu0', 'smmuv3']]);
    assert.deepEqual(p.devices.map((d: Json) => [d.name, d.iommu, d.bdf]), [
      ['nic0', 'dmar0', '00:02.0'],
      ['accel0', 'dmar0', '00:03.0'],
      ['gpu0', 'smmu0', '01:00.0'],
      ['vf0', 'dmar0', '00:04.1'],
      ['legacy0', 'dmar0', '00:05.0'],
    ]);
    const gpu = p.devices.find((d: Json) => d.name === 'gpu0');
    // Behind the SMMUv3 model a device also has the stall cap (default true).
    assert.deepEqual(gpu.caps, { pasid_bits: 16, pri: true, pri_outstanding: 64, ats: true, is_vf: false, prg_response_needs_pasid: true, stall: true });
  } finally {
    await server.close();
  }
});

test('GET /v1/platform → file → new daemon: the same platform (bound devices, hot-plugged ones, PRI state)', async () => {
  const a = await startServer({ platform: loadPlatformFile(join(repo, 'examples', 'platform.json')) });
  let saved: Json;
  try {
    await a.api.ok('platform.device.add', 'POST', `${PLATFORM}/devices`, { name: 'hp0', iommu: 'smmu0', caps: { pasid_bits: 5, pri_outstanding: 7, ats: false } });
    // Some state the file must not carry: a bound device (ctx), a device whose PRI stopped.
    const { ctx, token } = await a.api.ok('context.create', 'POST', '/v1/contexts');
    await a.api.withToken(token).ok('device.bind', 'POST', `/v1/contexts/${ctx}/devices`, { name: 'gpu0' });
    saved = await a.api.ok('platform.get', 'GET', PLATFORM);
    assert.equal(saved.devices.find((d: Json) => d.name === 'gpu0').ctx, ctx);
    assert.equal(saved.devices.find((d: Json) => d.name === 'gpu0').bound, true);
  } finally {
    await a.close();
  }
  const dir = mkdtempSync(join(tmpdir(), 'iopfd-platform-'));
  const file = join(dir, 'platform.json');
  writeFileSync(file, JSON.stringify(saved));
  const b = await startServer({ platform: loadPlatformFile(file) });
  try {
    const again = await b.api.ok('platform.get', 'GET', PLATFORM);
    assert.deepEqual(again, fresh(saved));
    assert.ok(again.devices.some((d: Json) => d.name === 'hp0'));
    // And once more: a file written from the second daemon gives the same.
    writeFileSync(file, JSON.stringify(again));
    assert.deepEqual(loadPlatformFile(file), loadPlatformFile(file));
    const c = await startServer({ platform: loadPlatformFile(file) });
    try {
      assert.deepEqual(await c.api.ok('platform.get', 'GET', PLATFORM), again);
    } finally {
      await c.close();
    }
  } finally {
    await b.close();
  }
});
