// The traffic generator against a real daemon with the VMM handler serving
// the faults: every pattern, reads and writes, several devices and PASIDs;
// completions by status agree with the devices' own response logs. Then the
// traffic process itself.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { TrafficGenerator, type TrafficStats } from '../../clients/traffic/index.js';
import { Vmm } from '../../clients/vmm/index.js';
import { ADMIN_TOKEN, program, startDaemon, type TestDaemon } from './helpers.js';

const run = promisify(execFile);
let d: TestDaemon;
before(async () => (d = await startDaemon()));
after(() => d.close());

test('traffic: patterns, mixed access, two devices and PASIDs; the counts match the response logs', async () => {
  await d.client.addDevice({ name: 'tr0' });
  await d.client.addDevice({ name: 'tr1' });
  // The guest serves the first 192 KiB of the 256 KiB the traffic uses.
  const allow = [{ start: 0x10000000n, length: 0x30000n, write: true }];
  const vmm = await Vmm.start({ url: d.url, adminToken: ADMIN_TOKEN, devices: ['tr0', 'tr1'], pasids: [1, 2], allow });
  const gen = new TrafficGenerator({
    client: d.client,
    targets: [
      { device: 'tr0', pasid: 1 },
      { device: 'tr1', pasid: 2 },
    ],
    patterns: ['sequential', 'strided', 'random'],
    access: 'mixed',
    span: 0x40000n,
    size: 256,
    count: 120,
    concurrency: 6,
  });
  const s = await gen.run();
  await vmm.stop();
  assert.equal(s.dmas, 120);
  assert.equal(
    Object.values(s.byStatus).reduce((a, b) => a + b, 0),
    120,
  );
  assert.equal(s.byStatus.timeout, 0);
  assert.ok(s.byStatus.ok > 0 && s.byStatus.invalid > 0, JSON.stringify(s.byStatus));
  assert.equal(s.byStatus.ok + s.byStatus.invalid, 120);
  assert.equal(s.bytes, s.byStatus.ok * 256);
  assert.equal(s.latencyMs.count, 120);
  assert.ok(s.latencyMs.p50 > 0 && s.latencyMs.p50 <= s.latencyMs.p99 && s.latencyMs.p99 <= s.latencyMs.max);
  // One single-page group per page request: the devices got exactly one response each.
  const logs = [...(await d.client.responses('tr0')).responses, ...(await d.client.responses('tr1')).responses];
  assert.equal(logs.length, s.pageRequests);
  assert.equal(logs.filter((r) => r.code === 'invalid').length, s.byStatus.invalid);
  assert.deepEqual([...new Set(logs.map((r) => r.pasid))].sort(), [1, 2]);
});

test('traffic: sequential slots pack pages; large DMAs span whole pages', async () => {
  await d.client.addDevice({ name: 'tr2' });
  const vmm = await Vmm.start({ url: d.url, adminToken: ADMIN_TOKEN, devices: ['tr2'], allow: [{ start: 0x10000000n, length: 0x100000n, write: true }] });
  const small = await new TrafficGenerator({ client: d.client, targets: [{ device: 'tr2' }], size: 1024, count: 8, concurrency: 1 }).run();
  assert.deepEqual([small.byStatus.ok, small.pageRequests], [8, 2], '4 DMAs per page, 2 pages faulted');
  const big = await new TrafficGenerator({
    client: d.client,
    targets: [{ device: 'tr2' }],
    base: 0x10080000n,
    span: 0x10000n,
    size: 0x2000,
    access: 'write',
    count: 4,
    concurrency: 2,
  }).run();
  assert.deepEqual([big.byStatus.ok, big.pageRequests, big.bytes], [4, 8, 4 * 0x2000]);
  await vmm.stop();
  assert.throws(() => new TrafficGenerator({ client: d.client, targets: [], count: 1 }), RangeError);
  assert.throws(() => new TrafficGenerator({ client: d.client, targets: [{ device: 'tr2' }], stride: 100n }), RangeError);
});

test('traffic process: JSON statistics; exit 1 with errno on a refusal, 2 on bad usage, 3 without a daemon', async () => {
  const main = program('clients/traffic/main.js');
  const env = { ...process.env, IOPFD_URL: d.url, IOPFD_ADMIN_TOKEN: ADMIN_TOKEN };
  // Nothing attached: the IOMMU answers every DMA INVALID; the run warns and fails.
  const r = await run(process.execPath, [main, '--device', 'nic0', '--count', '10', '--pattern', 'random', '--json'], { env }).then(
    () => assert.fail('a run where every DMA failed exits non-zero'),
    (e: { code: number; stdout: string; stderr: string }) => e,
  );
  assert.equal(r.code, 1);
  const s = JSON.parse(r.stdout) as TrafficStats & { event: string };
  assert.equal(s.event, 'stats');
  assert.equal(s.dmas, 10);
  assert.equal(s.byStatus.invalid, 10, 'nothing attached: the IOMMU answers INVALID');
  assert.match(r.stderr, /^traffic: warning: every DMA failed \(10 invalid\)\n {2}invalid: .*needs --pasid N\n$/);
  // A device served only at a PASID: without --pasid every DMA fails; with it, they succeed (exit 0).
  await d.client.addDevice({ name: 'trp' });
  const vmm = await Vmm.start({
    url: d.url,
    adminToken: ADMIN_TOKEN,
    devices: ['trp'],
    pasids: [5],
    allow: [{ start: 0x10000000n, length: 0x100000n, write: true }],
  });
  const noPasid = await run(process.execPath, [main, '--device', 'trp', '--count', '4'], { env }).then(
    () => ({ code: 0, stderr: '' }),
    (e: { code: number; stderr: string }) => e,
  );
  assert.equal(noPasid.code, 1);
  assert.match(noPasid.stderr, /every DMA failed \(4 invalid\).*\n.*--pasid N/);
  const withPasid = await run(process.execPath, [main, '--device', 'trp', '--pasid', '5', '--count', '4', '--json'], { env });
  assert.equal((JSON.parse(withPasid.stdout) as TrafficStats).byStatus.ok, 4);
  assert.equal(withPasid.stderr, '');
  await vmm.stop();

  const fail = async (args: string[], envOver: Record<string, string> = {}): Promise<{ code: number; stderr: string }> =>
    run(process.execPath, [main, ...args], { env: { ...env, ...envOver } }).then(
      () => ({ code: 0, stderr: '' }),
      (e: { code: number; stderr: string }) => ({ code: e.code, stderr: e.stderr }),
    );
  const refused = await fail(['--device', 'nope', '--count', '1']);
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /^traffic: ENOENT: /);
  assert.equal((await fail(['--device', 'nic0', '--size', '0'])).code, 2);
  assert.equal((await fail(['--device', 'nic0', '--stride', '0x10'])).code, 2);
  assert.equal((await fail([])).code, 2);
  assert.equal((await fail(['--device', 'nic0', '--count', '1'], { IOPFD_URL: 'http://127.0.0.1:1' })).code, 3);
  assert.match((await run(process.execPath, [main, '--help'])).stdout, /--pattern/);
});
