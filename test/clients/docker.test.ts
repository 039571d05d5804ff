// Dockerfile, docker-compose.yml and .dockerignore, checked without a Docker
// engine: their structure, the commands they run against the real programs,
// the image's health check and start guard as shell/node would run them,
// and `docker compose config` / `docker-compose config` where installed.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { program, startDaemon, type TestDaemon } from './helpers.js';

const repo = fileURLToPath(new URL('../../../', import.meta.url));
const read = (name: string): string => readFileSync(`${repo}${name}`, 'utf8');
const run = promisify(execFile);

let d: TestDaemon;
before(async () => (d = await startDaemon()));
after(() => d.close());

/** The exec-form JSON array of a Dockerfile instruction (its last line). */
function execForm(dockerfile: string, instruction: string): string[] {
  const m = new RegExp(`^(?:${instruction}|\\s+CMD) (\\[.*\\])$`, 'm').exec(dockerfile.slice(dockerfile.search(new RegExp(`^${instruction} `, 'm'))));
  assert.ok(m, `${instruction} in exec form`);
  return JSON.parse(m[1]!) as string[];
}

test('Dockerfile: multi-stage on the Node major of the engines field, production dependencies, non-root, health check, port, start guard', async () => {
  const df = read('Dockerfile');
  const froms = [...df.matchAll(/^FROM (\S+)(?: AS (\S+))?$/gm)];
  assert.equal(froms.length, 2, 'two stages');
  // The image pins the oldest major package.json supports, the one CI runs
  // (not the major running this test: the suite also runs on Node 22 and 24).
  const engines = (JSON.parse(read('package.json')) as { engines: { node: string } }).engines.node;
  const major = /^>=(\d+)$/.exec(engines)?.[1];
  assert.ok(major, `engines.node is ">=N": ${engines}`);
  assert.deepEqual(
    froms.map((f) => f[1]),
    [`node:${major}-slim`, `node:${major}-slim`],
    "the Node major of package.json's engines",
  );
  assert.equal(froms[0]![2], 'build');
  const [build, runtime] = df.split(/^FROM node:\d+-slim$/m) as [string, string];
  assert.match(build, /^RUN npm ci$/m);
  assert.match(build, /^RUN npm run build$/m);
  assert.match(runtime, /^RUN npm ci --omit=dev/m);
  assert.match(runtime, /^COPY --from=build \/app\/dist\/server \.\/dist\/server$/m);
  assert.match(runtime, /^COPY --from=build \/app\/dist\/clients \.\/dist\/clients$/m);
  assert.match(runtime, /^USER node$/m);
  assert.match(runtime, /^EXPOSE 8080$/m);

  // The health check, run by node against a live daemon and a dead port.
  const health = execForm(df, 'HEALTHCHECK');
  assert.deepEqual(health.slice(0, 2), ['node', '-e']);
  assert.match(health[2]!, /fetch\('http:\/\/127\.0\.0\.1:8080\/healthz'\)/);
  const port = new URL(d.url).port;
  // (Asynchronously: the daemon answers from this very process.)
  await run(process.execPath, ['-e', health[2]!.replace('8080', port)]);
  await assert.rejects(run(process.execPath, ['-e', health[2]!.replace('8080', '1')]), (e: { code?: number }) => e.code === 1);

  // The start command listens on 0.0.0.0:8080 and refuses to start without the admin token.
  const cmd = execForm(df, 'CMD');
  assert.deepEqual(cmd.slice(0, 2), ['sh', '-c']);
  assert.match(cmd[2]!, /exec node dist\/server\/main\.js --host 0\.0\.0\.0 --port 8080$/);
  const env = { ...process.env };
  delete env.IOPFD_ADMIN_TOKEN;
  const guarded = spawnSync(cmd[0]!, cmd.slice(1), { cwd: repo, env, encoding: 'utf8' });
  assert.notEqual(guarded.status, 0);
  assert.match(guarded.stderr, /IOPFD_ADMIN_TOKEN is required/);
});

