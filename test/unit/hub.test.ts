// Model resolution from the Hugging Face cache, offline: a cache folder is built on disk from the
// shared fixtures with huggingface_hub's layout (blobs/ named by content hash, snapshots/<commit>/
// holding relative symlinks into blobs/, refs/<branch> holding the commit), then models are loaded
// from it by repo id, revision and variant, and compared with the same models loaded from folders.
import assert from 'node:assert/strict';
import { cpSync, mkdirSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { afterEach, before, beforeEach, describe, test } from 'node:test';
import { backends } from '../../lib/backends.js';
import { PiaError } from '../../lib/errors.js';
import { narrowF16 } from '../../lib/io/float16.js';
import { readSafetensors, saveSafetensors, type SaveableTensor } from '../../lib/io/safetensors.js';
import { hubCacheRoot, isRepoId, resolveModel } from '../../lib/loaders/hub.js';
import { AutoencoderKL } from '../../lib/models/autoencoder_kl.js';
import { CLIPTextModel } from '../../lib/models/clip_text_model.js';
import { readModelFolder } from '../../lib/models/model_files.js';
import { MotionAdapter } from '../../lib/models/motion_adapter.js';
import { UNet2DConditionModel } from '../../lib/models/unet_2d_condition_model.js';
import { PIAPipeline, type PIAGenerateOptions } from '../../lib/pipelines/pia.js';
import { Generator } from '../../lib/random/generator.js';
import type { Tensor } from '../../lib/tensor.js';
import { CLIPTokenizer } from '../../lib/tokenizers/clip_tokenizer.js';
import { spawnSync } from 'node:child_process';
import { fixture, repoRoot } from '../helpers/fixtures.js';
import { addSnapshot, folderFiles } from '../helpers/hub_cache.js';
import { tempDir } from '../helpers/tmp.js';

const ENV_KEYS = ['HF_HUB_CACHE', 'HUGGINGFACE_HUB_CACHE', 'HF_HOME', 'XDG_CACHE_HOME'] as const;

const COMMIT_MAIN = 'a'.repeat(8) + '0123456789abcdef0123456789abcdef';
const COMMIT_V1 = 'b'.repeat(8) + '0123456789abcdef0123456789abcdef';
const V1_MARKER = '0.26.3+v1-snapshot';

/** A safetensors file as bytes, written through the project's writer. */
function safetensorsBytes(tensors: Record<string, SaveableTensor>, scratch: string): Buffer {
  const p = join(scratch, `t-${Math.random().toString(36).slice(2)}.safetensors`);
  saveSafetensors(p, tensors);
  const bytes = readFileSync(p);
  rmSync(p);
  return bytes;
}

/** Every F32 tensor of a file narrowed to F16 (what diffusers' fp16 variants hold). */
function toF16(path: string, scratch: string): Buffer {
  const f = readSafetensors(path);
  const out: Record<string, SaveableTensor> = {};
  for (const name of f.names()) {
    const t = f.get(name);
    out[name] = t.dtype === 'F32' ? { dtype: 'F16', data: narrowF16(t.toFloat32()), shape: t.shape } : { dtype: t.dtype, data: t.data, shape: t.shape };
  }
  return safetensorsBytes(out, scratch);
}

/** transformers' sharded layout: two shard files and the index naming which holds which tensor. */
function shard(path: string, scratch: string, stem = 'model'): Map<string, Buffer> {
  const f = readSafetensors(path);
  const names = f.names();
  const half = Math.ceil(names.length / 2);
  const out = new Map<string, Buffer>();
  const weightMap: Record<string, string> = {};
  let total = 0;
  [names.slice(0, half), names.slice(half)].forEach((part, i) => {
    const file = `${stem}-0000${i + 1}-of-00002.safetensors`;
    const tensors: Record<string, SaveableTensor> = {};
    for (const n of part) {
      const t = f.get(n);
      tensors[n] = { dtype: t.dtype, data: t.data, shape: t.shape };
      weightMap[n] = file;
      total += t.data.byteLength;
    }
    out.set(file, safetensorsBytes(tensors, scratch));
  });
  out.set(`${stem}.safetensors.index.json`, Buffer.from(JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap })));
  return out;
}

