import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfigJson } from '../../lib/config_json.js';

test("parses Python json's NaN / Infinity literals, leaves strings alone", () => {
  const v = parseConfigJson('{"a": -Infinity, "b": [Infinity, NaN, 1], "c": "-Infinity NaN", "d": "q\\"Infinity"}') as Record<string, unknown>;
  assert.equal(v.a, -Infinity);
  assert.deepEqual(v.b, [Infinity, NaN, 1]);
  assert.equal(v.c, '-Infinity NaN');
  assert.equal(v.d, 'q"Infinity');
  assert.deepEqual(parseConfigJson('{"x": 1}'), { x: 1 });
  assert.throws(() => parseConfigJson('{"x": Infinit}'), SyntaxError);
});
