/**
 * Helpers for the native suites: build clients/c once (or say why not), run
 * a native program and read its output line by line.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** The repository's clients/c folder (from dist/test/native/). */
export const NATIVE_DIR = fileURLToPath(new URL('../../../clients/c/', import.meta.url));
/** Where `make -C clients/c` puts its artefacts. */
export const NATIVE_BUILD = `${NATIVE_DIR}build/`;

let built: string | undefined | null = null;

/** Does `cmd --version` run? */
function runs(cmd: string): boolean {
  const r = spawnSync(cmd, ['--version'], { stdio: 'ignore' });
  return !r.error && r.status === 0;
}

/**
 * buildNative() - `make -C clients/c` (once per process).
 *
 * Return: undefined when built, else the reason the native tests skip: no
 * C compiler, no make or no objcopy. A build that fails with both present throws: that
 * is a failure, not a reason to skip.
 */
export function buildNative(): string | undefined {
  if (built !== null) return built;
  const cc = process.env.CC ?? 'cc';
  if (!runs('make')) built = 'no `make` on this machine: the native (C) tests need make and a C compiler';
  else if (!runs(cc)) built = `no C compiler (\`${cc}\`) on this machine: the native (C) tests need one`;
  else if (!runs(process.env.OBJCOPY ?? 'objcopy')) built = 'no `objcopy` (binutils) on this machine: clients/c builds iopfd-preload.so with it';
  else {
    const r = spawnSync('make', ['-s', '-C', NATIVE_DIR, '-j2'], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`make -C clients/c failed:\n${r.stdout}\n${r.stderr}`);
    built = undefined;
  }
  return built;
}

/** A running native program, its stdout split into lines. */
export class NativeProgram {
  readonly child: ChildProcess;
  readonly lines: string[] = [];
  stderr = '';
  /** Resolves with the exit code (or the signal's name). */
  readonly exited: Promise<number | string>;
  private partial = '';
  private waiters: Array<() => void> = [];

  constructor(file: string, args: readonly string[], env: NodeJS.ProcessEnv = process.env) {
    this.child = spawn(file, args, { stdio: ['pipe', 'pipe', 'pipe'], env });
    this.child.stdout!.setEncoding('utf8');
    this.child.stdout!.on('data', (s: string) => {
      const parts = (this.partial + s).split('\n');
      this.partial = parts.pop()!;
      this.lines.push(...parts);
      this.wake();
    });
    this.child.stderr!.setEncoding('utf8');
    this.child.stderr!.on('data', (s: string) => (this.stderr += s));
    this.child.stdin!.on('error', () => {});
    this.exited = new Promise((resolve) => {
      this.child.on('close', (code, signal) => {
        if (this.partial) this.lines.push(this.partial);
        this.partial = '';
        resolve(code ?? signal ?? -1);
        this.wake();
      });
    });
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  /** Lines matching @re. */
  matching(re: RegExp): string[] {
    return this.lines.filter((l) => re.test(l));
  }

  /** waitLines() - wait until @count lines match @re (fails after @timeoutMs, or if the program exits first). */
  async waitLines(re: RegExp, count = 1, timeoutMs = 10000): Promise<string[]> {
    const deadline = Date.now() + timeoutMs;
    let exited = false;
    void this.exited.then(() => (exited = true));
    for (;;) {
      const got = this.matching(re);
      if (got.length >= count) return got;
      if (exited || this.child.exitCode !== null || this.child.signalCode !== null) {
        throw new Error(`program exited before ${count}× ${re}: ${JSON.stringify(this.lines)} stderr: ${this.stderr}`);
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${count}× ${re}: ${JSON.stringify(this.lines)} stderr: ${this.stderr}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** send() - one line on the program's stdin. */
  send(line: string): void {
    this.child.stdin!.write(`${line}\n`);
  }

  /** kill() - SIGKILL (if still running) and wait for the exit. */
  async kill(): Promise<number | string> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
    return this.exited;
  }
}

/** One parsed fault-loop.h line ("group …" or "held …"). */
export interface LoopLine {
  kind: 'group' | 'held';
  cookie: number;
  pasid: number;
  grpid: number;
  addr: bigint;
  pages: number;
  code?: 'success' | 'invalid';
}

/** parseLoopLines() - the group/held lines of a fault-loop.h program. */
export function parseLoopLines(lines: readonly string[]): LoopLine[] {
  const out: LoopLine[] = [];
  for (const l of lines) {
    const m = /^(group|held) cookie=(\d+) dev_id=\d+ pasid=(\d+) grpid=(\d+) addr=(0x[0-9a-f]+) pages=(\d+)(?: code=(success|invalid))?$/.exec(l);
    if (!m) continue;
    out.push({
      kind: m[1] as 'group' | 'held',
      cookie: Number(m[2]),
      pasid: Number(m[3]),
      grpid: Number(m[4]),
      addr: BigInt(m[5]!),
      pages: Number(m[6]),
      ...(m[7] ? { code: m[7] as 'success' | 'invalid' } : {}),
    });
  }
  return out;
}
