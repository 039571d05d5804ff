/**
 * DOC: iopfctl - the command-line client
 *
 * One table of commands (COMMANDS), each with its words, positional
 * arguments, options (with their help), and a run function on the SDK.
 * runCli() parses with node:util parseArgs, finds the command by its words,
 * refuses options that are not its own or global, prints the result (a
 * readable form, or the wire JSON with --json) and returns the exit code:
 * 0 ok, 1 the daemon refused (`errno: message` on stderr), 2 bad usage,
 * 3 the daemon could not be reached. `--help` works on every command and
 * command group. The I/O is injected (CliIo) so that tests can run it in
 * process; bin `iopfctl` (iopfctl.ts) runs it on the real process.
 *
 * Global options: --url (IOPFD_URL), --admin-token (IOPFD_ADMIN_TOKEN),
 * --ctx (IOPFD_CTX) and --token (IOPFD_TOKEN) for context commands, --json.
 */
import { parseArgs } from 'node:util';
import { connectionOf, errorReport, EXIT, parseU32, UsageError } from '../common/args.js';
import { IopfdClient } from '../sdk/index.js';
import { Options, type CliCommand, type CliIo, type Invocation, type OptionSpec } from './command.js';
import { CONTEXT_COMMANDS, PLATFORM_COMMANDS } from './commands.js';
import { VIOMMU_COMMANDS } from './viommu-commands.js';
import { DEVICE_TRAFFIC, TRAFFIC_STOP, WATCH } from './streams.js';

const GLOBAL_OPTIONS: readonly OptionSpec[] = [
  { name: 'url', arg: 'URL', help: 'the daemon (IOPFD_URL; default http://127.0.0.1:8080)' },
  { name: 'admin-token', arg: 'T', help: 'admin token for platform commands (IOPFD_ADMIN_TOKEN)' },
  { name: 'ctx', arg: 'N', help: 'context id for context commands (IOPFD_CTX)' },
  { name: 'token', arg: 'T', help: 'context token (IOPFD_TOKEN)' },
  { name: 'json', help: 'print results as JSON' },
  { name: 'help', help: 'show help' },
];

/** COMMANDS - every iopfctl command. */
export const COMMANDS: readonly CliCommand[] = Object.freeze([...PLATFORM_COMMANDS, ...CONTEXT_COMMANDS, ...VIOMMU_COMMANDS, WATCH, DEVICE_TRAFFIC, TRAFFIC_STOP]);

function optionLines(options: readonly OptionSpec[]): string {
  const left = options.map((o) => `  --${o.name}${o.arg ? ` ${o.arg}` : ''}`);
  const width = Math.max(...left.map((l) => l.length)) + 2;
  return options.map((o, i) => `${left[i]!.padEnd(width)}${o.help}`).join('\n');
}

/** usageOf() - the help of a command. */
function usageOf(c: CliCommand): string {
  const synopsis = ['iopfctl', ...c.words, ...c.args, ...(c.options.length > 0 ? ['[options]'] : [])].join(' ');
  const own = c.options.length > 0 ? `\noptions:\n${optionLines(c.options)}\n` : '';
  return `usage: ${synopsis}\n\n${c.summary}\n${own}\nglobal options:\n${optionLines(GLOBAL_OPTIONS)}\n`;
}

/** overview() - the help of a group of commands (or all of them, for no words). */
function overview(words: readonly string[]): string {
  const cmds = COMMANDS.filter((c) => words.every((w, i) => c.words[i] === w));
  const left = cmds.map((c) => [...c.words, ...c.args].join(' '));
  const width = Math.max(...left.map((l) => l.length)) + 2;
  const lines = cmds.map((c, i) => `  ${left[i]!.padEnd(width)}${c.summary}`).join('\n');
  return (
    `usage: iopfctl ${words.length > 0 ? words.join(' ') + ' ' : ''}COMMAND [ARGS] [options]\n\ncommands:\n${lines}\n\n` +
    `global options:\n${optionLines(GLOBAL_OPTIONS)}\n\n` +
    `'iopfctl COMMAND --help' shows a command's options. Exit codes: 0 ok, 1 the daemon refused, 2 usage, 3 no connection.\n`
  );
}

