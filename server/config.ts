/**
 * DOC: daemon configuration
 *
 * Flags and their `IOPFD_*` environment equivalents (a flag wins over the
 * environment), validated with zod:
 *
 *   --host HOST              IOPFD_HOST              default 127.0.0.1
 *   --port N                 IOPFD_PORT              default 8080 (0 = any free port)
 *   --admin-token T          IOPFD_ADMIN_TOKEN       guards /v1/platform
 *   --platform FILE          IOPFD_PLATFORM          platform description (JSON)
 *   --log-level L            IOPFD_LOG_LEVEL         default info
 *   --max-contexts N         IOPFD_MAX_CONTEXTS      open contexts
 *   --max-objects N          IOPFD_MAX_OBJECTS       objects per context
 *   --max-streams N          IOPFD_MAX_STREAMS       streams per fault queue, and per vEVENTQ
 *   --max-mapped-pages N     IOPFD_MAX_MAPPED_PAGES  mapped pages per context
 *   --max-devices N          IOPFD_MAX_DEVICES       platform devices (hot-plug)
 *   --max-partials N         IOPFD_MAX_PARTIALS      partial page requests pending per device
 *   --memory-limit BYTES     IOPFD_MEMORY_LIMIT      memory budget of mapped pages, K/M/G/T suffixes
 *                                                    (powers of 1024), default a quarter of the host's RAM, 0: none
 *   --response-log N         IOPFD_RESPONSE_LOG      responses each device's log holds, default 1048576 (0: all)
 *   --body-limit BYTES       IOPFD_BODY_LIMIT        request body size, default 1 MiB
 *   --max-frame BYTES        IOPFD_MAX_FRAME         stream frame size from clients, default 1 MiB
 *   --error-frames-per-second N  IOPFD_ERROR_FRAMES_PER_SECOND  error frames per connection, default 20
 *   --heartbeat-ms N         IOPFD_HEARTBEAT_MS      stream ping interval, default 15000
 *   --max-connections N      IOPFD_MAX_CONNECTIONS   open TCP connections, default 1024
 *   --kernel NAME            IOPFD_KERNEL            kernel profile: latest (default), v6.15, v6.14, v6.13, v6.11
 *   --help, --version        print the usage or the package version, and exit
 *
 * The defaults of the resource limits are the core's LIMITS (core/iommufd/limits.ts).
 * Without an admin token the daemon refuses to listen beyond loopback.
 */
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { totalmem } from 'node:os';
import { z } from 'zod';
import { KERNEL_PROFILES, LIMITS, kernelProfile, type KernelProfile, type PlatformDesc, type PlatformOptions } from '../core/index.js';
import { formatZodError, zPlatformFile } from '../protocol/index.js';
import { LOG_LEVELS, type LogLevel } from './logger.js';

/** ConfigError - a bad flag, variable or platform file; the daemon exits with status 2. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

/**
 * struct Config - the daemon's configuration.
 * @host: address to listen on.
 * @port: port to listen on (0 = any free port).
 * @adminToken: the admin token, if any.
 * @platformFile: the platform description file, if any.
 * @logLevel: the pino level.
 * @limits: resource limits for the Platform (absent ones: LIMITS; the memory
 *   limit: defaultMemoryLimit()).
 * @profile: the kernel release whose behaviour runs (`--kernel`).
 * @bodyLimit: the largest request body (bytes); larger → 413 EMSGSIZE.
 * @maxFrame: the largest stream frame a client may send (bytes); larger → close 1009.
 * @errorFramesPerSecond: error frames one connection may provoke per second; one more → close 1008.
 * @heartbeatMs: the stream ping interval.
 * @maxConnections: open TCP connections at most; one more is closed as accepted.
 * @help: `--help` was given.
 * @version: `--version` was given.
 */
export interface Config {
  host: string;
  port: number;
  adminToken: string | undefined;
  platformFile: string | undefined;
  logLevel: LogLevel;
  limits: NonNullable<PlatformOptions['limits']>;
  profile: KernelProfile;
  bodyLimit: number;
  maxFrame: number;
  errorFramesPerSecond: number;
  heartbeatMs: number;
  maxConnections: number;
  help: boolean;
  version: boolean;
}

