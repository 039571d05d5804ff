/**
 * DOC: the shape of an iopfctl command
 *
 * What every command of iopfctl is made of (CliCommand: words, arguments,
 * options with their help, a run function on the SDK and a readable form of
 * its result), what it runs with (Invocation, CliIo), and the small helpers
 * the commands share: typed option access, PERM letters, tables.
 */
import { formatU64, PERM } from '../../protocol/index.js';
import { parseBig, parseU32, UsageError } from '../common/args.js';
import type { IopfdClient, IopfdContext } from '../sdk/index.js';

/** struct Output - a stream the CLI writes to. */
export interface Output {
  write(s: string): unknown;
  readonly isTTY?: boolean | undefined;
}

/**
 * struct CliIo - what the CLI runs with.
 * @stdout: results.
 * @stderr: errors, progress, notices.
 * @env: IOPFD_* variables.
 * @signal: aborted on SIGINT/SIGTERM; ends `watch` and `traffic`.
 */
export interface CliIo {
  stdout: Output;
  stderr: Output;
  env: Readonly<Record<string, string | undefined>>;
  signal?: AbortSignal | undefined;
}

/**
 * struct OptionSpec - one option of a command.
 * @name: without the dashes.
 * @arg: the value's name in the help (absent: a boolean flag).
 * @help: one line.
 * @short: its one-letter form, if any (e.g. `o` for `-o`).
 */
export interface OptionSpec {
  name: string;
  arg?: string;
  help: string;
  short?: string;
}

/** OUTPUT_FORMATS - `-o`: the wire JSON, YAML, or the readable form with more columns. */
export const OUTPUT_FORMATS = ['json', 'yaml', 'wide'] as const;
/** OutputFormat - how a result is printed: one of %OUTPUT_FORMATS, or the readable `text`. */
export type OutputFormat = (typeof OUTPUT_FORMATS)[number] | 'text';

/**
 * struct Invocation - a parsed command line, for a command's run().
 * @args: the positional arguments, by the names in the command's `args`.
 * @opts: typed access to the options.
 * @client: the SDK client (URL and admin token from flags or environment).
 * @context: the handle of the context named by --ctx/--token (UsageError
 *   without them).
 * @rest: the positional arguments after the words, for a command that
 *   takes any number (CliCommand.rest).
 * @json: the output is JSON (`-o json` or --json).
 * @output: the output format.
 * @io: the CLI's I/O.
 */
export interface Invocation {
  args: Readonly<Record<string, string>>;
  rest: readonly string[];
  opts: Options;
  client: IopfdClient;
  context(): IopfdContext;
  json: boolean;
  output: OutputFormat;
  io: CliIo;
}

/**
 * struct CliCommand - one iopfctl command.
 * @words: e.g. ['ioas', 'map'].
 * @args: positional argument names, e.g. ['IOAS'].
 * @summary: one line for the help.
 * @options: its own options.
 * @rest: it takes any number of positional arguments (Invocation.rest);
 *   @args then only names them for the help.
 * @run: does it; resolves with the wire result to print (undefined: nothing).
 * @text: the readable form of the result (default: JSON); @wide asks for
 *   the extra columns of `-o wide`, where the command has any.
 */
export interface CliCommand {
  words: readonly string[];
  args: readonly string[];
  summary: string;
  options: readonly OptionSpec[];
  rest?: boolean;
  run(inv: Invocation): Promise<unknown>;
  text?(result: never, wide: boolean): string;
}

/** Options - typed access to parsed option values. */
export class Options {
  constructor(private readonly values: Readonly<Record<string, string | boolean | undefined>>) {}

  /** str() - a string option, or undefined. */
  str(name: string): string | undefined {
    const v = this.values[name];
    return typeof v === 'string' ? v : undefined;
  }

  /** need() - a string option that must be given. */
  need(name: string): string {
    const v = this.str(name);
    if (v === undefined) throw new UsageError(`--${name} is required`);
    return v;
  }

  /** flag() - a boolean option. */
  flag(name: string): boolean {
    return this.values[name] === true;
  }

  /** u32() - a number option within [@min, @max], or undefined. */
  u32(name: string, min = 0, max = 0xffff_ffff): number | undefined {
    const v = this.str(name);
    return v === undefined ? undefined : parseU32(`--${name}`, v, min, max);
  }

  /** u64() - a u64 option spelled for the wire (`0x…`), or undefined. */
  u64(name: string): string | undefined {
    const v = this.str(name);
    return v === undefined ? undefined : formatU64(parseBig(`--${name}`, v));
  }

  /** oneOf() - an option among @allowed, or undefined. */
  oneOf<T extends string>(name: string, allowed: readonly T[]): T | undefined {
    const v = this.str(name);
    if (v !== undefined && !(allowed as readonly string[]).includes(v))
      throw new UsageError(`--${name}: expected ${allowed.join(' or ')}, got ${JSON.stringify(v)}`);
    return v as T | undefined;
  }

  /** pasid() - `--pasid N` as a `{pasid}` fragment (empty without it). */
  pasid(): { pasid?: number } {
    const p = this.u32('pasid', 0, 0xfffff);
    return p === undefined ? {} : { pasid: p };
  }
}

/** permOf() - `r`, `w`, `x`, `p` letters (or a number) as PERM bits. */
export function permOf(s: string): number {
  if (/^(0x[0-9a-f]+|\d+)$/i.test(s)) return parseU32('--perm', s, 0, 0xf);
  if (!/^[rwxp]+$/.test(s)) throw new UsageError(`--perm: expected letters r, w, x, p or a number, got ${JSON.stringify(s)}`);
  return (s.includes('r') ? PERM.READ : 0) | (s.includes('w') ? PERM.WRITE : 0) | (s.includes('x') ? PERM.EXEC : 0) | (s.includes('p') ? PERM.PRIV : 0);
}

/** permText() - PERM bits as letters, e.g. `rw`. */
export function permText(perm: number): string {
  return (
    (
      [
        [PERM.READ, 'r'],
        [PERM.WRITE, 'w'],
        [PERM.EXEC, 'x'],
        [PERM.PRIV, 'p'],
      ] as const
    )
      .map(([bit, c]) => (perm & bit ? c : ''))
      .join('') || '-'
  );
}

/** table() - rows as aligned columns under a header. */
export function table(header: readonly string[], rows: ReadonlyArray<readonly (string | number)[]>): string {
  const cells = [header, ...rows.map((r) => r.map(String))];
  const widths = header.map((_h, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  return cells.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')).join('\n');
}
