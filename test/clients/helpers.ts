/**
 * Helpers for the client suites: a real daemon on 127.0.0.1 (built in
 * process with the server's buildApp, guarded by an admin token), an SDK
 * client on it, and a handle on the stream sockets the daemon accepted so
 * that tests can cut a connection as a network would.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import type { Duplex } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { buildApp, type AppOptions, type IopfdApp } from '../../server/app.js';
import { IopfdClient } from '../../clients/sdk/index.js';

/** The admin token of every test daemon. */
export const ADMIN_TOKEN = 'test-admin-token';

/** A running daemon. */
export interface TestDaemon {
  readonly daemon: IopfdApp;
  /** `http://127.0.0.1:PORT` */
  readonly url: string;
  /** An SDK client with the admin token, validating every response against the contract. */
  readonly client: IopfdClient;
  /** The sockets of every stream upgrade so far (destroy one to cut its connection). */
  readonly streamSockets: Duplex[];
  close(): Promise<void>;
}

/** startDaemon() - build the daemon and listen on 127.0.0.1, any free port. */
export async function startDaemon(opts: AppOptions = {}): Promise<TestDaemon> {
  const daemon = buildApp({ adminToken: ADMIN_TOKEN, ...opts });
  const streamSockets: Duplex[] = [];
  daemon.app.server.on('upgrade', (_req, socket: Duplex) => streamSockets.push(socket));
  await daemon.app.listen({ port: 0, host: '127.0.0.1' });
  const addr = daemon.app.server.address();
  if (!addr || typeof addr !== 'object') throw new Error('no address');
  const url = `http://127.0.0.1:${addr.port}`;
  return {
    daemon,
    url,
    client: new IopfdClient({ url, adminToken: ADMIN_TOKEN, validate: true }),
    streamSockets,
    close: () => daemon.shutdown(),
  };
}

/** waitFor() - poll @check until it holds (or fail after @timeoutMs). */
export async function waitFor(check: () => Promise<boolean> | boolean, timeoutMs = 3000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** sleep() - wait @ms. */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** program() - the compiled path of a client program, e.g. `clients/cli/iopfctl.js` (cwd-independent). */
export function program(rel: string): string {
  return fileURLToPath(new URL(`../../${rel}`, import.meta.url));
}

/** struct Spawned - a client program running: what it printed so far, its exit status. */
export interface Spawned {
  readonly proc: ChildProcess;
  stdout: string;
  stderr: string;
  readonly exited: Promise<number | null>;
}

/** spawnProgram() - run client program @rel (see program()) with @args and @env added to this process's environment. */
export function spawnProgram(rel: string, args: readonly string[], env: NodeJS.ProcessEnv = {}): Spawned {
  const proc = spawn(process.execPath, [program(rel), ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const s: Spawned = { proc, stdout: '', stderr: '', exited: new Promise((resolve) => proc.on('exit', resolve)) };
  proc.stdout!.on('data', (c: Buffer) => (s.stdout += c.toString()));
  proc.stderr!.on('data', (c: Buffer) => (s.stderr += c.toString()));
  return s;
}
