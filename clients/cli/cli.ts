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
 * A bare `iopfctl` prints the overview; `iopfctl help [COMMAND]` a
 * command's or group's help; an unknown command or option gets the closest
 * known one (did you mean …?); `completion bash|zsh` prints a completion
 * script; `--version` the package version.
 *
 * Global options: --url (IOPFD_URL), --admin-token (IOPFD_ADMIN_TOKEN),
 * --ctx (IOPFD_CTX) and --token (IOPFD_TOKEN) for context commands,
 * -o/--output json|yaml|wide (--json is -o json), --version, --help.
 */
import { parseArgs } from 'node:util';
import { connectionOf, errorReport, EXIT, parseU32, UsageError } from '../common/args.js';
import { packageVersion } from '../common/version.js';
import { IopfdClient } from '../sdk/index.js';
import { Options, OUTPUT_FORMATS, type CliCommand, type CliIo, type Invocation, type OptionSpec, type OutputFormat } from './command.js';
import { ADMIN_CONTEXT_COMMANDS, CONTEXT_COMMANDS, PLATFORM_COMMANDS } from './commands.js';
import { completionScript, SHELLS } from './completion.js';
import { closest, didYouMean, editDistance } from './suggest.js';
import { VIOMMU_COMMANDS } from './viommu-commands.js';
import { DEVICE_TRAFFIC, TRAFFIC_STOP, WATCH } from './streams.js';
import { toYaml } from './yaml.js';

const GLOBAL_OPTIONS: readonly OptionSpec[] = [
  { name: 'url', arg: 'URL', help: 'the daemon (IOPFD_URL; default http://127.0.0.1:8080)' },
  { name: 'admin-token', arg: 'T', help: 'admin token for platform commands (IOPFD_ADMIN_TOKEN)' },
  { name: 'ctx', arg: 'N', help: 'context id for context commands (IOPFD_CTX)' },
  { name: 'token', arg: 'T', help: 'context token (IOPFD_TOKEN)' },
  { name: 'output', short: 'o', arg: OUTPUT_FORMATS.join('|'), help: 'print results as JSON, YAML, or readable with more columns (default: readable)' },
  { name: 'json', help: 'print results as JSON (same as -o json)' },
  { name: 'version', help: 'print the version of iopfctl' },
  { name: 'help', short: 'h', help: 'show help' },
];

/** HELP - `iopfctl help [COMMAND...]`: the overview, a group's or a command's help. */
const HELP: CliCommand = {
  words: ['help'],
  args: ['[COMMAND...]'],
  rest: true,
  summary: "show the overview, or a command's or group's help",
  options: [],
  run: async (inv) => {
    inv.io.stdout.write(helpOf(inv.rest));
    return undefined;
  },
};

/** COMPLETION - `iopfctl completion bash|zsh`: a shell completion script. */
const COMPLETION: CliCommand = {
  words: ['completion'],
  args: [SHELLS.join('|')],
  summary: 'print a shell completion script (source <(iopfctl completion bash))',
  options: [],
  run: async (inv) => {
    const shell = inv.args[SHELLS.join('|')]!;
    if (!(SHELLS as readonly string[]).includes(shell)) throw new UsageError(`expected ${SHELLS.join(' or ')}, got ${JSON.stringify(shell)}${didYouMean(shell, SHELLS)}`);
    const top = [...new Set(COMMANDS.map((c) => c.words[0]!))];
    inv.io.stdout.write(completionScript(shell as (typeof SHELLS)[number], COMMANDS, GLOBAL_OPTIONS, { completion: SHELLS, help: top }));
    return undefined;
  },
};

/** COMMANDS - every iopfctl command. */
export const COMMANDS: readonly CliCommand[] = Object.freeze([
  ...PLATFORM_COMMANDS,
  ...ADMIN_CONTEXT_COMMANDS,
  ...CONTEXT_COMMANDS,
  ...VIOMMU_COMMANDS,
  WATCH,
  DEVICE_TRAFFIC,
  TRAFFIC_STOP,
  HELP,
  COMPLETION,
]);

