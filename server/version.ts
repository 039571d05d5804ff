/**
 * DOC: the daemon's version, for `iopfd --version`
 */
import { readFileSync } from 'node:fs';

/**
 * packageVersion() - the `version` of the package's package.json (read from
 * dist/server/, two folders up).
 *
 * Return: e.g. `0.1.0`, or `unknown` if package.json cannot be read.
 */
export function packageVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: unknown };
    return typeof pkg.version === 'string' ? pkg.version : 'unknown';
  } catch {
    return 'unknown';
  }
}