const zCount = z
  .string()
  .regex(/^\d{1,10}$/, { error: 'expected a positive integer' })
  .transform(Number)
  .pipe(z.number().min(1, { error: 'expected a positive integer' }).max(0xffffffff, { error: 'expected at most 4294967295' }));

/** defaultMemoryLimit() - the memory budget without --memory-limit: the host's RAM / LIMITS.memoryLimitDivisor. */
export function defaultMemoryLimit(): number {
  return Math.floor(totalmem() / LIMITS.memoryLimitDivisor);
}

const SIZE_UNITS: Readonly<Record<string, number>> = { '': 1, K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40 };

/** A byte count with an optional K/M/G/T suffix (powers of 1024, an optional `i`/`iB`/`B`): `512M`, `2GiB`. */
const zBytes = z
  .string()
  .regex(/^\d{1,15}\s*(?:[KMGT](?:i?B)?|B)?$/i, { error: 'expected a number of bytes, optionally with a K, M, G or T suffix (e.g. 512M)' })
  .transform((v) => {
    const m = /^(\d+)\s*([KMGT]?)/i.exec(v)!;
    return Number(m[1]) * SIZE_UNITS[m[2]!.toUpperCase()]!;
  })
  .pipe(z.number().max(Number.MAX_SAFE_INTEGER, { error: 'too large' }));

/** The flags, each with its environment variable, as zod validates them (strings in). */
const zOptions = z.strictObject({
  host: z.string().min(1, { error: 'expected a host name or address' }).default('127.0.0.1'),
  port: z
    .string()
    .regex(/^\d{1,5}$/, { error: 'expected a port number 0..65535' })
    .transform(Number)
    .pipe(z.number().max(65535, { error: 'expected a port number 0..65535' }))
    .default(8080),
  'admin-token': z.string().min(1, { error: 'expected a non-empty token' }).optional(),
  platform: z.string().min(1, { error: 'expected a file name' }).optional(),
  'log-level': z.enum(LOG_LEVELS, { error: `expected one of ${LOG_LEVELS.join(', ')}` }).default('info'),
  'max-contexts': zCount.optional(),
  'max-objects': zCount.optional(),
  'max-streams': zCount.optional(),
  'max-mapped-pages': zCount.optional(),
  'max-devices': zCount.optional(),
  'max-partials': zCount.optional(),
  'memory-limit': zBytes.optional(),
  'response-log': z
    .string()
    .regex(/^\d{1,10}$/, { error: 'expected a number of responses (0 keeps every one)' })
    .transform(Number)
    .pipe(z.number().max(0xffffffff, { error: 'expected at most 4294967295' }))
    .optional(),
  'body-limit': zCount.default(1 << 20),
  'max-frame': zCount.default(1 << 20),
  'error-frames-per-second': zCount.default(20),
  'heartbeat-ms': zCount.default(15000),
  'max-connections': zCount.default(1024),
  kernel: z
    .enum(Object.keys(KERNEL_PROFILES) as [string, ...string[]], { error: `expected a kernel profile among ${Object.keys(KERNEL_PROFILES).join(', ')}` })
    .default('latest'),
  help: z.literal('true').optional(),
  version: z.literal('true').optional(),
});

/** FLAGS - every accepted flag name (without `--`). */
const FLAGS: readonly string[] = Object.keys(zOptions.shape);

/** envName() - the environment variable of a flag: `max-streams` → `IOPFD_MAX_STREAMS`. */
function envName(flag: string): string {
  return `IOPFD_${flag.toUpperCase().replace(/-/g, '_')}`;
}

/** USAGE - the `--help` text. */
export const USAGE = `usage: iopfd [--host HOST] [--port N] [--admin-token T] [--platform FILE] [--log-level L]
             [--max-contexts N] [--max-objects N] [--max-streams N] [--max-mapped-pages N]
             [--max-devices N] [--max-partials N] [--memory-limit BYTES[K|M|G|T]] [--response-log N] [--body-limit BYTES] [--max-frame BYTES] [--error-frames-per-second N]
             [--heartbeat-ms N] [--max-connections N] [--kernel ${Object.keys(KERNEL_PROFILES).join('|')}]
       iopfd --help | --version
Every flag also reads from IOPFD_<FLAG> (e.g. IOPFD_ADMIN_TOKEN); a flag wins.
log levels: ${LOG_LEVELS.join(', ')}
`;

