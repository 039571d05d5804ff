// Daemon configuration: flags, IOPFD_* variables, the loopback rule, the
// platform file; and the process's exit status for bad configurations.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError, isLoopback, loadPlatformFile, parseConfig } from '../../server/config.js';
import { KERNEL_PROFILES } from '../../core/index.js';
import { startServer } from './helpers.js';

const MAIN = fileURLToPath(new URL('../../server/main.js', import.meta.url));

test('config: defaults', () => {
  const c = parseConfig([], {});
  assert.deepEqual(c, {
    host: '127.0.0.1',
    port: 8080,
    adminToken: undefined,
    platformFile: undefined,
    logLevel: 'info',
    limits: {},
    profile: KERNEL_PROFILES.latest,
    bodyLimit: 1 << 20,
    maxFrame: 1 << 20,
    errorFramesPerSecond: 20,
    heartbeatMs: 15000,
    maxConnections: 1024,
    help: false,
    version: false,
  });
});

test('config: flags, both spellings, win over IOPFD_* variables', () => {
  const env = { IOPFD_PORT: '9000', IOPFD_ADMIN_TOKEN: 'from-env', IOPFD_MAX_STREAMS: '3', IOPFD_KERNEL: 'v6.11', HOME: '/x' };
  const c = parseConfig(['--port=0', '--log-level', 'debug', '--max-contexts', '5', '--kernel', 'v6.15', '--heartbeat-ms=250'], env);
  assert.equal(c.port, 0);
  assert.equal(c.adminToken, 'from-env');
  assert.equal(c.logLevel, 'debug');
  assert.deepEqual(c.limits, { maxContexts: 5, maxStreamsPerFault: 3 });
  assert.equal(c.profile.name, 'v6.15');
  assert.equal(c.profile.replaceDrainsNew, true);
  assert.equal(c.heartbeatMs, 250);
  assert.equal(parseConfig([], { IOPFD_KERNEL: 'v6.11' }).profile.vtdNoPasidInvalid, true);
  assert.equal(parseConfig(['--help'], {}).help, true);
  assert.equal(parseConfig(['--version'], {}).version, true);
  assert.equal(parseConfig(['--version'], { IOPFD_VERSION: 'x' }).version, true);
  assert.equal(parseConfig([], { IOPFD_VERSION: 'true' }).version, false, 'only the flag');
});

test('config: bad values are refused with the flag named', () => {
  const bad: Array<[string[], Record<string, string>, RegExp]> = [
    [['--port', '70000'], {}, /--port/],
    [['--port', 'x'], {}, /--port/],
    [[], { IOPFD_PORT: '-1' }, /IOPFD_PORT/],
    [['--log-level', 'loud'], {}, /--log-level/],
    [['--max-objects', '0'], {}, /--max-objects/],
    [['--kernel', 'v5.0'], {}, /--kernel.*latest/],
    [['--quirk', 'replace-drains-new'], {}, /unknown argument/],
    [['--colour', 'red'], {}, /unknown argument "--colour"/],
    [['--port'], {}, /--port needs a value/],
    [['stray'], {}, /unknown argument/],
  ];
  for (const [argv, env, re] of bad) assert.throws(() => parseConfig(argv, env), (e: unknown) => e instanceof ConfigError && re.test(e.message), argv.join(' '));
});

test('config: beyond loopback only with an admin token', () => {
  for (const h of ['127.0.0.1', '127.1.2.3', 'localhost', '::1', '[::1]', '::ffff:127.0.0.1']) assert.ok(isLoopback(h), h);
  for (const h of ['0.0.0.0', '::', '10.0.0.1', 'example.com']) assert.ok(!isLoopback(h), h);
  assert.throws(() => parseConfig(['--host', '0.0.0.0'], {}), /refusing to listen on 0\.0\.0\.0 without an admin token/);
  assert.equal(parseConfig(['--host', '0.0.0.0'], { IOPFD_ADMIN_TOKEN: 't' }).host, '0.0.0.0');
});

test('config: --platform FILE is validated with the protocol schema and used', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'iopfd-'));
  const good = join(dir, 'good.json');
  writeFileSync(
    good,
    JSON.stringify({
      iommus: [{ name: 'smmu0', model: 'smmuv3', prq_depth: 64 }],
      devices: [{ name: 'gpu0', bdf: '00:05.0', caps: { pasid_bits: 8 } }],
    }),
  );
  const desc = loadPlatformFile(good);
  const server = await startServer({ platform: desc });
  const p = await server.api.ok('platform.get', 'GET', '/v1/platform');
  assert.deepEqual(p.iommus, [{ name: 'smmu0', model: 'smmuv3', prq_depth: 64, host_va_bits: 48 }]);
  assert.deepEqual(p.devices.map((d: { name: string; caps: { pasid_bits: number } }) => [d.name, d.caps.pasid_bits]), [['gpu0', 8]]);
  await server.close();

  const bad = join(dir, 'bad.json');
  writeFileSync(bad, JSON.stringify({ iommus: [], devices: [] }));
  assert.throws(() => loadPlatformFile(bad), /platform\.iommus: expected at least one IOMMU/);
  writeFileSync(bad, '{');
  assert.throws(() => loadPlatformFile(bad), ConfigError);
  assert.throws(() => loadPlatformFile(join(dir, 'missing.json')), ConfigError);
});

test('the daemon exits 2 on a bad configuration, 0 on --help and --version', () => {
  const run = (...args: string[]) => spawnSync(process.execPath, [MAIN, ...args], { encoding: 'utf8', env: { PATH: process.env['PATH'] ?? '' }, timeout: 10000 });
  const open = run('--host', '0.0.0.0', '--port', '0');
  assert.equal(open.status, 2);
  assert.match(open.stderr, /refusing to listen on 0\.0\.0\.0 without an admin token/);
  assert.equal(open.stdout, '');
  assert.equal(run('--port', 'nope').status, 2);
  assert.equal(run('--platform', '/nonexistent/platform.json', '--port', '0').status, 2);
  const help = run('--help');
  assert.equal(help.status, 0);
  assert.match(help.stdout, /usage: iopfd/);
  const version = run('--version');
  assert.equal(version.status, 0, version.stderr);
  const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
  assert.equal(version.stdout, `iopfd ${pkg.version}\n`);
});
