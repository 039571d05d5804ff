/**
 * DOC: did-you-mean for iopfctl
 *
 * An unknown command or option is answered with the closest known one, by
 * optimal string alignment distance (Levenshtein plus the transposition of
 * two neighbours: `devcies` is one edit from `devices`).
 */

/**
 * editDistance() - the optimal string alignment distance of @a and @b.
 *
 * Return: the least number of insertions, deletions, substitutions and
 * transpositions of two adjacent characters turning @a into @b.
 */
export function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_r, i) => Array.from({ length: b.length + 1 }, (_c, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let best = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) best = Math.min(best, d[i - 2]![j - 2]! + 1);
      d[i]![j] = best;
    }
  }
  return d[a.length]![b.length]!;
}

/**
 * closest() - the candidate nearest to @typed, if it is near enough: at most
 * one edit for up to 4 characters, two for longer ones, and never the
 * whole word.
 * @typed: what was typed.
 * @candidates: the known words.
 *
 * Return: the nearest candidate (the first of equals), or undefined.
 */
export function closest(typed: string, candidates: Iterable<string>): string | undefined {
  const limit = typed.length <= 4 ? 1 : 2;
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const c of candidates) {
    const dist = editDistance(typed, c);
    if (dist < bestDistance && dist <= limit && dist < c.length) {
      best = c;
      bestDistance = dist;
    }
  }
  return best;
}

/** didYouMean() - ` (did you mean X?)` for the closest candidate, or ''. */
export function didYouMean(typed: string, candidates: Iterable<string>): string {
  const c = closest(typed, candidates);
  return c === undefined ? '' : ` (did you mean ${JSON.stringify(c)}?)`;
}