function isPiaError(code: string, ...patterns: (RegExp | string)[]) {
  return (e: unknown): boolean => {
    assert.ok(e instanceof PiaError, `expected a PiaError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    for (const p of patterns) {
      if (typeof p === 'string') assert.ok(e.message.includes(p), `message lacks ${JSON.stringify(p)}: ${e.message}`);
      else assert.match(e.message, p);
    }
    return true;
  };
}

// Small runs: 1 step, 2 frames, 16×16 (the tiny fixture's whole pipeline in well under a second).
const run = (pipe: PIAPipeline, o: Partial<PIAGenerateOptions> = {}) =>
  pipe.generate({
    image: fixture('golden/pipeline/input_64x64.png'), prompt: 'a red ball', numFrames: 2, height: 16, width: 16,
    numInferenceSteps: 1, generator: new Generator().manualSeed(7), outputType: 'tensor', ...o,
  }).then((r) => r.frames as Tensor);

describe('Hugging Face cache resolution', () => {
  const root = tempDir('pia-hub-');
  let cache: string;
  let fp16Folder: string;
  let savedEnv: Record<string, string | undefined>;
  const tiny = fixture('models', 'tiny');

  before(() => {
    cache = join(root, 'hub');
    const scratch = join(root, 'scratch');
    mkdirSync(scratch);
    // main: the tiny pipeline, its text encoder sharded, fp16 variants of the UNet and VAE beside the
    // fp32 files (as runwayml/stable-diffusion-v1-5 keeps them), none for the text encoder.
    const main = folderFiles(tiny);
    main.delete('text_encoder/model.safetensors');
    for (const [f, b] of shard(join(tiny, 'text_encoder', 'model.safetensors'), scratch)) main.set(`text_encoder/${f}`, b);
    const unet16 = toF16(join(tiny, 'unet', 'diffusion_pytorch_model.safetensors'), scratch);
    const vae16 = toF16(join(tiny, 'vae', 'diffusion_pytorch_model.safetensors'), scratch);
    main.set('unet/diffusion_pytorch_model.fp16.safetensors', unet16);
    main.set('vae/diffusion_pytorch_model.fp16.safetensors', vae16);
    addSnapshot(cache, 'test/tiny', COMMIT_MAIN, main, ['main']);
    // v1: another commit whose UNet config differs in a field nothing reads, so tests can tell them apart.
    const v1 = folderFiles(tiny);
    const unetConfig = JSON.parse(readFileSync(join(tiny, 'unet', 'config.json'), 'utf8'));
    v1.set('unet/config.json', Buffer.from(JSON.stringify({ ...unetConfig, _diffusers_version: V1_MARKER }, null, 2)));
    addSnapshot(cache, 'test/tiny', COMMIT_V1, v1, ['v1', 'refs/pr/1']);
    addSnapshot(cache, 'test/tiny-motion-adapter', COMMIT_MAIN, folderFiles(fixture('models', 'tiny-motion-adapter')), ['main']);
    // The same fp16 weights as a plain folder: what the variant pipeline must equal.
    fp16Folder = join(root, 'tiny-fp16');
    cpSync(tiny, fp16Folder, { recursive: true });
    for (const [sub, bytes] of [['unet', unet16], ['vae', vae16]] as const) {
      const p = join(fp16Folder, sub, 'diffusion_pytorch_model.safetensors');
      rmSync(p, { force: true });
      writeFileSync(p, bytes);
    }
  });

  beforeEach(() => {
    savedEnv = Object.fromEntries(ENV_KEYS.map((k) => [k, process.env[k]]));
    for (const k of ENV_KEYS) delete process.env[k];
    process.env.HF_HUB_CACHE = cache;
  });
  afterEach(() => {
    for (const k of ENV_KEYS) {
      if (savedEnv[k] === undefined) delete process.env[k];
      else process.env[k] = savedEnv[k];
    }
  });

  test('the fake cache has the hub layout: relative links from snapshots into blobs', () => {
    const link = join(cache, 'models--test--tiny', 'snapshots', COMMIT_MAIN, 'unet', 'config.json');
    assert.match(readdirSync(join(cache, 'models--test--tiny', 'blobs'))[0], /^[0-9a-f]{64}$/);
    assert.equal(readFileSync(join(cache, 'models--test--tiny', 'refs', 'main'), 'utf8'), COMMIT_MAIN);
    assert.ok(statSync(link).isFile());
    assert.equal(resolveModel('test/tiny'), join(cache, 'models--test--tiny', 'snapshots', COMMIT_MAIN));
  });

  test('a repo id loads and generates exactly like the fixture folder (sharded text encoder included)', async () => {
    const adapterFromCache = await MotionAdapter.fromPretrained('test/tiny-motion-adapter');
    assert.ok(adapterFromCache.dir.startsWith(cache));
    const fromCache = await PIAPipeline.fromPretrained('test/tiny', { motionAdapter: adapterFromCache });
    const fromFolder = await PIAPipeline.fromPretrained(tiny, { motionAdapter: await MotionAdapter.fromPretrained(fixture('models', 'tiny-motion-adapter')) });
    try {
      const a = await run(fromCache);
      const b = await run(fromFolder);
      assert.deepEqual(a.shape, [1, 2, 16, 16, 3]);
      // Same weights (the shards hold the same bytes), same code, same seed: bit-identical.
      assert.deepEqual(a.data, b.data);
    } finally {
      fromCache.dispose();
      fromFolder.dispose();
    }
  });

  test("variant 'fp16': the UNet and VAE load their fp16 files, the text encoder (no fp16 files) its plain ones", async () => {
    const motionAdapter = await MotionAdapter.fromPretrained('test/tiny-motion-adapter');
    const fp16 = await PIAPipeline.fromPretrained('test/tiny', { motionAdapter, variant: 'fp16' });
    const folder16 = await PIAPipeline.fromPretrained(fp16Folder, { motionAdapter });
    const fp32 = await PIAPipeline.fromPretrained('test/tiny', { motionAdapter });
    try {
      const a = await run(fp16);
      // The same fp16 weights from a plain folder: bit-identical.
      assert.deepEqual(a.data, (await run(folder16)).data);
      // And the fp16 rounding of the weights shows in the output, so the variant files were read.
      const b = await run(fp32);
      let differ = 0;
      for (let i = 0; i < a.data.length; i++) if (a.data[i] !== b.data[i]) differ++;
      assert.ok(differ > a.data.length / 10, `only ${differ} of ${a.data.length} values changed`);
    } finally {
      fp16.dispose();
      folder16.dispose();
      fp32.dispose();
    }
    // A model class asked for a variant it does not have fails, as transformers does (no silent fallback).
    await assert.rejects(
      CLIPTextModel.fromPretrained('test/tiny', { subfolder: 'text_encoder', variant: 'fp16' }),
      isPiaError('E_MODEL_NOT_FOUND', 'model.fp16.safetensors', 'model.safetensors.index.fp16.json'),
    );
    const unet = await UNet2DConditionModel.fromPretrained('test/tiny', { subfolder: 'unet', variant: 'fp16' });
    assert.deepEqual(unet.weightPaths, [join(resolveModel('test/tiny'), 'unet', 'diffusion_pytorch_model.fp16.safetensors')]);
  });

  test('variant index names: model.safetensors.index.fp16.json (transformers), and the missing-variant hint', async () => {
    const dir = join(root, 'variant-index');
    mkdirSync(dir);
    writeFileSync(join(dir, 'config.json'), '{}');
    writeFileSync(join(dir, 'model.fp16-00001-of-00001.safetensors'), '');
    writeFileSync(join(dir, 'model.safetensors.index.fp16.json'), JSON.stringify({ weight_map: { a: 'model.fp16-00001-of-00001.safetensors' } }));
    writeFileSync(join(dir, 'model.safetensors'), '');
    const f = await readModelFolder(dir, { weightNames: ['model'], variant: 'fp16', what: 'text encoder' });
    assert.deepEqual(f.weightPaths, [join(dir, 'model.fp16-00001-of-00001.safetensors')]);
    await assert.rejects(
      readModelFolder(dir, { weightNames: ['model'], variant: 'bf16', what: 'text encoder' }),
      isPiaError('E_MODEL_NOT_FOUND', `${join(dir, 'model.safetensors')} exists: load without variant 'bf16'`),
    );
    await assert.rejects(readModelFolder(dir, { weightNames: ['model'], variant: '../x', what: 'x' }), { code: 'E_INVALID_ARGUMENT', option: 'variant' });
  });

  test('revision: a branch name, a nested ref and a commit hash select their snapshot; main by default', async () => {
    const marker = async (revision?: string) =>
      (await UNet2DConditionModel.fromPretrained('test/tiny', { subfolder: 'unet', revision })).config._diffusers_version;
    assert.equal(await marker(), '0.26.3');
    assert.equal(await marker('main'), '0.26.3');
    assert.equal(await marker('v1'), V1_MARKER);
    assert.equal(await marker('refs/pr/1'), V1_MARKER);
    assert.equal(await marker(COMMIT_V1), V1_MARKER);
    assert.equal(await marker(COMMIT_MAIN), '0.26.3');
    assert.equal(resolveModel('test/tiny', { revision: 'v1', subfolder: 'vae' }), join(cache, 'models--test--tiny', 'snapshots', COMMIT_V1, 'vae'));
    // The pipeline resolves the revision once and loads every component from that snapshot.
    const pipe = await PIAPipeline.fromPretrained('test/tiny', { revision: 'v1', motionAdapter: await MotionAdapter.fromPretrained('test/tiny-motion-adapter') });
    pipe.dispose();
    await assert.rejects(
      PIAPipeline.fromPretrained('test/tiny', { revision: 'v2', motionAdapter: await MotionAdapter.fromPretrained('test/tiny-motion-adapter') }),
      isPiaError('E_MODEL_NOT_FOUND', "no revision 'v2'", 'main', 'v1', 'refs/pr/1', 'huggingface-cli download test/tiny --revision v2'),
    );
    assert.throws(() => resolveModel('test/tiny', { revision: 'c'.repeat(40) }), isPiaError('E_MODEL_NOT_FOUND', `snapshot ${'c'.repeat(40)}`));
    // Local folders ignore the revision, as diffusers does.
    assert.equal(resolveModel(tiny, { revision: 'v1' }), tiny);
  });

  test('cache root precedence: HF_HUB_CACHE, HUGGINGFACE_HUB_CACHE, HF_HOME/hub, XDG_CACHE_HOME/huggingface/hub, ~/.cache', async () => {
    const env = { HOME: '/home/u', HF_HUB_CACHE: '/a', HUGGINGFACE_HUB_CACHE: '/b', HF_HOME: '/c', XDG_CACHE_HOME: '/d' };
    assert.deepEqual(hubCacheRoot(env), { dir: '/a', from: '$HF_HUB_CACHE' });
    assert.equal(hubCacheRoot({ ...env, HF_HUB_CACHE: undefined }).dir, '/b');
    assert.equal(hubCacheRoot({ ...env, HF_HUB_CACHE: undefined, HUGGINGFACE_HUB_CACHE: undefined }).dir, '/c/hub');
    assert.equal(hubCacheRoot({ XDG_CACHE_HOME: '/d' }).dir, '/d/huggingface/hub');
    assert.equal(hubCacheRoot({ HF_HOME: '', XDG_CACHE_HOME: '/d' }).dir, '/d/huggingface/hub');
    assert.match(hubCacheRoot({}).dir, /\/\.cache\/huggingface\/hub$/);
    // expanduser / expandvars, as huggingface_hub applies them.
    assert.equal(hubCacheRoot({ HF_HOME: '$XDG_CACHE_HOME/hf', XDG_CACHE_HOME: '/d' }).dir, '/d/hf/hub');

    // End to end: a second cache under HF_HOME holding a different repo; HF_HUB_CACHE wins over it.
    const home = join(root, 'hf-home');
    addSnapshot(join(home, 'hub'), 'other/adapter', COMMIT_MAIN, folderFiles(fixture('models', 'tiny-motion-adapter')), ['main']);
    process.env.HF_HOME = home;
    assert.equal(resolveModel('test/tiny'), join(cache, 'models--test--tiny', 'snapshots', COMMIT_MAIN));
    assert.throws(() => resolveModel('other/adapter'), isPiaError('E_MODEL_NOT_FOUND', '$HF_HUB_CACHE'));
    delete process.env.HF_HUB_CACHE;
    assert.ok((await MotionAdapter.fromPretrained('other/adapter')).dir.startsWith(join(home, 'hub')));
    assert.throws(() => resolveModel('test/tiny'), isPiaError('E_MODEL_NOT_FOUND', '$HF_HOME/hub'));
    process.env.HUGGINGFACE_HUB_CACHE = cache;
    assert.ok(resolveModel('test/tiny').startsWith(cache));
  });

  test('a repo that is not cached: E_MODEL_NOT_FOUND listing where it looked and how to get it', async () => {
    const motionAdapter = await MotionAdapter.fromPretrained('test/tiny-motion-adapter');
    await assert.rejects(
      PIAPipeline.fromPretrained('SG161222/Realistic_Vision_V6.0_B1_noVAE', { motionAdapter }),
      isPiaError('E_MODEL_NOT_FOUND', join(process.cwd(), 'SG161222', 'Realistic_Vision_V6.0_B1_noVAE'),
        join(cache, 'models--SG161222--Realistic_Vision_V6.0_B1_noVAE'), '$HF_HUB_CACHE',
        '`huggingface-cli download SG161222/Realistic_Vision_V6.0_B1_noVAE`', 'local diffusers folder'),
    );
    await assert.rejects(
      MotionAdapter.fromPretrained('openmmlab/PIA-condition-adapter', { revision: 'v2' }),
      isPiaError('E_MODEL_NOT_FOUND', 'huggingface-cli download openmmlab/PIA-condition-adapter --revision v2'),
    );
    // A subfolder the snapshot lacks (e.g. downloaded with --include) names it.
    await assert.rejects(AutoencoderKL.fromPretrained('test/tiny-motion-adapter', { subfolder: 'vae' }), isPiaError('E_MODEL_NOT_FOUND', "no subfolder 'vae'"));
    // A missing absolute folder is just that.
    await assert.rejects(CLIPTextModel.fromPretrained(join(root, 'nope')), isPiaError('E_MODEL_NOT_FOUND', `no folder at ${join(root, 'nope')}`));
  });

  test('a dangling link (a blob gone from the cache) is an incomplete download, not "no weights"', async () => {
    const broken = join(root, 'broken-cache');
    addSnapshot(broken, 'test/broken', COMMIT_MAIN, folderFiles(tiny), ['main']);
    process.env.HF_HUB_CACHE = broken;
    const snap = resolveModel('test/broken');
    const blobOf = (p: string) => resolve(dirname(p), readlinkSync(p));
    const vaeWeights = join(snap, 'vae', 'diffusion_pytorch_model.safetensors');
    unlinkSync(blobOf(vaeWeights));
    await assert.rejects(
      AutoencoderKL.fromPretrained('test/broken', { subfolder: 'vae' }),
      isPiaError('E_MODEL_NOT_FOUND', vaeWeights, 'does not exist', 'download of test/broken is incomplete', `huggingface-cli download test/broken --revision ${COMMIT_MAIN}`),
    );
    // An optional tokenizer file that dangles must not pass for absent.
    unlinkSync(blobOf(join(snap, 'tokenizer', 'special_tokens_map.json')));
    await assert.rejects(CLIPTokenizer.fromPretrained('test/broken', { subfolder: 'tokenizer' }), isPiaError('E_MODEL_NOT_FOUND', 'special_tokens_map.json', 'incomplete'));
    unlinkSync(blobOf(join(snap, 'model_index.json')));
    await assert.rejects(
      PIAPipeline.fromPretrained('test/broken', { motionAdapter: await MotionAdapter.fromPretrained(fixture('models', 'tiny-motion-adapter')) }),
      isPiaError('E_MODEL_NOT_FOUND', 'model_index.json', 'incomplete'),
    );
  });

  test('repo ids and paths: bad forms are E_INVALID_ARGUMENT, never looked up in the cache', async () => {
    for (const ok of ['openmmlab/PIA-condition-adapter', 'SG161222/Realistic_Vision_V6.0_B1_noVAE', 'gpt2', 'a/b', 'org_1/x.y-z']) {
      assert.ok(isRepoId(ok), ok);
    }
    for (const bad of ['../x', './x', 'x/..', 'org/', '/x', 'org/na me', 'a--b/c', 'org/x..y', 'org/name/extra', '-org/name', 'org/name.git', `org/${'x'.repeat(97)}`, '~/models/x']) {
      assert.ok(!isRepoId(bad), bad);
    }
    for (const bad of ['../x', 'org/na me', 'a--b/c', 'org/name/extra']) {
      await assert.rejects(MotionAdapter.fromPretrained(bad), isPiaError('E_INVALID_ARGUMENT', 'neither an existing folder', 'repo id'), bad);
    }
    await assert.rejects(MotionAdapter.fromPretrained('test/tiny-motion-adapter', { subfolder: '../x' }), { code: 'E_INVALID_ARGUMENT', option: 'subfolder' });
    await assert.rejects(MotionAdapter.fromPretrained('test/tiny-motion-adapter', { revision: '../../x' }), { code: 'E_INVALID_ARGUMENT', option: 'revision' });
    await assert.rejects(MotionAdapter.fromPretrained(''), { code: 'E_INVALID_ARGUMENT' });
    // A file where a folder is expected points to fromSingleFile.
    await assert.rejects(
      MotionAdapter.fromPretrained(fixture('models', 'tiny-motion-adapter', 'diffusion_pytorch_model.safetensors')),
      isPiaError('E_INVALID_ARGUMENT', 'fromSingleFile'),
    );
    // The tokenizer resolves like the models.
    const tok = await CLIPTokenizer.fromPretrained('test/tiny', { subfolder: 'tokenizer' });
    const ref = await CLIPTokenizer.fromPretrained(fixture('models', 'tiny', 'tokenizer'));
    assert.deepEqual(tok.encode(['a red ball']).inputIds, ref.encode(['a red ball']).inputIds);
  });

  test('the CLI takes repo ids for --model and --adapter, with --revision and --variant', () => {
    const pia = (...args: string[]) =>
      spawnSync(process.execPath, ['--import', 'tsx', join(repoRoot, 'lib/cli/main.ts'), 'animate', fixture('golden/pipeline/input_64x64.png'), '-p', 'x', ...args], {
        cwd: repoRoot, encoding: 'utf8', env: { ...process.env },
      });
    const small = ['--steps', '1', '--frames', '2', '--size', '16x16', '--json'];
    const ok = pia('--model', 'test/tiny', '--adapter', 'test/tiny-motion-adapter', '--revision', 'v1', '--variant', 'fp16', ...small, '-o', join(root, 'cli') + '/');
    assert.equal(ok.status, 0, ok.stderr);
    const report = JSON.parse(ok.stdout);
    assert.equal(report.frames, 2);
    assert.match(report.model, /^test\/tiny@v1 \(fp16\) \+ test\/tiny-motion-adapter$/);
    const missing = pia('--model', 'org/not-cached', '--adapter', 'test/tiny-motion-adapter', ...small, '-o', join(root, 'cli2') + '/');
    assert.equal(missing.status, 1);
    assert.match(missing.stderr, /E_MODEL_NOT_FOUND: .*huggingface-cli download org\/not-cached/);
    const usage = pia('--variant', 'fp16', ...small, '-o', join(root, 'cli3') + '/');
    assert.equal(usage.status, 2);
    assert.match(usage.stderr, /--variant applies to --model/);
  });

  test('device and dtype are checked before anything is read', async () => {
    const motionAdapter = await MotionAdapter.fromPretrained('test/tiny-motion-adapter');
    const missing = 'test/not-there';
    await assert.rejects(PIAPipeline.fromPretrained(missing, { motionAdapter, dtype: 'float64' as never }), { code: 'E_INVALID_ARGUMENT', option: 'dtype' });
    await assert.rejects(PIAPipeline.fromPretrained(missing, { motionAdapter, device: 'gpu' as never }), { code: 'E_INVALID_ARGUMENT', option: 'device' });
    await assert.rejects(PIAPipeline.fromPretrained(missing, { motionAdapter, variant: 'fp 16' }), { code: 'E_INVALID_ARGUMENT', option: 'variant' });
    const cuda = backends().cuda;
    if (!cuda.available) {
      for (const device of ['cuda', 'cuda:0'] as const) {
        await assert.rejects(PIAPipeline.fromPretrained(missing, { motionAdapter, device }), isPiaError('E_UNSUPPORTED', cuda.reason ?? 'not available'));
      }
    }
    // cpu and auto compute in float32 whatever the dtype: the pipeline loads.
    for (const [device, dtype] of [['cpu', 'float16'], ['auto', 'bfloat16']] as const) {
      const pipe = await PIAPipeline.fromPretrained('test/tiny', { motionAdapter, device, dtype });
      pipe.dispose();
    }
  });
});
