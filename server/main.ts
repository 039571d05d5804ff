/**
 * DOC: the iopfd process
 *
 * Reads the configuration (flags, IOPFD_* variables, --platform FILE),
 * builds the app, listens, and prints exactly one line to stdout:
 * `iopfd listening on http://HOST:PORT` (the bound port), whatever the log
 * level; logs go to stderr. On SIGINT or SIGTERM: stop accepting, answer
 * every outstanding group INVALID, close every stream with 1001, write one
 * summary line to stderr, exit 0:
 *
 *   iopfd: shutdown: answered N outstanding groups INVALID, audit {...}, summary {...}
 *
 * where N counts the INVALID responses the devices received during shutdown
 * (from their response logs), `audit` is Platform.audit() afterwards (all
 * zeros: nothing left unanswered) and `summary` is the whole ShutdownSummary
 * (outstanding groups when shutdown began, responses by code), so that a
 * supervisor or a test can check the invariant across the process boundary.
 * A second signal exits at once with status 1. A configuration error exits
 * with status 2.
 */
import type { AddressInfo } from 'node:net';
import { IommuError } from '../core/index.js';
import { buildApp } from './app.js';
import { ConfigError, loadPlatformFile, parseConfig, USAGE, type Config } from './config.js';
import { createLogger } from './logger.js';
import { packageVersion } from './version.js';

/** fail() - report a start-up error on stderr and exit with @status. */
function fail(message: string, status: number): never {
  process.stderr.write(`iopfd: ${message}\n`);
  process.exit(status);
}

let config: Config;
try {
  config = parseConfig(process.argv.slice(2), process.env);
} catch (e) {
  if (e instanceof ConfigError) fail(`${e.message}\n${USAGE}`, 2);
  throw e;
}
if (config.help) {
  process.stdout.write(USAGE);
  process.exit(0);
}
if (config.version) {
  process.stdout.write(`iopfd ${packageVersion()}\n`);
  process.exit(0);
}

const log = createLogger(config.logLevel);
let daemon: ReturnType<typeof buildApp>;
try {
  daemon = buildApp({
    ...(config.platformFile === undefined ? {} : { platform: loadPlatformFile(config.platformFile) }),
    ...(config.adminToken === undefined ? {} : { adminToken: config.adminToken }),
    logger: log,
    limits: config.limits,
    profile: config.profile,
    bodyLimit: config.bodyLimit,
    maxConnections: config.maxConnections,
    stream: { heartbeatMs: config.heartbeatMs, maxFrame: config.maxFrame, errorFramesPerSecond: config.errorFramesPerSecond },
  });
} catch (e) {
  if (e instanceof ConfigError) fail(e.message, 2);
  if (e instanceof IommuError) fail(`bad platform description: ${e.errno}: ${e.message}`, 2);
  throw e;
}

try {
  await daemon.app.listen({ host: config.host, port: config.port });
} catch (e) {
  fail(`cannot listen on ${config.host}:${config.port}: ${(e as Error).message}`, 1);
}
const { port } = daemon.app.server.address() as AddressInfo;
const host = config.host.includes(':') && !config.host.startsWith('[') ? `[${config.host}]` : config.host;
process.stdout.write(`iopfd listening on http://${host}:${port}\n`);

let stopping = false;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (stopping) process.exit(1);
    stopping = true;
    log.info({ signal }, 'signal received');
    daemon.shutdown().then(
      async () => {
        // Responses deferred by the hardware model land in the next turn.
        await new Promise((r) => setImmediate(r));
        const s = daemon.shutdownSummary();
        if (s) process.stderr.write(`iopfd: shutdown: answered ${s.answered.invalid} outstanding groups INVALID, audit ${JSON.stringify(s.audit)}, summary ${JSON.stringify(s)}\n`);
        process.exit(0);
      },
      (err: unknown) => {
        log.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  });
}
