// Keeps the dependency rule of the layers true: core/ never
// reaches the shell or Node I/O, hw knows no other core folder, clients talk
// only to protocol/, protocol/ depends on zod only; and the repository stands
// alone: no file cites the external contract or reads the folder beside the repository.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, dirname, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

function sources(dir: string): string[] {
  const out: string[] = [];
  const abs = join(repo, dir);
  for (const name of readdirSync(abs)) {
    const p = join(abs, name);
    if (statSync(p).isDirectory()) out.push(...sources(relative(repo, p)));
    else if (name.endsWith('.ts')) out.push(relative(repo, p));
  }
  return out;
}

function importsOf(file: string): string[] {
  const text = readFileSync(join(repo, file), 'utf8');
  const re = /(?:import|export)\s[^'"]*?from\s*['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)|^\s*import\s*['"]([^'"]+)['"]/gm;
  const out: string[] = [];
  for (const m of text.matchAll(re)) out.push((m[1] ?? m[2] ?? m[3])!);
  return out;
}

/** Top folder (and core subfolder) an import lands in, or the package name. */
function target(file: string, spec: string): string {
  if (!spec.startsWith('.'))
    return spec.startsWith('node:') ? spec : spec.split('/')[0]!.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]!;
  const abs = relative(repo, resolve(repo, dirname(file), spec));
  const parts = abs.split(sep);
  if (parts[0] === 'core' && parts.length > 2) return `core/${parts[1]}`;
  if (parts[0] === 'core' && parts.length === 2) return `core/${parts[1]!.replace(/\.(js|ts)$/, '')}`;
  return parts[0]!;
}

const NODE_IO = /^(node:)?(fs|net|http|https|http2|child_process|dgram|worker_threads|cluster|tls|dns|readline|fs\/promises|process)$/;

const rules: Array<{ dir: string; allowed: (t: string, file: string) => boolean }> = [
  // core/sched.ts (time and deferred work) is the one shared header every core folder may use.
  { dir: 'core/hw', allowed: (t) => t === 'core/hw' || t === 'core/sched' },
  { dir: 'core/iommu', allowed: (t) => ['core/iommu', 'core/sched', 'protocol'].includes(t) },
  { dir: 'core/iopf', allowed: (t) => ['core/iopf', 'core/iommu', 'core/sched'].includes(t) },
  { dir: 'core/drivers', allowed: (t) => ['core/drivers', 'core/hw', 'core/iommu', 'core/iopf', 'core/sched'].includes(t) },
  { dir: 'core/iommufd', allowed: (t) => ['core/iommufd', 'core/iommu', 'core/iopf', 'core/sched', 'protocol'].includes(t) },
  { dir: 'core', allowed: (t) => t.startsWith('core') || t === 'protocol' },
  { dir: 'protocol', allowed: (t) => t === 'protocol' || t === 'zod' },
  { dir: 'clients', allowed: (t) => t === 'clients' || t === 'protocol' || t === 'ws' || t.startsWith('node:') },
];

test('layering: every import respects the layering rule', () => {
  const violations: string[] = [];
  for (const top of ['core', 'protocol', 'clients']) {
    for (const file of sources(top)) {
      const rule = rules.find((r) => file.startsWith(`${r.dir}/`));
      if (!rule) continue;
      for (const spec of importsOf(file)) {
        const t = target(file, spec);
        if (file.startsWith('core/') && (NODE_IO.test(t) || ['fastify', 'ws', 'pino', 'prom-client'].includes(t))) {
          violations.push(`${file} imports ${spec} (Node I/O or shell package in core)`);
        } else if (!rule.allowed(t, file)) {
          violations.push(`${file} imports ${spec} (${t} is outside ${rule.dir}'s allowed layers)`);
        }
      }
    }
  }
  assert.deepEqual(violations, []);
});

test('layering: the scan itself sees a forbidden import', () => {
  // Guards the guard: the regex and the rules must flag an obvious violation.
  assert.equal(target('core/iopf/io-pgfault.ts', '../../server/app.js'), 'server');
  assert.equal(rules.find((r) => 'core/iopf/x.ts'.startsWith(`${r.dir}/`))!.allowed('server', ''), false);
  assert.ok(NODE_IO.test('node:fs'));
});

/**
 * EXTERNAL - what a file of a self-contained repository must not lean on: the
 * external contract's file names and the folder beside the repository. The
 * wire reference is docs/protocol.md; kernel behaviour is named by its kernel
 * function or described in words.
 */
// Spelled from parts, so that this file passes its own scan.
const NAMES = [['PROTOCOL', 'md'].join('.'), ['kernel', 'semantics'].join('-'), ['..', 'sha' + 'red'].join('/')];
const EXTERNAL = new RegExp(NAMES.map((n) => n.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')).join('|'));

/** trackedFiles() - the repository's files: git's list, or a walk when git is unavailable. */
function trackedFiles(): string[] {
  const git = spawnSync('git', ['ls-files', '-z'], { cwd: repo, encoding: 'utf8' });
  if (git.status === 0 && git.stdout.length > 0) return git.stdout.split('\0').filter((f) => f.length > 0);
  const out: string[] = [];
  const walk = (dir: string): void => {
    for (const name of readdirSync(join(repo, dir))) {
      if (['node_modules', 'dist', '.git'].includes(name)) continue;
      const rel = dir ? `${dir}/${name}` : name;
      if (statSync(join(repo, rel)).isDirectory()) walk(rel);
      else out.push(rel);
    }
  };
  walk('');
  return out;
}

test('layering: the repository stands alone (no file cites the external contract or the folder beside it)', () => {
  const hits: string[] = [];
  const files = trackedFiles();
  assert.ok(files.includes('README.md') && files.includes('docs/protocol.md'), 'the file list holds the repository');
  for (const file of files) {
    const abs = join(repo, file);
    if (!existsSync(abs) || statSync(abs).size > 4 << 20) continue;
    readFileSync(abs, 'utf8')
      .split('\n')
      .forEach((line, i) => {
        if (EXTERNAL.test(line)) hits.push(`${file}:${i + 1}: ${line.trim()}`);
      });
  }
  assert.deepEqual(hits, []);
});

test('layering: the stand-alone scan sees a citation', () => {
  // Guards the guard: each form must be caught, the repository's own reference not.
  const [contract, semantics, beside] = NAMES as [string, string, string];
  for (const s of [`see ${contract} §5`, `${semantics}.md §9`, `readFileSync('${beside}/spec/x')`]) assert.ok(EXTERNAL.test(s), s);
  assert.ok(!EXTERNAL.test('see docs/protocol.md, section 8'));
});
