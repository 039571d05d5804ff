/**
 * DOC: a small YAML emitter for `iopfctl -o yaml`
 *
 * The results iopfctl prints are plain JSON values (objects, arrays,
 * strings, numbers, booleans, null), so a YAML 1.2 block-style emitter of a
 * few lines does, with no dependency. A string is written bare only when no
 * YAML reader could take it for anything else (it starts with a letter, has
 * no `: ` or ` #`, and is not a YAML 1.1 boolean or null word); every other
 * string is written double-quoted as JSON writes it, which YAML reads back
 * unchanged. So `"0x1000"` and `"00:02.0"` stay strings.
 */

type Json = null | boolean | number | string | readonly Json[] | { readonly [k: string]: Json | undefined };

/** Words a YAML 1.1 reader takes for a boolean or null. */
const RESERVED = /^(?:y|n|yes|no|true|false|on|off|null|~)$/i;

/** scalar() - a string, number, boolean or null as a YAML scalar. */
function scalar(v: null | boolean | number | string): string {
  if (typeof v !== 'string') return v === null ? 'null' : String(v);
  return /^[A-Za-z_][A-Za-z0-9_./-]*$/.test(v) && !RESERVED.test(v) ? v : JSON.stringify(v);
}

/** isNode() - whether @v is a non-empty array or object (written on the next lines). */
function isNode(v: Json): v is readonly Json[] | { readonly [k: string]: Json } {
  return typeof v === 'object' && v !== null && (Array.isArray(v) ? v.length > 0 : Object.keys(v).length > 0);
}

/** inline() - a scalar, or `[]` / `{}` for an empty array or object. */
function inline(v: Json): string {
  if (Array.isArray(v)) return '[]';
  if (typeof v === 'object' && v !== null) return '{}';
  return scalar(v as null | boolean | number | string);
}

/** lines() - @v (an array or object with entries) as block lines at @indent. */
function lines(v: readonly Json[] | { readonly [k: string]: Json | undefined }, indent: string): string[] {
  const out: string[] = [];
  if (Array.isArray(v)) {
    for (const item of v as readonly Json[]) {
      if (!isNode(item)) out.push(`${indent}- ${inline(item)}`);
      else {
        // The item's first line goes after the dash, the others under it.
        const inner = lines(item, `${indent}  `);
        out.push(`${indent}- ${inner[0]!.slice(indent.length + 2)}`, ...inner.slice(1));
      }
    }
    return out;
  }
  for (const [k, item] of Object.entries(v)) {
    if (item === undefined) continue;
    const key = scalar(k);
    if (!isNode(item)) out.push(`${indent}${key}: ${inline(item)}`);
    else out.push(`${indent}${key}:`, ...lines(item, `${indent}  `));
  }
  return out;
}

/**
 * toYaml() - a JSON value as a YAML document (block style).
 * @value: what JSON.stringify would write (undefined members are left out).
 *
 * Return: the YAML text, without a trailing newline.
 */
export function toYaml(value: unknown): string {
  const v = JSON.parse(JSON.stringify(value ?? null)) as Json;
  return isNode(v) ? lines(v, '').join('\n') : inline(v);
}
