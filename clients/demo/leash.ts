#!/usr/bin/env node
/**
 * DOC: leash - run a command that ends when its parent does
 *
 * usage: node leash.js COMMAND [ARGS...]
 *
 * Runs COMMAND with this process's stdout and stderr and waits for it. The
 * parent holds this process's stdin: when that reaches its end (the parent
 * closed it, exited, or was killed, even with SIGKILL), the command gets
 * SIGTERM, then SIGKILL 3 s later. SIGINT and SIGTERM are passed on. Exits
 * with the command's status (128 + signal number if a signal ended it).
 */
import { spawn } from 'node:child_process';
import { constants } from 'node:os';

const [command, ...args] = process.argv.slice(2);
if (command === undefined) {
  process.stderr.write('usage: leash COMMAND [ARGS...]\n');
  process.exit(2);
}
const child = spawn(command, args, { stdio: ['ignore', 'inherit', 'inherit'] });
let killTimer: NodeJS.Timeout | undefined;

/** end() - ask the command to stop; force it after 3 s. */
function end(signal: NodeJS.Signals): void {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill(signal);
  killTimer ??= setTimeout(() => child.kill('SIGKILL'), 3000);
}

process.stdin.on('end', () => end('SIGTERM'));
process.stdin.on('error', () => end('SIGTERM'));
process.stdin.resume();
process.on('SIGTERM', () => end('SIGTERM'));
process.on('SIGINT', () => end('SIGINT'));
child.on('error', (e) => {
  process.stderr.write(`leash: ${command}: ${e.message}\n`);
  process.exit(127);
});
child.on('exit', (code, signal) => {
  clearTimeout(killTimer);
  process.exit(code ?? 128 + (signal ? constants.signals[signal] : 0));
});