test('.dockerignore keeps node_modules, dist and .git out of the build context', () => {
  const lines = read('.dockerignore')
    .split('\n')
    .map((l) => l.trim());
  for (const entry of ['node_modules', 'dist', '.git']) assert.ok(lines.includes(entry), entry);
});

/** The services of docker-compose.yml, each as its block of text. */
function services(compose: string): Map<string, string> {
  const section = compose.slice(compose.search(/^services:$/m));
  const out = new Map<string, string>();
  for (const m of section.matchAll(/^ {2}([\w-]+):\n((?: {4}.*\n|\n)*)/gm)) out.set(m[1]!, m[2]!);
  return out;
}

test('docker-compose.yml: daemon, then an x86 and an arm vmm-handler each with its traffic, in health order; their commands parse', async () => {
  const compose = read('docker-compose.yml');
  const s = services(compose);
  assert.deepEqual([...s.keys()], ['daemon', 'vmm-handler', 'traffic', 'arm-vmm-handler', 'arm-traffic', 'prometheus', 'grafana']);
  for (const demo of ['daemon', 'vmm-handler', 'traffic', 'arm-vmm-handler', 'arm-traffic'])
    assert.doesNotMatch(s.get(demo)!, /profiles:/, `${demo} runs without a profile`);
  assert.match(compose, /IOPFD_ADMIN_TOKEN: \$\{IOPFD_ADMIN_TOKEN:-[\w-]+\}/, 'the admin token from the environment, with a demo default');
  assert.match(s.get('daemon')!, /healthcheck:\n {6}test: \[.*\/healthz.*\]/);
  const healthy = (on: string): RegExp => new RegExp(`depends_on:\\n(?: {6}.*\\n)*? {6}${on}:\\n {8}condition: service_healthy`);
  for (const [vmm, traffic] of [
    ['vmm-handler', 'traffic'],
    ['arm-vmm-handler', 'arm-traffic'],
  ] as const) {
    assert.match(s.get(vmm)!, healthy('daemon'));
    assert.match(s.get(traffic)!, healthy('daemon'));
    assert.match(s.get(traffic)!, healthy(vmm));
    assert.match(s.get(vmm)!, /healthcheck:\n {6}test: \["CMD", "test", "-f", "\/tmp\/vmm-ready"\]/);
    assert.match(s.get(vmm)!, /--ready-file", "\/tmp\/vmm-ready"/);
  }
  assert.match(s.get('arm-vmm-handler')!, /"--arch", "arm", "--device", "arm0"/);

  // Each command names a program of the image, with flags it accepts (--help parses them all first).
  for (const service of ['vmm-handler', 'traffic', 'arm-vmm-handler', 'arm-traffic']) {
    const command = JSON.parse(/command: (\[.*\])/.exec(s.get(service)!)![1]!) as string[];
    assert.equal(command[0], 'node');
    const script = program(command[1]!.replace(/^dist\//, ''));
    const r = await run(process.execPath, [script, ...command.slice(2), '--help']);
    assert.match(r.stdout, /^usage: /, service);
  }
});

/** The metric names an expression reads (histogram series by their base name). */
function metricsOf(expr: string): string[] {
  return [...expr.matchAll(/\b(iopfd_\w+)/g)].map((m) => m[1]!.replace(/_(bucket|sum|count)$/, ''));
}

test('observability profile: Prometheus scrapes the daemon, Grafana gets the datasource and a dashboard of metrics the daemon exports', async () => {
  const s = services(read('docker-compose.yml'));
  for (const name of ['prometheus', 'grafana']) {
    const block = s.get(name)!;
    assert.match(block, /profiles: \["observability"\]/, name);
    assert.match(block, /image: [\w/-]+:v?\d+\.\d+\.\d+\n/, `${name}: a pinned image`);
    // Every bind mount's source exists in the repository.
    const mounts = [...block.matchAll(/^ {6}- \.\/([^:\s]+):/gm)].map((m) => m[1]!);
    assert.ok(mounts.length > 0, `${name}: mounts from deploy/`);
    for (const m of mounts) assert.ok(existsSync(`${repo}${m}`), `${name}: ${m} exists`);
  }
  assert.match(s.get('prometheus')!, /- \.\/deploy\/prometheus\/prometheus\.yml:\/etc\/prometheus\/prometheus\.yml:ro/);
  assert.match(s.get('prometheus')!, /daemon:\n {8}condition: service_healthy/);
  assert.match(s.get('grafana')!, /- \.\/deploy\/grafana\/provisioning:\/etc\/grafana\/provisioning:ro/);
  assert.match(s.get('grafana')!, /- \.\/deploy\/grafana\/dashboards:\/var\/lib\/grafana\/dashboards:ro/);

  // Prometheus scrapes the compose daemon's /metrics.
  const prom = read('deploy/prometheus/prometheus.yml');
  assert.match(prom, /metrics_path: \/metrics/);
  assert.match(prom, /targets: \["daemon:8080"\]/);
  // Grafana: the datasource points at the compose Prometheus under the uid the dashboard uses; the provider reads the mounted folder.
  const datasource = read('deploy/grafana/provisioning/datasources/prometheus.yml');
  assert.match(datasource, /url: http:\/\/prometheus:9090/);
  const uid = /uid: (\S+)/.exec(datasource)?.[1];
  assert.match(read('deploy/grafana/provisioning/dashboards/iopfd.yml'), /path: \/var\/lib\/grafana\/dashboards/);

  const dash = JSON.parse(read('deploy/grafana/dashboards/iopfd.json')) as {
    uid: string;
    panels: Array<{ type: string; title: string; datasource?: { uid: string }; targets?: Array<{ expr: string; datasource: { uid: string } }> }>;
  };
  const graphs = dash.panels.filter((p) => p.type !== 'row');
  // The panels the operators asked for.
  for (const want of [
    /^Groups\/s: reported, delivered, answered$/,
    /latency \(quantiles\)/,
    /^Auto-answered by cause$/,
    /^Limit refusals/,
    /by device/,
    /by fault queue/,
  ]) {
    assert.ok(
      graphs.some((p) => want.test(p.title)),
      `a panel ${want}`,
    );
  }
  // Every query reads metrics this daemon exports (their # TYPE line on /metrics), through the provisioned datasource.
  const exposition = await (await fetch(`${d.url}/metrics`)).text();
  const declared = new Set([...exposition.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]!));
  const used = new Set<string>();
  for (const p of graphs) {
    assert.equal(p.datasource?.uid, uid, `${p.title}: the provisioned datasource`);
    assert.ok(p.targets && p.targets.length > 0, `${p.title}: a query`);
    for (const t of p.targets) {
      assert.equal(t.datasource.uid, uid);
      const names = metricsOf(t.expr);
      assert.ok(names.length > 0, t.expr);
      for (const n of names) {
        assert.ok(declared.has(n), `${p.title}: ${n} is not on /metrics`);
        used.add(n);
      }
    }
  }
  assert.ok(used.has('iopfd_fault_response_latency_seconds'));
  assert.ok(
    graphs.some((p) => p.targets!.some((t) => /histogram_quantile\(0\.99,/.test(t.expr))),
    'a p99',
  );
});

test('docker compose config accepts the file (skipped without Docker Compose)', (t) => {
  const tools: Array<[string, string[]]> = [
    ['docker', ['compose']],
    ['docker-compose', []],
  ];
  // Bounded: a Docker CLI without an engine must not be able to stall the suite.
  const tool = tools.find(([cmd, pre]) => spawnSync(cmd, [...pre, 'version'], { stdio: 'ignore', timeout: 15_000 }).status === 0);
  if (!tool) {
    t.skip('neither `docker compose` nor `docker-compose` is installed');
    return;
  }
  for (const profile of [[], ['--profile', 'observability']] as string[][]) {
    const args = [...tool[1], ...profile, 'config', '-q'];
    const r: SpawnSyncReturns<string> = spawnSync(tool[0], args, { cwd: repo, encoding: 'utf8', timeout: 60_000 });
    if (r.error) {
      t.skip(`\`${tool[0]} ${tool[1].join(' ')} config\` did not finish: ${r.error.message}`);
      return;
    }
    assert.equal(r.status, 0, `${profile.join(' ')}: ${r.stderr}`);
  }
});
