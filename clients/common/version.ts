/**
 * DOC: the package version, for `--version`
 */
import { createRequire } from 'node:module';

/**
 * packageVersion() - the `version` of the package's package.json, by the
 * package's own name (its `exports` lists `./package.json`).
 *
 * Return: e.g. `0.1.0`.
 */
export function packageVersion(): string {
  return (createRequire(import.meta.url)('iopfd/package.json') as { version: string }).version;
}
