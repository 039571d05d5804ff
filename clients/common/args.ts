/**
 * DOC: command-line plumbing shared by the client programs
 *
 * iopfctl, the VMM handler, the traffic generator and the demo read their
 * flags with node:util parseArgs; this file holds what they share: the
 * connection flags and their IOPFD_* variables, number parsing, the exit
 * codes, and runMain(), which maps an error to its exit code.
 */
import type { ParseArgsConfig } from 'node:util';
import { IopfdConnectionError, IopfdError } from '../sdk/index.js';

/** EXIT - exit codes: ok, the daemon refused (errno: message), bad usage, no connection. */
export const EXIT = Object.freeze({ OK: 0, DAEMON: 1, USAGE: 2, CONNECTION: 3 } as const);

/** DEFAULT_URL - the daemon's default address. */
export const DEFAULT_URL = 'http://127.0.0.1:8080';

/**
 * DEFAULT_VA_RANGE - the VA range the VMM handler's guest serves by default
 * and the traffic generator aims at by default: 16 MiB at 0x10000000.
 */
export const DEFAULT_VA_RANGE = Object.freeze({ start: 0x1000_0000n, length: 16n << 20n });

/** UsageError - bad flags or arguments (exit 2). */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** CONNECTION_OPTIONS - `--url` and `--admin-token`, for parseArgs. */
export const CONNECTION_OPTIONS = {
  url: { type: 'string' },
  'admin-token': { type: 'string' },
} as const satisfies ParseArgsConfig['options'];

/**
 * connectionOf() - the daemon URL and admin token: flags first, then
 * IOPFD_URL and IOPFD_ADMIN_TOKEN, then the default URL.
 */
export function connectionOf(
  values: { url?: string | undefined; 'admin-token'?: string | undefined },
  env: Readonly<Record<string, string | undefined>>,
): { url: string; adminToken: string | undefined } {
  return { url: values.url ?? env.IOPFD_URL ?? DEFAULT_URL, adminToken: values['admin-token'] ?? env.IOPFD_ADMIN_TOKEN };
}

const SIZE_SUFFIX: Readonly<Record<string, bigint>> = { '': 1n, k: 1n << 10n, m: 1n << 20n, g: 1n << 30n };

/**
 * parseBig() - a u64 flag value: `0x…` hex or decimal, with an optional
 * K/M/G suffix (KiB, MiB, GiB).
 * @what: the flag, for the message.
 * @s: the value.
 *
 * Throws: UsageError if @s is not such a number or exceeds 64 bits.
 */
export function parseBig(what: string, s: string): bigint {
  const m = /^(0x[0-9a-f]+|\d+)([kmg]?)$/i.exec(s.trim());
  if (!m) throw new UsageError(`${what}: expected a number (0x… or decimal, optional K/M/G), got ${JSON.stringify(s)}`);
  const v = BigInt(m[1]!) * SIZE_SUFFIX[m[2]!.toLowerCase()]!;
  if (v >= 1n << 64n) throw new UsageError(`${what}: ${s} does not fit in 64 bits`);
  return v;
}

/**
 * parseU32() - a u32 flag value (decimal or `0x…`), within [@min, @max].
 * Throws: UsageError otherwise.
 */
export function parseU32(what: string, s: string, min = 0, max = 0xffff_ffff): number {
  const v = parseBig(what, s);
  if (v < BigInt(min) || v > BigInt(max)) throw new UsageError(`${what}: expected ${min}..${max}, got ${s}`);
  return Number(v);
}

/** parseSeconds() - a duration flag in seconds (fractions allowed), as ms. */
export function parseSeconds(what: string, s: string): number {
  const v = Number(s);
  if (!/^\d+(\.\d+)?$/.test(s) || !Number.isFinite(v)) throw new UsageError(`${what}: expected seconds, got ${JSON.stringify(s)}`);
  return Math.round(v * 1000);
}

/**
 * errorReport() - the message and exit code of an error ending a program:
 * IopfdError → `errno: message`, 1; UsageError and parseArgs errors → 2;
 * IopfdConnectionError → 3; anything else → its stack, 1.
 */
export function errorReport(e: unknown): { message: string; code: number } {
  if (e instanceof IopfdError) return { message: `${e.errno}: ${e.message}`, code: EXIT.DAEMON };
  if (e instanceof UsageError) return { message: e.message, code: EXIT.USAGE };
  if (e instanceof IopfdConnectionError) return { message: `cannot reach the daemon: ${e.message}`, code: EXIT.CONNECTION };
  // node:util parseArgs refusals (unknown option, missing value, stray positional).
  if (e instanceof TypeError && String((e as { code?: unknown }).code).startsWith('ERR_PARSE_ARGS')) return { message: e.message, code: EXIT.USAGE };
  return { message: e instanceof Error ? (e.stack ?? e.message) : String(e), code: EXIT.DAEMON };
}

/**
 * runMain() - run a program's main function and exit with its code (or the
 * code errorReport() gives its error, after printing `PROGRAM: message`).
 * @program: the name for messages.
 * @main: resolves with the exit code.
 */
export function runMain(program: string, main: () => Promise<number>): void {
  main().then(
    (code) => process.exit(code),
    (e: unknown) => {
      const r = errorReport(e);
      process.stderr.write(`${program}: ${r.message}\n`);
      process.exit(r.code);
    },
  );
}

/**
 * onTermination() - call @fn once on the first SIGINT or SIGTERM (a second
 * one exits at once with 130).
 */
export function onTermination(fn: () => void): void {
  let seen = false;
  const handler = (): void => {
    if (seen) process.exit(130);
    seen = true;
    fn();
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
}
