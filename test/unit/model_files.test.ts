// readModelFolder: which weight files a diffusers / transformers model folder resolves to, and the
// errors that say where it looked.
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { readModelFolder } from '../../lib/models/model_files.js';
import { tempDir } from '../helpers/tmp.js';

function folder(files: Record<string, string>): string {
  const dir = join(tempDir('pia-model-files-'), 'm');
  mkdirSync(dir);
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  return dir;
}

const opts = { weightNames: ['diffusion_pytorch_model'], what: 'vae' };

test('a single safetensors file, with the config as text and parsed', async () => {
  const dir = folder({ 'config.json': '{"sample_size": 32}', 'diffusion_pytorch_model.safetensors': '' });
  const f = await readModelFolder(dir, opts);
  assert.deepEqual(f.weightPaths, [join(dir, 'diffusion_pytorch_model.safetensors')]);
  assert.equal(f.config.sample_size, 32);
  assert.equal(f.configJson, '{"sample_size": 32}');
});

test('a variant picks <stem>.<variant>.safetensors', async () => {
  const dir = folder({
    'config.json': '{}',
    'diffusion_pytorch_model.safetensors': '',
    'diffusion_pytorch_model.fp16.safetensors': '',
  });
  const f = await readModelFolder(dir, { ...opts, variant: 'fp16' });
  assert.deepEqual(f.weightPaths, [join(dir, 'diffusion_pytorch_model.fp16.safetensors')]);
});

test('shards listed by the index, each once, in order of first mention', async () => {
  const index = { weight_map: { a: 'm-00001-of-00002.safetensors', b: 'm-00002-of-00002.safetensors', c: 'm-00001-of-00002.safetensors' } };
  const dir = folder({
    'config.json': '{}',
    'model.safetensors.index.json': JSON.stringify(index),
    'm-00001-of-00002.safetensors': '',
    'm-00002-of-00002.safetensors': '',
  });
  const f = await readModelFolder(dir, { weightNames: ['model'], what: 'text encoder' });
  assert.deepEqual(f.weightPaths, [join(dir, 'm-00001-of-00002.safetensors'), join(dir, 'm-00002-of-00002.safetensors')]);
});

test('errors: no folder, no config, no weights, a missing shard, a path in the index, pickled weights only', async () => {
  await assert.rejects(readModelFolder('/nonexistent/pia/model', opts), { code: 'E_MODEL_NOT_FOUND' });
  await assert.rejects(readModelFolder(folder({}), opts), (e: any) => e.code === 'E_MODEL_NOT_FOUND' && /config\.json/.test(e.message));
  await assert.rejects(readModelFolder(folder({ 'config.json': '{}' }), opts), (e: any) =>
    e.code === 'E_MODEL_NOT_FOUND' && /diffusion_pytorch_model\.safetensors, .*index\.json/.test(e.message));
  await assert.rejects(
    readModelFolder(folder({ 'config.json': '{}', 'model.safetensors.index.json': '{"weight_map": {"a": "gone.safetensors"}}' }), { weightNames: ['model'], what: 'x' }),
    { code: 'E_MODEL_NOT_FOUND' },
  );
  await assert.rejects(
    readModelFolder(folder({ 'config.json': '{}', 'model.safetensors.index.json': '{"weight_map": {"a": "../x.safetensors"}}' }), { weightNames: ['model'], what: 'x' }),
    { code: 'E_WEIGHTS_CORRUPT' },
  );
  await assert.rejects(readModelFolder(folder({ 'config.json': '{}', 'diffusion_pytorch_model.bin': '' }), opts), { code: 'E_UNSUPPORTED' });
  await assert.rejects(readModelFolder(folder({ 'config.json': '[1]', 'diffusion_pytorch_model.safetensors': '' }), opts), { code: 'E_UNSUPPORTED' });
  await assert.rejects(readModelFolder(folder({}), { ...opts, signal: AbortSignal.abort() }), { name: 'AbortError' });
});
