// `--lora path[:scale]` / `--embedding path[:token]`: the suffix is split off only when the whole argument is
// not an existing path and the suffix has the right form, so colon-containing file names load as given.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { UsageError } from '../../lib/cli/usage_error.js';
import { parseEmbeddingArg, parseLoraArg } from '../../lib/cli/weight_args.js';
import { tempDir } from '../helpers/tmp.js';

const dir = tempDir('pia-weight-args-');
const colonFile = join(dir, 'style:v2.safetensors');
const numericTail = join(dir, 'lora:0.5');
writeFileSync(colonFile, '');
writeFileSync(numericTail, '');

test('--lora: a numeric suffix is the scale; otherwise the whole argument is the path', () => {
  assert.deepEqual(parseLoraArg('a.safetensors'), { path: 'a.safetensors', scale: 1 });
  assert.deepEqual(parseLoraArg('a.safetensors:0.8'), { path: 'a.safetensors', scale: 0.8 });
  assert.deepEqual(parseLoraArg('a.safetensors:-1.5e-1'), { path: 'a.safetensors', scale: -0.15 });
  assert.deepEqual(parseLoraArg('dir/a:b.safetensors'), { path: 'dir/a:b.safetensors', scale: 1 });
  assert.deepEqual(parseLoraArg('a.safetensors:'), { path: 'a.safetensors:', scale: 1 });
  assert.deepEqual(parseLoraArg(`${colonFile}:0.25`), { path: colonFile, scale: 0.25 });
  assert.deepEqual(parseLoraArg(colonFile), { path: colonFile, scale: 1 });
  // An existing file whose name ends in ':<number>' is that file, not a scale.
  assert.deepEqual(parseLoraArg(numericTail), { path: numericTail, scale: 1 });
  assert.throws(() => parseLoraArg(''), UsageError);
});

test('--embedding: a word after the last colon is the token; paths and empty suffixes are not', () => {
  assert.deepEqual(parseEmbeddingArg('e.pt'), { path: 'e.pt' });
  assert.deepEqual(parseEmbeddingArg('e.pt:<kitestyle>'), { path: 'e.pt', token: '<kitestyle>' });
  assert.deepEqual(parseEmbeddingArg('e.pt:'), { path: 'e.pt:' });
  assert.deepEqual(parseEmbeddingArg('a:b/e.pt'), { path: 'a:b/e.pt' });
  assert.deepEqual(parseEmbeddingArg('e.pt:two words'), { path: 'e.pt:two words' });
  assert.deepEqual(parseEmbeddingArg(colonFile), { path: colonFile });
  assert.deepEqual(parseEmbeddingArg(`${colonFile}:tok`), { path: colonFile, token: 'tok' });
  assert.throws(() => parseEmbeddingArg(''), UsageError);
});