function optionLines(options: readonly OptionSpec[]): string {
  const left = options.map((o) => `  ${o.short ? `-${o.short}, ` : ''}--${o.name}${o.arg ? ` ${o.arg}` : ''}`);
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
    `'iopfctl help COMMAND' or 'iopfctl COMMAND --help' shows a command's options. Exit codes: 0 ok, 1 the daemon refused, 2 usage, 3 no connection.\n`
  );
}

/** Every option of every command, for one parseArgs pass (an option has one type everywhere). */
const ALL_OPTIONS = Object.fromEntries(
  [...GLOBAL_OPTIONS, ...COMMANDS.flatMap((c) => c.options)].map((o) => [
    o.name,
    { type: o.arg === undefined ? ('boolean' as const) : ('string' as const), ...(o.short ? { short: o.short } : {}) },
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

/** isGroup() - whether @word is the first word of several commands' words (`ioas`, `devices`). */
function isGroup(word: string | undefined): boolean {
  return COMMANDS.some((c) => c.words.length > 1 && c.words[0] === word);
}

/**
 * unknownCommand() - the refusal of @positionals that name no command, with
 * the closest command (`devcies list` → `devices list`).
 */
function unknownCommand(positionals: readonly string[], except?: CliCommand): UsageError {
  // Compare with each command's words, as many words as the command has.
  let best: { words: string; distance: number } | undefined;
  for (const c of COMMANDS) {
    if (c === except) continue;
    const typed = positionals.slice(0, c.words.length).join(' ');
    const words = c.words.join(' ');
    if (closest(typed, [words]) === undefined) continue;
    const distance = editDistance(typed, words);
    if (!best || distance < best.distance) best = { words, distance };
  }
  const hint = best ? ` (did you mean ${JSON.stringify(best.words)}?)` : '';
  return new UsageError(`unknown command ${JSON.stringify(positionals.join(' '))}${hint}\n\n${overview([])}`);
}

/**
 * helpOf() - what `iopfctl help WORDS` prints: the overview for no words, a
 * group's overview, or a command's help.
 * Throws: UsageError for words that name no command or group.
 */
function helpOf(words: readonly string[]): string {
  if (words.length === 0) return overview([]);
  const command = findCommand(words);
  if (command && command.words.length === words.length) return usageOf(command);
  if (words.length === 1 && isGroup(words[0])) return overview(words);
  throw unknownCommand(words);
}

/** unknownOption() - a parseArgs unknown-option refusal, with the closest option. */
function unknownOption(e: unknown): unknown {
  if (!(e instanceof TypeError) || (e as { code?: unknown }).code !== 'ERR_PARSE_ARGS_UNKNOWN_OPTION') return e;
  const m = /Unknown option '(-{1,2})([^']+)'/.exec(e.message);
  if (!m) return e;
  const names = Object.keys(ALL_OPTIONS).map((n) => `--${n}`);
  return new UsageError(`${e.message.split('. ')[0]}${didYouMean(`${m[1]}${m[2]}`, names)}`);
}

/**
 * outputOf() - the output format: -o/--output, or --json, or readable text.
 * Throws: UsageError for an unknown format, or --json with another -o.
 */
function outputOf(opts: Options): OutputFormat {
  const o = opts.str('output');
  if (o !== undefined && !(OUTPUT_FORMATS as readonly string[]).includes(o)) {
    throw new UsageError(`-o/--output: expected ${OUTPUT_FORMATS.join(', ')}, got ${JSON.stringify(o)}${didYouMean(o, OUTPUT_FORMATS)}`);
  }
  if (opts.flag('json') && o !== undefined && o !== 'json') throw new UsageError(`--json is -o json: it cannot go with -o ${o}`);
  return (o as OutputFormat | undefined) ?? (opts.flag('json') ? 'json' : 'text');
}

/** formatResult() - a command's result in the chosen output format. */
function formatResult(command: CliCommand, result: unknown, output: OutputFormat): string {
  if (output === 'yaml') return toYaml(result);
  if (output === 'json' || !command.text) return JSON.stringify(result);
  return (command.text as (r: unknown, wide: boolean) => string)(result, output === 'wide');
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
    let parsed;
    try {
      parsed = parseArgs({ args: [...argv], options: ALL_OPTIONS, allowPositionals: true, strict: true, tokens: true });
    } catch (e) {
      throw unknownOption(e);
    }
    const { values, positionals, tokens } = parsed;
    if (values['version'] === true) {
      io.stdout.write(`iopfctl ${packageVersion()}\n`);
      return EXIT.OK;
    }
    command = findCommand(positionals);
    if (!command) {
      // A bare iopfctl, or a group with --help: the overview.
      if (positionals.length === 0 || (positionals.length === 1 && isGroup(positionals[0]) && values['help'] === true)) {
        io.stdout.write(overview(positionals));
        return EXIT.OK;
      }
      if (positionals.length === 1 && isGroup(positionals[0])) {
        throw new UsageError(`'${positionals[0]}' needs a command\n\n${overview(positionals)}`);
      }
      throw unknownCommand(positionals);
    }
    if (values['help'] === true) {
      io.stdout.write(usageOf(command));
      return EXIT.OK;
    }
    const allowed = new Set([...GLOBAL_OPTIONS, ...command.options].map((o) => o.name));
    for (const t of tokens) {
      if (t.kind === 'option' && !allowed.has(t.name)) {
        const hint = didYouMean(`--${t.name}`, [...allowed].map((n) => `--${n}`));
        throw new UsageError(`'iopfctl ${command.words.join(' ')}' has no option --${t.name}${hint}\n\n${usageOf(command)}`);
      }
    }
    const rest = positionals.slice(command.words.length);
    if (!command.rest && rest.length !== command.args.length) {
      const more = rest.length > command.args.length ? unknownHint(positionals, command) : '';
      throw new UsageError(`expected ${command.args.join(' ') || 'no arguments'}${more}\n\n${usageOf(command)}`);
    }
    const opts = new Options(values as Record<string, string | boolean | undefined>);
    const output = outputOf(opts);
    const client = new IopfdClient(connectionOf({ url: opts.str('url'), 'admin-token': opts.str('admin-token') }, io.env));
    const inv: Invocation = {
      args: command.rest ? {} : Object.fromEntries(command.args.map((a, i) => [a, rest[i]!])),
      rest: command.rest ? rest : [],
      opts,
      client,
      context: () => {
        const ctx = opts.str('ctx') ?? io.env['IOPFD_CTX'];
        const token = opts.str('token') ?? io.env['IOPFD_TOKEN'];
        if (ctx === undefined || token === undefined) throw new UsageError('this command needs --ctx and --token (or IOPFD_CTX and IOPFD_TOKEN)');
        return client.context(parseU32('--ctx', ctx, 1), token);
      },
      json: output === 'json',
      output,
      io,
    };
    const result = await command.run(inv);
    if (result !== undefined) {
      const text = formatResult(command, result, output);
      if (text !== '') io.stdout.write(`${text}\n`);
    }
    return EXIT.OK;
  } catch (e) {
    const r = errorReport(e);
    io.stderr.write(`iopfctl${command ? ` ${command.words.join(' ')}` : ''}: ${r.message}\n`);
    return r.code;
  }
}

/** unknownHint() - ` (did you mean …?)` when @positionals are near a longer command (`ctx lsit`). */
function unknownHint(positionals: readonly string[], command: CliCommand): string {
  const m = /\(did you mean [^)]*\)/.exec(unknownCommand(positionals, command).message);
  return m ? ` ${m[0]}` : '';
}
