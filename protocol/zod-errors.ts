/**
 * DOC: validation messages
 *
 * Every wire schema names what it expects, so that a refused request reads
 * `body.iova: expected a "0x…" u64 string` or `body: unknown key "x"`, one
 * line, with the path of the offending field. The server sends that line as
 * the `message` of the EINVAL error.
 */
import type { z } from 'zod';

/** Fields of a zod issue that the message callbacks look at. */
interface IssueInfo {
  readonly code?: string;
  readonly keys?: readonly string[];
  readonly input?: unknown;
}

/**
 * expectMessage() - zod error callback: "required" or "expected <what>".
 * @what: what the field must hold, e.g. `a u32 JSON number`.
 *
 * Return: a callback for zod's `error` parameter.
 */
export function expectMessage(what: string): (issue: IssueInfo) => string {
  return (issue) => (issue.input === undefined ? 'required' : `expected ${what}`);
}

/**
 * objectMessage() - zod error callback for a strict object.
 * @what: what the object is, e.g. `an object`.
 *
 * Names the unknown keys (`unknown key "x", "y"`), else says "required" or
 * "expected <what>".
 *
 * Return: a callback for zod's `error` parameter.
 */
export function objectMessage(what: string): (issue: IssueInfo) => string {
  return (issue) =>
    issue.code === 'unrecognized_keys'
      ? `unknown key ${(issue.keys ?? []).map((k) => JSON.stringify(k)).join(', ')}`
      : issue.input === undefined
        ? 'required'
        : `expected ${what}`;
}

/**
 * formatPath() - spell an issue path: `.a.b[2].c`.
 * @path: the issue's path.
 */
function formatPath(path: readonly PropertyKey[]): string {
  let s = '';
  for (const p of path) {
    const key = String(p);
    s += typeof p === 'number' ? `[${p}]` : /^[A-Za-z_$][\w$]*$/.test(key) ? `.${key}` : `[${JSON.stringify(key)}]`;
  }
  return s;
}

/**
 * formatZodError() - one-line message for a failed validation.
 * @err: the error from safeParse().
 * @where: what was validated: `body` (default), `params`, `query`, ...
 *
 * Each issue becomes `<where><path>: <reason>`; several are joined by "; ".
 *
 * Return: e.g. `body.iova: expected a "0x…" u64 string`.
 */
export function formatZodError(err: z.ZodError, where = 'body'): string {
  return err.issues.map((i) => `${where}${formatPath(i.path)}: ${i.message}`).join('; ');
}