/** Every option of every command, for one parseArgs pass (an option has one type everywhere). */
const ALL_OPTIONS = Object.fromEntries(
  [...GLOBAL_OPTIONS, ...COMMANDS.flatMap((c) => c.options)].map((o) => [
    o.name,
    o.name === 'help' ? { type: 'boolean' as const, short: 'h' } : { type: o.arg === undefined ? ('boolean' as const) : ('string' as const) },
  ]),
);

/** findCommand() - the command whose words start @positionals, the longest one. */
function findCommand(positionals: readonly string[]): CliCommand | undefined {
  let found: CliCommand | undefined;
  for (const c of COMMANDS) {
    if (c.words.every((w, i) => positionals[i] === w) && (!found || c.words.length > found.words.length)) found = c;
  }
  return found;
}

/**
 * runCli() - run one iopfctl command line.
 * @argv: the arguments after the program name.
 * @io: where to write, the environment, the abort signal.
 *
 * Return: the exit code (EXIT). Never throws.
 */
export async function runCli(argv: readonly string[], io: CliIo): Promise<number> {
  let command: CliCommand | undefined;
  try {
    const { values, positionals, tokens } = parseArgs({ args: [...argv], options: ALL_OPTIONS, allowPositionals: true, strict: true, tokens: true });
    command = findCommand(positionals);
    if (!command) {
      const group = positionals.length === 0 ? [] : COMMANDS.some((c) => c.words[0] === positionals[0]) && positionals.length === 1 ? [positionals[0]!] : undefined;
      if (group === undefined) throw new UsageError(`unknown command ${JSON.stringify(positionals.join(' '))}\n\n${overview([])}`);
      if (values['help'] === true) {
        io.stdout.write(overview(group));
        return EXIT.OK;
      }
      throw new UsageError(`'${group[0]}' needs a command\n\n${overview(group)}`);
    }
    if (values['help'] === true) {
      io.stdout.write(usageOf(command));
      return EXIT.OK;
    }
    const allowed = new Set([...GLOBAL_OPTIONS, ...command.options].map((o) => o.name));
    for (const t of tokens) {
      if (t.kind === 'option' && !allowed.has(t.name)) throw new UsageError(`'iopfctl ${command.words.join(' ')}' has no option --${t.name}\n\n${usageOf(command)}`);
    }
    const rest = positionals.slice(command.words.length);
    if (rest.length !== command.args.length) throw new UsageError(`expected ${command.args.join(' ') || 'no arguments'}\n\n${usageOf(command)}`);
    const opts = new Options(values as Record<string, string | boolean | undefined>);
    const client = new IopfdClient(connectionOf({ url: opts.str('url'), 'admin-token': opts.str('admin-token') }, io.env));
    const inv: Invocation = {
      args: Object.fromEntries(command.args.map((a, i) => [a, rest[i]!])),
      opts,
      client,
      context: () => {
        const ctx = opts.str('ctx') ?? io.env['IOPFD_CTX'];
        const token = opts.str('token') ?? io.env['IOPFD_TOKEN'];
        if (ctx === undefined || token === undefined) throw new UsageError('this command needs --ctx and --token (or IOPFD_CTX and IOPFD_TOKEN)');
        return client.context(parseU32('--ctx', ctx, 1), token);
      },
      json: opts.flag('json'),
      io,
    };
    const result = await command.run(inv);
    if (result !== undefined) {
      const text = inv.json || !command.text ? JSON.stringify(result) : (command.text as (r: unknown) => string)(result);
      if (text !== '') io.stdout.write(`${text}\n`);
    }
    return EXIT.OK;
  } catch (e) {
    const r = errorReport(e);
    io.stderr.write(`iopfctl${command ? ` ${command.words.join(' ')}` : ''}: ${r.message}\n`);
    return r.code;
  }
}
