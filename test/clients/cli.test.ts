// iopfctl against a real daemon: every command's --help, usage errors
// (exit 2), a scripted session over the platform and a context's objects,
// daemon refusals (exit 1, `errno: message`), no daemon (exit 3), `watch`
// and `traffic`; mostly in process through runCli(), and the real program
// for its shebang and exit codes.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { COMMANDS, runCli } from '../../clients/cli/cli.js';
import type { CliIo } from '../../clients/cli/command.js';
import { ADMIN_TOKEN, program, startDaemon, waitFor, type TestDaemon } from './helpers.js';

const execFileP = promisify(execFile);
let d: TestDaemon;
before(async () => (d = await startDaemon()));
after(() => d.close());

interface Run {
  code: number;
  out: string;
  err: string;
}

/** cli() - run iopfctl in process with IOPFD_URL/IOPFD_ADMIN_TOKEN set (plus @env). */
async function cli(args: string[], env: Record<string, string> = {}, extra: Partial<CliIo> = {}): Promise<Run> {
  let out = '';
  let err = '';
  const code = await runCli(args, {
    stdout: { write: (s: string) => (out += s) },
    stderr: { write: (s: string) => (err += s), isTTY: false },
    env: { IOPFD_URL: d.url, IOPFD_ADMIN_TOKEN: ADMIN_TOKEN, ...env },
    ...extra,
  });
  return { code, out, err };
}

/** ok() - a command that must succeed; its stdout. */
async function ok(args: string[], env: Record<string, string> = {}): Promise<string> {
  const r = await cli(args, env);
  assert.equal(r.code, 0, `iopfctl ${args.join(' ')}: ${r.err}`);
  return r.out;
}

