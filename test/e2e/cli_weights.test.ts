// `pia animate` with real-world weight options on the mini-sd fixture family: --model as a repo id (a hub
// cache built on disk), --config for a single file (folder or repo id), repeatable --lora path[:scale] and
// --embedding path[:token]. The CLI's frames are compared with the same run through the API.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import sharp from 'sharp';
import type { Frame } from '../../lib/io/index.js';
import { MotionAdapter } from '../../lib/models/motion_adapter.js';
import { PIAPipeline } from '../../lib/pipelines/pia.js';
import { Generator } from '../../lib/random/generator.js';
import { fixture, repoRoot } from '../helpers/fixtures.js';
import { addSnapshot, folderFiles } from '../helpers/hub_cache.js';
import { tempDir } from '../helpers/tmp.js';

const dir = tempDir('pia-cli-weights-');
const cache = join(dir, 'hub');
const image = fixture('golden', 'pipeline', 'input_64x64.png');
const MINI_SD = fixture('models', 'mini-sd');
const ADAPTER = fixture('models', 'mini-sd-motion-adapter');
const LOADERS = fixture('loaders');
const KOHYA = join(LOADERS, 'mini-sd-lora.kohya.safetensors');
const DIFFUSERS_LORA = join(LOADERS, 'mini-sd-lora.diffusers.safetensors');
const TI_PT = join(LOADERS, 'kitestyle.a1111.pt');
const SINGLE_FILE = join(LOADERS, 'mini-sd.single-file.safetensors');
const PIA_ORIGINAL = join(LOADERS, 'mini-sd-motion-adapter.pia-original.safetensors');
const REPO = 'fixtures/mini-sd';
const PROMPT = 'a kite in <kitestyle> style';
const RUN = ['-p', PROMPT, '--steps', '2', '--frames', '2', '--seed', '5', '-q'];

function pia(...args: string[]) {
  return spawnSync(process.execPath, ['--import', 'tsx', join(repoRoot, 'lib/cli/main.ts'), ...args], {
    cwd: repoRoot,
    encoding: 'utf8',
    env: { ...process.env, HF_HUB_CACHE: cache },
  });
}

/** Runs `pia animate` into a fresh PNG folder; returns the frames' raw RGB bytes. */
async function animate(name: string, ...args: string[]): Promise<Buffer[]> {
  const out = join(dir, name) + '/';
  const r = pia('animate', image, ...args, '-o', out);
  assert.equal(r.status, 0, r.stderr);
  const files = readdirSync(out).sort();
  return Promise.all(files.map((f) => sharp(join(out, f)).raw().toBuffer()));
}

