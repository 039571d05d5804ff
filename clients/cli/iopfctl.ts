#!/usr/bin/env node
/**
 * DOC: the iopfctl program
 *
 * bin `iopfctl`: runCli() on the process's arguments, stdout, stderr and
 * environment; SIGINT/SIGTERM end `watch` and `traffic` cleanly (a second
 * one exits at once).
 */
import { onTermination } from '../common/args.js';
import { runCli } from './cli.js';

const abort = new AbortController();
onTermination(() => abort.abort());
const code = await runCli(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, env: process.env, signal: abort.signal });
process.exit(code);
