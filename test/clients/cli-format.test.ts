// iopfctl's output and hint helpers: the YAML emitter of `-o yaml` and the
// edit distance behind "did you mean".
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { toYaml } from '../../clients/cli/yaml.js';
import { closest, editDistance } from '../../clients/cli/suggest.js';
import { ageText } from '../../clients/cli/commands.js';

test('toYaml: block style; strings a YAML reader could take for something else are quoted', () => {
  const doc = {
    name: 'nic0',
    bdf: '00:02.0',
    iova: '0x1000',
    flags: ['true', 'no', 'null', '', 'a: b', 'x #y', 'plain-word', 'caf\u00e9'],
    n: 12,
    ok: false,
    none: null,
    skipped: undefined,
    empty: [],
    obj: {},
    nested: [{ a: 1, b: [1, [2, 3]] }, [], { c: { d: 'e' } }],
  };
  assert.equal(
    toYaml(doc),
    [
      'name: nic0',
      'bdf: "00:02.0"',
      'iova: "0x1000"',
      'flags:',
      '  - "true"',
      '  - "no"',
      '  - "null"',
      '  - ""',
      '  - "a: b"',
      '  - "x #y"',
      '  - plain-word',
      '  - "caf\u00e9"',
      '"n": 12',
      'ok: false',
      'none: null',
      'empty: []',
      'obj: {}',
      'nested:',
      '  - a: 1',
      '    b:',
      '      - 1',
      '      - - 2',
      '        - 3',
      '  - []',
      '  - c:',
      '      d: e',
    ].join('\n'),
  );
  assert.equal(toYaml([]), '[]');
  assert.equal(toYaml('0x1'), '"0x1"');
  assert.equal(toYaml(undefined), 'null');
});

test('editDistance and closest: transpositions count one; far words are not suggested', () => {
  assert.equal(editDistance('devcies', 'devices'), 1);
  assert.equal(editDistance('lenght', 'length'), 1);
  assert.equal(editDistance('', 'abc'), 3);
  assert.equal(editDistance('kitten', 'sitting'), 3);
  assert.equal(closest('--lenght', ['--iova', '--length', '--data']), '--length');
  assert.equal(closest('yml', ['json', 'yaml', 'wide']), 'yaml');
  assert.equal(closest('frobnicate', ['devices', 'dma', 'inject']), undefined);
  assert.equal(closest('x', ['d', 'o']), undefined, 'never the whole word');
});

test('ageText: seconds, minutes, hours, days', () => {
  assert.deepEqual([999, 59_999, 61_000, 3_600_000 + 5 * 60_000, 86_400_000 * 2 + 3_600_000 * 3].map(ageText), ['0s', '59s', '1m01s', '1h05m', '2d03h']);
});