describe('pia animate: --model repo id, --lora, --embedding', () => {
  let cliFrames: Buffer[];

  before(async () => {
    addSnapshot(cache, REPO, 'c'.repeat(40), folderFiles(MINI_SD), ['main']);
    cliFrames = await animate('repo', '--model', REPO, '--adapter', ADAPTER,
      '--lora', `${KOHYA}:0.5`, '--lora', `${DIFFUSERS_LORA}:0.25`, '--embedding', `${TI_PT}:<kitestyle>`, ...RUN);
  });

  test('help names every weight option', () => {
    const r = pia('--help');
    assert.equal(r.status, 0);
    for (const opt of ['--model DIR|ORG/NAME|FILE', '--vae DIR|FILE', '--config DIR|ORG/NAME', '--lora FILE[:SCALE]', '--embedding FILE[:TOKEN]']) {
      assert.ok(r.stdout.includes(opt), `help lacks ${opt}`);
    }
  });

  test('frames equal the API run: two adapters weighted by set_adapters, the embedding bound to its token', async () => {
    const motionAdapter = await MotionAdapter.fromPretrained(ADAPTER);
    const pipe = await PIAPipeline.fromPretrained(MINI_SD, { motionAdapter });
    try {
      const names = [await pipe.loadLoraWeights(KOHYA), await pipe.loadLoraWeights(DIFFUSERS_LORA)];
      await pipe.setAdapters(names, [0.5, 0.25]);
      await pipe.loadTextualInversion(TI_PT, { token: '<kitestyle>' });
      const { frames } = await pipe.generate({
        image, prompt: PROMPT, numInferenceSteps: 2, numFrames: 2, generator: new Generator().manualSeed(5n),
      });
      const video = (frames as Frame[][])[0];
      assert.equal(cliFrames.length, video.length);
      // Same code, same machine, same seed: the PNGs hold exactly the API's uint8 frames.
      video.forEach((f, i) => assert.ok(cliFrames[i].equals(Buffer.from(f.data)), `frame ${i} differs from the API run`));
    } finally {
      pipe.dispose();
    }
  });

  test('a LoRA file whose name contains a colon; the folder model equals the repo id', async () => {
    const colon = join(dir, 'mini:lora.safetensors');
    copyFileSync(KOHYA, colon);
    const frames = await animate('colon', '--model', MINI_SD, '--adapter', ADAPTER,
      '--lora', `${colon}:0.5`, '--lora', `${DIFFUSERS_LORA}:0.25`, '--embedding', `${TI_PT}:<kitestyle>`, ...RUN);
    frames.forEach((f, i) => assert.ok(f.equals(cliFrames[i]), `frame ${i}`));
  });

  test('the LoRA changes the frames (scale 0 is the same as none)', async () => {
    const none = await animate('none', '--model', MINI_SD, '--adapter', ADAPTER, '--embedding', `${TI_PT}:<kitestyle>`, ...RUN);
    const zero = await animate('zero', '--model', MINI_SD, '--adapter', ADAPTER, '--lora', `${KOHYA}:0`, '--embedding', `${TI_PT}:<kitestyle>`, ...RUN);
    zero.forEach((f, i) => assert.ok(f.equals(none[i]), `scale 0, frame ${i}`));
    assert.ok(none.some((f, i) => !f.equals(cliFrames[i])), 'the LoRA run equals the run without LoRA');
  });

  test('a missing LoRA or embedding, a token already in the vocabulary, --config with a folder model fail with exit 1; --config alone is a usage error', () => {
    const out = join(dir, 'x') + '/';
    const base = ['animate', image, '--model', MINI_SD, '--adapter', ADAPTER, ...RUN, '--json', '-o', out];
    const missing = pia(...base, '--lora', join(dir, 'nope.safetensors:0.5'));
    assert.equal(missing.status, 1, missing.stderr);
    assert.equal(JSON.parse(missing.stdout).code, 'E_MODEL_NOT_FOUND');
    const noEmbedding = pia(...base, '--embedding', join(dir, 'nope.pt'));
    assert.equal(noEmbedding.status, 1, noEmbedding.stderr);
    assert.equal(JSON.parse(noEmbedding.stdout).code, 'E_MODEL_NOT_FOUND');
    const taken = pia(...base, '--embedding', `${TI_PT}:photo`);
    assert.equal(taken.status, 1, taken.stderr);
    assert.equal(JSON.parse(taken.stdout).code, 'E_INVALID_ARGUMENT');
    const config = pia(...base, '--config', MINI_SD);
    assert.equal(config.status, 1, config.stderr);
    assert.equal(JSON.parse(config.stdout).code, 'E_INVALID_ARGUMENT');
    assert.equal(pia('animate', image, '-p', 'x', '--config', MINI_SD, '-o', out).status, 2);
  });
});

describe('pia animate: single-file --model with --config as folder or repo id', () => {
  test('both give the same frames (mini-sd\'s 4 text heads come from the config); --vae as file and folder', async () => {
    addSnapshot(cache, 'fixtures/mini-sd-config', 'd'.repeat(40), folderFiles(MINI_SD), ['main']);
    const args = ['--model', SINGLE_FILE, '--adapter', PIA_ORIGINAL, '-p', 'a red ball', '--steps', '1', '--frames', '2', '--seed', '1', '-q'];
    const folder = await animate('sf-folder', ...args, '--config', MINI_SD);
    const repo = await animate('sf-repo', ...args, '--config', 'fixtures/mini-sd-config');
    const stock = await animate('sf-stock', ...args);
    folder.forEach((f, i) => assert.ok(f.equals(repo[i]), `frame ${i}`));
    // Without config the text tower runs with 1 head of 64 (openai CLIP's head width): other frames.
    assert.ok(stock.some((f, i) => !f.equals(folder[i])));
    // --vae FILE reads first_stage_model.* of a single file: the same VAE as the model's own here;
    // --vae DIR (mini-sd's fp32 VAE, not the file's fp16-rounded one) changes the frames.
    const vaeFile = await animate('sf-vae-file', ...args, '--config', MINI_SD, '--vae', SINGLE_FILE);
    vaeFile.forEach((f, i) => assert.ok(f.equals(folder[i]), `--vae FILE, frame ${i}`));
    const vaeDir = await animate('sf-vae-dir', ...args, '--config', MINI_SD, '--vae', join(MINI_SD, 'vae'));
    assert.ok(vaeDir.some((f, i) => !f.equals(folder[i])), '--vae DIR left the frames unchanged');
  });
});