/** readArgs() - `--flag value` and `--flag=value` pairs; --help and --version take no value; the last one of a flag wins. */
function readArgs(argv: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const m = /^--([a-z-]+)(?:=(.*))?$/s.exec(arg);
    if (!m || !FLAGS.includes(m[1]!)) throw new ConfigError(`unknown argument ${JSON.stringify(arg)}`);
    const flag = m[1]!;
    let value: string;
    if (flag === 'help' || flag === 'version') value = 'true';
    else if (m[2] !== undefined) value = m[2];
    else if (i + 1 < argv.length) value = argv[++i]!;
    else throw new ConfigError(`--${flag} needs a value`);
    out[flag] = value;
  }
  return out;
}

/**
 * isLoopback() - whether @host only accepts local connections.
 * @host: a host name or address.
 */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[(.*)\]$/, '$1').toLowerCase();
  if (h === 'localhost' || h === '::1') return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  return h.startsWith('::ffff:127.');
}

/**
 * parseConfig() - the configuration from flags and environment.
 * @argv: the arguments after the script name.
 * @env: the environment (only `IOPFD_*` variables are read).
 *
 * Return: the configuration.
 * Throws: ConfigError for an unknown flag, a bad value, or a non-loopback
 * host without an admin token.
 */
export function parseConfig(argv: readonly string[], env: Readonly<Record<string, string | undefined>>): Config {
  const raw: Record<string, string> = {};
  for (const flag of FLAGS) {
    const v = env[envName(flag)];
    if (v !== undefined && flag !== 'help' && flag !== 'version') raw[flag] = v;
  }
  Object.assign(raw, readArgs(argv));
  const r = zOptions.safeParse(raw);
  if (!r.success) {
    throw new ConfigError(r.error.issues.map((i) => `--${String(i.path[0])} (${envName(String(i.path[0]))}): ${i.message}`).join('; '));
  }
  const o = r.data;
  if (o.help === undefined && o.version === undefined && o['admin-token'] === undefined && !isLoopback(o.host)) {
    throw new ConfigError(
      `refusing to listen on ${o.host} without an admin token (--admin-token or IOPFD_ADMIN_TOKEN): only loopback hosts may leave /v1/platform open`,
    );
  }
  const limits: Config['limits'] = {};
  if (o['max-contexts'] !== undefined) limits.maxContexts = o['max-contexts'];
  if (o['max-objects'] !== undefined) limits.maxObjects = o['max-objects'];
  if (o['max-streams'] !== undefined) limits.maxStreamsPerFault = o['max-streams'];
  if (o['max-mapped-pages'] !== undefined) limits.maxMappedPages = o['max-mapped-pages'];
  if (o['max-devices'] !== undefined) limits.maxDevices = o['max-devices'];
  if (o['max-partials'] !== undefined) limits.maxPartials = o['max-partials'];
  if (o['memory-limit'] !== undefined) limits.memoryLimit = o['memory-limit'];
  if (o['response-log'] !== undefined) limits.responseLog = o['response-log'];
  return {
    host: o.host,
    port: o.port,
    adminToken: o['admin-token'],
    platformFile: o.platform,
    logLevel: o['log-level'],
    limits,
    profile: kernelProfile(o.kernel)!,
    bodyLimit: o['body-limit'],
    maxFrame: o['max-frame'],
    errorFramesPerSecond: o['error-frames-per-second'],
    heartbeatMs: o['heartbeat-ms'],
    maxConnections: o['max-connections'],
    help: o.help !== undefined,
    version: o.version !== undefined,
  };
}

/**
 * loadPlatformFile() - read a `--platform FILE` description.
 * @file: the path of a JSON file matching the protocol's platform-file schema.
 *
 * Return: the platform description (device caps defaults applied).
 * Throws: ConfigError if the file cannot be read, is not JSON, or does not
 * match the schema.
 */
export function loadPlatformFile(file: string): PlatformDesc {
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new ConfigError(`--platform ${file}: ${(e as Error).message}`);
  }
  const r = zPlatformFile.safeParse(json);
  if (!r.success) throw new ConfigError(`--platform ${file}: ${formatZodError(r.error, 'platform')}`);
  return r.data;
}