describe('iopfctl help and usage', () => {
  test('--help on every command lists its arguments and options (exit 0)', async () => {
    for (const c of COMMANDS) {
      const r = await cli([...c.words, '--help']);
      assert.equal(r.code, 0, c.words.join(' '));
      assert.ok(r.out.startsWith(`usage: iopfctl ${[...c.words, ...c.args].join(' ')}`), r.out);
      for (const o of c.options) assert.ok(r.out.includes(`--${o.name}`), `${c.words.join(' ')} --help shows --${o.name}`);
      assert.match(r.out, /--admin-token/);
    }
    const all = await cli(['--help']);
    assert.equal(all.code, 0);
    for (const c of COMMANDS) assert.ok(all.out.includes(c.words.join(' ')));
    const group = await cli(['ioas', '-h']);
    assert.equal(group.code, 0);
    assert.match(group.out, /ioas map IOAS/);
    assert.doesNotMatch(group.out, /devices list/);
  });

  test('usage errors exit 2 with the reason', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['frobnicate'], /unknown command "frobnicate"\n/],
      [['devcies', 'list'], /unknown command "devcies list" \(did you mean "devices list"\?\)/],
      [['ioas', 'mpa', '1'], /did you mean "ioas map"\?/],
      [['ctx', 'lsit'], /did you mean "ctx list"\?/],
      [['objects', 'mr', '3'], /expected no arguments \(did you mean "objects rm"\?\)/],
      [['dma', 'nic0', '--lenght', '4'], /Unknown option '--lenght' \(did you mean "--length"\?\)/],
      [['ioas', 'map', '1', '--pasid', '1'], /has no option --pasid\n/],
      [['ioas', 'map', '1', '--lenght', '1'], /Unknown option '--lenght' \(did you mean "--length"\?\)/],
      [['inject', 'nic0', '--pasd', '1'], /did you mean "--pasid"\?/],
      [['devices', 'list', '-o', 'yml'], /-o\/--output: expected json, yaml, wide, got "yml" \(did you mean "yaml"\?\)/],
      [['devices', 'list', '-o', 'yaml', '--json'], /--json is -o json/],
      [['help', 'frob'], /unknown command "frob"/],
      [['help', 'ioas', 'mop'], /did you mean "ioas map"\?/],
      [['completion', 'fish'], /expected bash or zsh, got "fish"/],
      [['completion'], /expected bash\|zsh/],
      [['devices'], /'devices' needs a command/],
      [['dma'], /expected DEVICE/],
      [['dma', 'nic0', '--grpid', '1'], /has no option --grpid/],
      [['dma', 'nic0', '--bogus'], /Unknown option '--bogus'/],
      [['dma', 'nic0', '--iova', '0x0'], /--length \(a read\) or --data/],
      [['dma', 'nic0', '--iova', 'zz', '--length', '4'], /--iova: expected a number/],
      [['inject', 'nic0', '--addr', '0x1000'], /--grpid is required/],
      [['inject', 'nic0', '--grpid', '600', '--addr', '0x1000'], /--grpid: expected 0\.\.511/],
      [['inject', 'nic0', '--grpid', '1', '--addr', '0x1000', '--perm', 'q'], /--perm/],
      [['objects'], /needs --ctx and --token/],
      [['fault', 'create', '--overflow', 'maybe'], /--overflow: expected success or invalid/],
      [['watch', '1', '--answer', 'perhaps'], /--answer: expected success or invalid or none/],
    ];
    for (const [args, re] of cases) {
      const r = await cli(args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.err}`);
      assert.match(r.err, re, args.join(' '));
    }
  });

  test('a bare iopfctl, help [COMMAND], --version (exit 0)', async () => {
    const bare = await cli([]);
    assert.equal(bare.code, 0, bare.err);
    assert.equal(bare.err, '');
    assert.match(bare.out, /^usage: iopfctl COMMAND \[ARGS\] \[options\]\n/);
    assert.doesNotMatch(bare.out, /undefined/);
    for (const c of COMMANDS) assert.ok(bare.out.includes(c.words.join(' ')));
    assert.equal((await cli(['help'])).out, bare.out);
    assert.equal((await cli(['--help'])).out, bare.out);
    const map = await cli(['help', 'ioas', 'map']);
    assert.equal(map.code, 0);
    assert.equal(map.out, (await cli(['ioas', 'map', '--help'])).out);
    assert.match(map.out, /^usage: iopfctl ioas map IOAS \[options\]/);
    const group = await cli(['help', 'ctx']);
    assert.match(group.out, /^usage: iopfctl ctx COMMAND/);
    assert.match(group.out, /ctx list/);
    assert.doesNotMatch(group.out, /ioas map/);
    const version = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')).version as string;
    assert.match(version, /^\d+\.\d+\.\d+/);
    for (const args of [['--version'], ['devices', 'list', '--version']]) {
      const v = await cli(args);
      assert.deepEqual([v.code, v.out], [0, `iopfctl ${version}\n`]);
    }
  });

  test('completion bash: a script bash runs, completing commands, options and values', { skip: spawnSync('bash', ['--version']).status !== 0 && 'no bash' }, async () => {
    const script = (await cli(['completion', 'bash'])).out;
    assert.match(script, /complete -F _iopfctl iopfctl/);
    const zsh = await cli(['completion', 'zsh']);
    assert.equal(zsh.code, 0);
    assert.match(zsh.out, /^#compdef iopfctl\n/);
    assert.match(zsh.out, /bashcompinit/);
    assert.ok(zsh.out.endsWith(script), 'zsh runs the bash script');
    // Complete a few command lines in a real bash, as the shell would.
    const lines: string[][] = [
      ['io'],
      ['ioas', ''],
      ['ioas', 'map', '1', '--le'],
      ['--url', 'http://x', 'dma', 'nic0', '--iova', '0x1000', '--da'],
      ['ioas', 'map', '1', '--ur'],
      ['-o', ''],
      ['fault', 'create', '--overflow', ''],
      ['completion', ''],
      ['ctx', 'r'],
    ];
    const calls = lines.map((l) => `c iopfctl ${l.map((w) => `'${w}'`).join(' ')}`).join('\n');
    const r = spawnSync('bash', ['-c', `${script}\nc() { COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMPREPLY=(); _iopfctl; echo "\${COMPREPLY[*]}"; }\n${calls}`], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(r.stdout.split('\n').slice(0, -1), [
      'ioas',
      'create map unmap read write',
      '--length',
      '--data',
      '--url',
      'json yaml wide',
      'success invalid',
      'bash zsh',
      'release rm',
    ]);
  });

  test('the daemon refusing is exit 1 with errno: message; no daemon is exit 3', async () => {
    const refused = await cli(['devices', 'remove', 'nope']);
    assert.equal(refused.code, 1);
    assert.match(refused.err, /^iopfctl devices remove: ENOENT: .*nope/);
    const wrongAdmin = await cli(['devices', 'list'], { IOPFD_ADMIN_TOKEN: 'wrong' });
    assert.equal(wrongAdmin.code, 1);
    assert.match(wrongAdmin.err, /EACCES: wrong admin token/);
    const forged = await cli(['objects', '--ctx', '1', '--token', 'forged']);
    assert.equal(forged.code, 1);
    assert.match(forged.err, /EACCES/);
    const down = await cli(['devices', 'list', '--url', 'http://127.0.0.1:1']);
    assert.equal(down.code, 3);
    assert.match(down.err, /cannot reach the daemon/);
  });
});

describe('iopfctl commands', () => {
  test('platform and a context, end to end', async () => {
    assert.match(await ok(['devices', 'add', 'cli0', '--pasid-bits', '8', '--pri-outstanding', '32']), /^cli0 [0-9a-f]{2}:[0-9a-f]{2}\.\d on dmar0\n$/);
    const list = await ok(['devices', 'list']);
    assert.match(list, /^DEVICE\s+BDF\s+IOMMU\s+PASID\s+PRI/m);
    assert.match(list, /^cli0\s+\S+\s+dmar0\s+8\s+32\s+yes\s+no\s+no\s+enabled$/m);
    const listed = JSON.parse(await ok(['devices', 'list', '--json']));
    assert.ok(listed.devices.some((x: { name: string }) => x.name === 'cli0'));

    const created = await ok(['ctx', 'create']);
    const m = /^export IOPFD_CTX=(\d+) IOPFD_TOKEN=(\S+)\n$/.exec(created);
    assert.ok(m, created);
    const env = { IOPFD_CTX: m[1]!, IOPFD_TOKEN: m[2]! };
    const devId = (await ok(['bind', 'cli0'], env)).trim();
    const ioas = (await ok(['ioas', 'create'], env)).trim();
    assert.equal(await ok(['ioas', 'map', ioas, '--iova', '0', '--length', '64K'], env), '');
    await ok(['ioas', 'write', ioas, '--iova', '0x20', '--data', 'feedface'], env);
    assert.equal(await ok(['ioas', 'read', ioas, '--iova', '0x20', '--length', '4'], env), 'feedface\n');
    const [fault, stream] = (await ok(['fault', 'create', '--depth', '8'], env)).trim().split(' ');
    assert.equal(stream, `/v1/contexts/${env.IOPFD_CTX}/faults/${fault}/stream`);
    const paging = (await ok(['hwpt', 'create', '--dev-id', devId, '--pt-id', ioas, '--fault-id', fault!, '--pasid-capable'], env)).trim();
    const parent = (await ok(['hwpt', 'create', '--dev-id', devId, '--pt-id', ioas, '--nest-parent'], env)).trim();
    const nested = (await ok(['hwpt', 'create', '--dev-id', devId, '--pt-id', parent, '--vtd-s1', '0x8000', '--flags', '8'], env)).trim();
    await ok(['attach', devId, '--pt-id', paging], env);
    await ok(['attach', devId, '--pt-id', paging, '--pasid', '3'], env);
    await ok(['replace', devId, '--pt-id', nested, '--pasid', '3'], env);
    await ok(['detach', devId, '--pasid', '3'], env);
    assert.equal(await ok(['hwpt', 'invalidate', nested, '--addr', '0x1000', '--npages', '2'], env), '1 entries done\n');
    const objects = await ok(['objects'], env);
    assert.match(objects, new RegExp(`^${nested}\\s+hwpt_nested\\s+.*pgtbl_addr=0x8000`, 'm'));
    assert.match(objects, new RegExp(`^${paging}\\s+hwpt_paging\\s+.*fault_id=${fault}`, 'm'));
    const objs = JSON.parse(await ok(['objects', '--json'], env));
    assert.equal(objs.objects.length, 6);
    await ok(['objects', 'rm', nested], env);

    // A page request reaches the fault queue; it is answered when the context goes.
    await ok(['inject', 'cli0', '--grpid', '9', '--addr', '0x4000', '--perm', 'rw'], env);
    const show = await ok(['fault', 'show', fault!], env);
    assert.match(show, new RegExp(`^fault ${fault}: 1 queued, 0 outstanding, 0 connections`));
    assert.match(show, /^reported\s+1$/m);
    assert.deepEqual(JSON.parse(await ok(['fault', 'show', fault!, '--json'], env)).counters.reported, 1);
    assert.equal(await ok(['ioas', 'unmap', ioas, '--iova', '0', '--length', '0x10000'], env), '0x10000\n');
    await ok(['ctx', 'rm'], env);
    assert.match(await ok(['responses', 'cli0']), /^SEQ\s+PASID\s+GRPID\s+CODE\n1\s+-\s+9\s+invalid$/m);
    assert.deepEqual(JSON.parse(await ok(['responses', 'cli0', '--since', '1', '--json'])), { responses: [] });

    // DMA without any attachment: the IOMMU answers INVALID; reads return data.
    assert.equal(await ok(['dma', 'cli0', '--iova', '0x1000', '--length', '8']), 'invalid (1 page requests, 0 retries)\n');
    assert.deepEqual(JSON.parse(await ok(['dma', 'cli0', '--iova', '0x1000', '--data', 'aabb', '--pasid', '1', '--json'])), {
      status: 'invalid',
      page_requests: 1,
      retries: 0,
      data: 'aabb',
    });
    await ok(['pri-reset', 'cli0']);
    await ok(['devices', 'remove', 'cli0']);
  });

  test('vIOMMU: viommu, vdevice, veventq and a nested --ste hwpt; viommu invalidate; watch --veventq prints the event with its vSID', async () => {
    await ok(['devices', 'add', 'armcli', '--iommu', 'smmu0']);
    const env = Object.fromEntries([...(await ok(['ctx', 'create'])).matchAll(/(IOPFD_\w+)=(\S+)/g)].map((x) => [x[1]!, x[2]!])) as Record<string, string>;
    const devId = (await ok(['bind', 'armcli'], env)).trim();
    const ioas = (await ok(['ioas', 'create'], env)).trim();
    await ok(['ioas', 'map', ioas, '--iova', '0', '--length', '64K'], env);
    const parent = (await ok(['hwpt', 'create', '--dev-id', devId, '--pt-id', ioas, '--nest-parent'], env)).trim();
    const viommu = (await ok(['viommu', 'create', '--dev-id', devId, '--hwpt-id', parent], env)).trim();
    await ok(['vdevice', 'create', '--viommu-id', viommu, '--dev-id', devId, '--virt-id', '0x42'], env);
    const fault = (await ok(['fault', 'create'], env)).trim().split(' ')[0]!;
    // S1_TRANS with its CD table at GPA 0x1000, which is all zero: every DMA is C_BAD_CD.
    const nested = (await ok(['hwpt', 'create', '--dev-id', devId, '--pt-id', viommu, '--ste', '0x100b,0', '--fault-id', fault], env)).trim();
    await ok(['attach', devId, '--pt-id', nested], env);
    const [veventq, vstream] = (await ok(['veventq', 'create', '--viommu-id', viommu, '--depth', '4'], env)).trim().split(' ');
    assert.equal(vstream, `/v1/contexts/${env['IOPFD_CTX']}/veventq/${veventq}/stream`);
    assert.equal(await ok(['viommu', 'invalidate', viommu, '--cmd', '0x30,0;0x4200000005,0'], env), '2 commands done\n');
    const bad = await cli(['viommu', 'invalidate', viommu, '--cmd', '0x4300000005,0'], env);
    assert.equal(bad.code, 1);
    assert.match(bad.err, /EIO/);
    const show = async (): Promise<{ connections: number; sequence: number; queued: number }> => JSON.parse(await ok(['veventq', 'show', veventq!, '--json'], env));
    const abort = new AbortController();
    let seen = '';
    const watch = cli(['watch', fault, '--veventq', veventq!], env, { signal: abort.signal, stdout: { write: (t: string) => void (seen += t) } });
    await waitFor(async () => (await show()).connections === 1, 3000, 'watch connected to the vEVENTQ');
    assert.equal((await d.client.dma('armcli', { iova: '0x2000', length: '0x4', access: 'read' })).status, 'invalid');
    await waitFor(() => /^vevent /m.test(seen), 3000, 'the vevent line');
    abort.abort();
    const w = await watch;
    assert.equal(w.code, 0, w.err);
    assert.match(seen, /^vevent 0 C_BAD_CD vsid=0x42 ssid=- read 0x2000$/m);
    await waitFor(async () => (await show()).connections === 0, 3000, 'the stream closed');
    assert.deepEqual(await show(), { id: Number(veventq), queued: 0, depth: 4, sequence: 1, lost: 0, connections: 0 });
    await ok(['ctx', 'rm'], env);
    await ok(['devices', 'remove', 'armcli']);
  });

  test('watch: a live table, JSON lines, answering; ends at --count or on the signal', async () => {
    await ok(['devices', 'add', 'cli1']);
    const env = Object.fromEntries(
      [...(await ok(['ctx', 'create'])).matchAll(/(IOPFD_\w+)=(\S+)/g)].map((x) => [x[1]!, x[2]!]),
    ) as Record<string, string>;
    const devId = (await ok(['bind', 'cli1'], env)).trim();
    const ioas = (await ok(['ioas', 'create'], env)).trim();
    const fault = (await ok(['fault', 'create'], env)).trim().split(' ')[0]!;
    const hwpt = (await ok(['hwpt', 'create', '--dev-id', devId, '--pt-id', ioas, '--fault-id', fault, '--pasid-capable'], env)).trim();
    await ok(['attach', devId, '--pt-id', hwpt], env);
    await ok(['attach', devId, '--pt-id', hwpt, '--pasid', '4'], env);
    const connected = async (n: number): Promise<boolean> => JSON.parse(await ok(['fault', 'show', fault, '--json'], env)).connections === n;

    const table = cli(['watch', fault, '--count', '2', '--answer', 'success'], env);
    await waitFor(() => connected(1), 3000, 'watch connected');
    await ok(['inject', 'cli1', '--grpid', '1', '--addr', '0x1000', '--not-last']);
    await ok(['inject', 'cli1', '--grpid', '1', '--addr', '0x2000', '--perm', 'w']);
    await ok(['inject', 'cli1', '--grpid', '2', '--addr', '0x3000']);
    const t = await table;
    assert.equal(t.code, 0, t.err);
    const lines = t.out.trim().split('\n');
    assert.match(lines[0]!, /^COOKIE\s+DEV_ID\s+PASID\s+GRPID\s+PERM\s+ADDR\s+PAGES\s+REDELIVERED\s+ANSWER$/);
    assert.match(lines[1]!, new RegExp(`^\\d+\\s+${devId}\\s+-\\s+1\\s+r\\s+0x1000\\s+2\\s+no\\s+success$`));
    assert.match(lines[2]!, new RegExp(`^\\d+\\s+${devId}\\s+-\\s+2\\s+r\\s+0x3000\\s+1\\s+no\\s+success$`));
    assert.deepEqual((await d.client.responses('cli1')).responses.map((r) => [r.grpid, r.code]), [[1, 'success'], [2, 'success']]);

    const abort = new AbortController();
    const json = cli(['watch', fault, '--json', '--mode', 'uapi'], env, { signal: abort.signal });
    await waitFor(() => connected(1), 3000, 'watch connected');
    await ok(['inject', 'cli1', '--grpid', '3', '--addr', '0x5000', '--pasid', '4']);
    await waitFor(async () => JSON.parse(await ok(['fault', 'show', fault, '--json'], env)).outstanding === 1, 3000, 'delivery');
    abort.abort();
    const j = await json;
    assert.equal(j.code, 0, j.err);
    const g = JSON.parse(j.out.trim());
    assert.equal(typeof g.cookie, 'number');
    assert.deepEqual(g, {
      cookie: g.cookie,
      redelivered: false,
      answer: null,
      records: [{ flags: 7, dev_id: Number(devId), pasid: 4, grpid: 3, perm: 1, addr: '0x5000', length: 0 }],
    });
    await ok(['ctx', 'rm'], env);
  });

  test('traffic: groups/s and latency at the end; --answer on its own stream; a progress bar on a terminal', async () => {
    await ok(['devices', 'add', 'cli2', '--pri-outstanding', '64']);
    const r = await ok(['traffic', 'cli2', '--count', '500', '--answer', 'success']);
    assert.match(r, /^traffic: 500\/500 groups answered in \d+ ms: \d+ groups\/s; success 500, invalid 0, failure 0; latency µs p50 \d+ p99 \d+ max \d+\n$/);
    const j = JSON.parse(await ok(['traffic', 'cli2', '--count', '100', '--pages-per-group', '2', '--answer', 'invalid', '--mode', 'json', '--json']));
    assert.deepEqual([j.running, j.sent, j.answered, j.by_code], [false, 100, 100, { success: 0, invalid: 100, failure: 0 }]);
    assert.equal(typeof j.groups_per_s, 'number');
    assert.equal((await d.client.platform()).devices.find((x) => x.name === 'cli2')!.bound, false, 'the run context was released');

    // Answering on a fault queue of a context of one's own.
    const env = Object.fromEntries([...(await ok(['ctx', 'create'])).matchAll(/(IOPFD_\w+)=(\S+)/g)].map((x) => [x[1]!, x[2]!])) as Record<string, string>;
    const devId = (await ok(['bind', 'cli2'], env)).trim();
    const ioas = (await ok(['ioas', 'create'], env)).trim();
    const fault = (await ok(['fault', 'create'], env)).trim().split(' ')[0]!;
    await ok(['attach', devId, '--pt-id', (await ok(['hwpt', 'create', '--dev-id', devId, '--pt-id', ioas, '--fault-id', fault], env)).trim()], env);
    const mine = JSON.parse(await ok(['traffic', 'cli2', '--count', '64', '--answer', 'invalid', '--fault', fault, '--json'], env));
    assert.deepEqual(mine.by_code, { success: 0, invalid: 64, failure: 0 });
    assert.equal(JSON.parse(await ok(['fault', 'show', fault, '--json'], env)).counters.answered_invalid, 64);
    await ok(['ctx', 'rm'], env);

    let err = '';
    const tty = await runCli(['traffic', 'cli2', '--count', '50'], {
      stdout: { write: () => true },
      stderr: { write: (s: string) => (err += s), isTTY: true },
      env: { IOPFD_URL: d.url, IOPFD_ADMIN_TOKEN: ADMIN_TOKEN },
    });
    assert.equal(tty, 0);
    assert.match(err, /\r\[#{30}\] 50\/50 groups/);
  });

  test('traffic stop; an interrupted traffic run stops its generator', async () => {
    const env = Object.fromEntries([...(await ok(['ctx', 'create'])).matchAll(/(IOPFD_\w+)=(\S+)/g)].map((x) => [x[1]!, x[2]!])) as Record<string, string>;
    const devId = (await ok(['bind', 'cli2'], env)).trim();
    const ioas = (await ok(['ioas', 'create'], env)).trim();
    const fault = (await ok(['fault', 'create'], env)).trim().split(' ')[0]!;
    await ok(['attach', devId, '--pt-id', (await ok(['hwpt', 'create', '--dev-id', devId, '--pt-id', ioas, '--fault-id', fault], env)).trim()], env);
    await d.client.startTraffic('cli2', { count: 1_000_000, in_flight: 8 });
    const j = JSON.parse(await ok(['traffic', 'stop', 'cli2', '--json']));
    assert.deepEqual([j.running, j.sent, j.answered], [true, 8, 0], 'eight groups in flight, nobody reading');
    assert.match(await ok(['traffic', 'stop', 'cli2']), /^traffic: 0\/8 groups answered .*\(groups still in flight\)\n$/);
    await ok(['ctx', 'rm'], env);
    const after = await d.client.trafficStatus('cli2');
    assert.deepEqual([after.running, after.sent, after.by_code.invalid], [false, 8, 8], 'released: the 8 answered INVALID, none issued since');

    // SIGINT during `iopfctl traffic`: the generator stops instead of running on.
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 150);
    let out = '';
    const code = await runCli(['traffic', 'cli2', '--count', '100000000', '--json'], {
      stdout: { write: (s: string) => ((out += s), true) },
      stderr: { write: () => true },
      env: { IOPFD_URL: d.url, IOPFD_ADMIN_TOKEN: ADMIN_TOKEN },
      signal: ac.signal,
    });
    assert.equal(code, 0);
    const r = JSON.parse(out);
    assert.ok(r.sent > 0 && r.sent < 100_000_000, `stopped early (${r.sent} sent)`);
    await waitFor(async () => !(await d.client.trafficStatus('cli2')).running, 5000, 'the in-flight groups to be answered');
    const end = await d.client.trafficStatus('cli2');
    assert.ok(end.sent - r.sent <= 512, 'at most the groups already in flight were issued after the stop');
  });

  test('-o json|yaml|wide, --json the same as -o json', async () => {
    const json = await ok(['devices', 'list', '-o', 'json']);
    assert.equal(await ok(['devices', 'list', '--json']), json);
    assert.equal(await ok(['devices', 'list', '--output=json']), json);
    const p = JSON.parse(json);
    const yaml = await ok(['devices', 'list', '-o', 'yaml']);
    assert.ok(yaml.startsWith(`kernel: latest\niommus:\n  - name: ${p.iommus[0].name}\n    model: vtd\n    prq_depth: ${p.iommus[0].prq_depth}\n    host_va_bits: 48\n`), yaml);
    // The default platform's second IOMMU (smmu0, the SMMUv3 model) comes before the devices.
    assert.match(yaml, /^devices:\n  - name: nic0\n    bdf: "00:02\.0"\n/m);
    assert.match(yaml, /^    caps:\n      pasid_bits: 20\n      pri: true\n/m);
    assert.match(yaml, /^    ctx: null$/m);
    const wide = await ok(['devices', 'list', '-o', 'wide']);
    assert.match(wide, /^DEVICE\s+BDF\s+IOMMU\s+PASID\s+PRI\s+ATS\s+VF\s+BOUND\s+PRI-STATE\s+CTX\s+PRG-RESP-PASID$/m);
    assert.match(wide, /^nic0\s+00:02\.0\s+dmar0\s+20\s+512\s+yes\s+no\s+no\s+enabled\s+-\s+yes$/m);
    assert.doesNotMatch(await ok(['devices', 'list']), /CTX/);
    assert.equal(await ok(['devices', 'show', 'nic0', '-o', 'json']), `${JSON.stringify(p.devices.find((x: { name: string }) => x.name === 'nic0'))}\n`);
  });

  test('ctx list and ctx release (admin): a context whose token is lost', async () => {
    await ok(['devices', 'add', 'cli-lost']);
    const m = /^export IOPFD_CTX=(\d+) IOPFD_TOKEN=(\S+)\n$/.exec(await ok(['ctx', 'create']))!;
    const env = { IOPFD_CTX: m[1]!, IOPFD_TOKEN: m[2]! };
    assert.ok(!m[2]!.startsWith('-'));
    await ok(['bind', 'cli-lost'], env);
    const ioas = (await ok(['ioas', 'create'], env)).trim();
    const fault = (await ok(['fault', 'create'], env)).trim().split(' ')[0]!;
    const hwpt = (await ok(['hwpt', 'create', '--dev-id', '1', '--pt-id', ioas, '--fault-id', fault], env)).trim();
    await ok(['attach', '1', '--pt-id', hwpt], env);
    await ok(['inject', 'cli-lost', '--grpid', '4', '--addr', '0x4000']);
    const list = await ok(['ctx', 'list']);
    assert.match(list, /^CTX\s+DEVICES\s+OBJECTS\s+STREAMS\s+AGE$/m);
    assert.match(list, new RegExp(`^${env.IOPFD_CTX}\\s+cli-lost\\s+4\\s+0\\s+\\d+s$`, 'm'));
    const listed = JSON.parse(await ok(['ctx', 'list', '-o', 'json'])).contexts.find((c: { ctx: number }) => c.ctx === Number(env.IOPFD_CTX));
    assert.deepEqual([listed.devices, listed.objects, listed.streams], [['cli-lost'], 4, 0]);
    assert.match(await ok(['devices', 'show', 'cli-lost', '-o', 'wide']), new RegExp(`yes\\s+enabled\\s+${env.IOPFD_CTX}\\s+yes$`, 'm'));
    // Without the admin token: refused.
    const refused = await cli(['ctx', 'release', env.IOPFD_CTX], { IOPFD_ADMIN_TOKEN: 'wrong' });
    assert.equal(refused.code, 1);
    assert.match(refused.err, /EACCES/);
    assert.equal(await ok(['ctx', 'release', env.IOPFD_CTX]), '');
    // Its queued group was answered INVALID once; the context is gone.
    assert.match(await ok(['responses', 'cli-lost']), /^1\s+-\s+4\s+invalid$/m);
    assert.equal(JSON.parse(await ok(['responses', 'cli-lost', '--json'])).responses.length, 1);
    assert.doesNotMatch(await ok(['ctx', 'list']), new RegExp(`^${env.IOPFD_CTX}\\s`, 'm'));
    const again = await cli(['ctx', 'release', env.IOPFD_CTX]);
    assert.equal(again.code, 1);
    assert.match(again.err, /^iopfctl ctx release: ENOENT: /);
    assert.equal((await cli(['objects'], env)).code, 1, 'the old token opens nothing');
    await ok(['devices', 'remove', 'cli-lost']);
  });

  test('the iopfctl program: shebang, exit codes', async () => {
    const bin = program('clients/cli/iopfctl.js');
    assert.ok(readFileSync(bin, 'utf8').startsWith('#!/usr/bin/env node\n'));
    const env = { ...process.env, IOPFD_URL: d.url, IOPFD_ADMIN_TOKEN: ADMIN_TOKEN };
    const run = (args: string[], over: Record<string, string> = {}): Promise<Run> =>
      execFileP(process.execPath, [bin, ...args], { env: { ...env, ...over } }).then(
        (r) => ({ code: 0, out: r.stdout, err: r.stderr }),
        (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, out: e.stdout, err: e.stderr }),
      );
    const list = await run(['devices', 'list', '--json']);
    assert.equal(list.code, 0, list.err);
    assert.ok(JSON.parse(list.out).devices.length >= 2);
    assert.equal((await run(['ctx', 'create', '--help'])).code, 0);
    assert.equal((await run(['devices', 'remove', 'ghost'])).code, 1);
    assert.equal((await run(['devices', 'remove'])).code, 2);
    assert.equal((await run(['devices', 'list'], { IOPFD_URL: 'http://127.0.0.1:1' })).code, 3);
    const bare = await run([]);
    assert.deepEqual([bare.code, bare.err], [0, '']);
    assert.match(bare.out, /^usage: iopfctl COMMAND/);
    const version = await run(['--version']);
    assert.equal(version.code, 0);
    assert.match(version.out, /^iopfctl \d+\.\d+\.\d+\n$/);
  });
});
