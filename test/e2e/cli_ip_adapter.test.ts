// `pia animate --ip-image` (IP-Adapter image prompts): on the bundled demo model with its bundled random
// adapter (assets/demo-ip-adapter: the fixture adapter makes 64-wide tokens, the demo UNet takes 32), and
// on the fixtures' mini-sd model with the fixture's plus adapter; argument errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fixture, repoRoot } from '../helpers/fixtures.js';
import { tempDir } from '../helpers/tmp.js';

const dir = tempDir('pia-cli-ip-');
const image = fixture('golden/pipeline/input_64x64.png');
const ipImage = fixture('ip-adapter/golden/ip_image_96x64.png');
const cli = join(repoRoot, 'lib/cli/main.ts');

function pia(args: string[], env: NodeJS.ProcessEnv = {}) {
  return spawnSync(process.execPath, ['--import', 'tsx', cli, ...args], { cwd: repoRoot, encoding: 'utf8', env: { ...process.env, ...env } });
}

const frames = (out: string) => readdirSync(out).sort().map((f) => readFileSync(join(out, f)));
const base = ['animate', image, '-p', 'a red ball', '--steps', '2', '--frames', '3', '--seed', '5', '-q'];

test('--ip-image on the demo model uses the bundled demo adapter; the image changes the frames, scale 0 does not', () => {
  const plain = join(dir, 'plain') + '/', ip = join(dir, 'ip') + '/', zero = join(dir, 'zero') + '/';
  assert.equal(pia([...base, '-o', plain]).status, 0);
  const r = pia([...base, '--ip-image', ipImage, '--json', '-o', ip]);
  assert.equal(r.status, 0, r.stderr);
  const report = JSON.parse(r.stdout);
  assert.equal(report.ok, true);
  assert.equal(report.demo, true);
  assert.match(report.ipAdapter.file, /demo-ip-adapter[/\\]ip-adapter_demo\.safetensors$/);
  assert.equal(report.ipAdapter.scale, 1);
  assert.notDeepEqual(frames(ip), frames(plain));
  const demoAdapter = join(repoRoot, 'assets', 'demo-ip-adapter', 'ip-adapter_demo.safetensors');
  assert.equal(pia([...base, '--ip-image', ipImage, '--ip-adapter', `${demoAdapter}:0`, '-o', zero]).status, 0);
  assert.deepEqual(frames(zero), frames(plain));
});

test('--ip-adapter FILE:SCALE with --model: the fixture plus adapter on mini-sd (image encoder beside the file)', () => {
  const out = join(dir, 'mini.gif');
  const r = pia([
    'animate', image, '-p', 'a red ball', '--steps', '2', '--frames', '2', '--size', '64x64', '--json',
    '--model', fixture('models/mini-sd'), '--adapter', fixture('models/mini-sd-motion-adapter'),
    '--ip-adapter', `${fixture('ip-adapter/models/ip-adapter-plus_sd15.safetensors')}:0.5`, '--ip-image', ipImage, '-o', out,
  ]);
  assert.equal(r.status, 0, r.stderr);
  const report = JSON.parse(r.stdout);
  assert.equal(report.ipAdapter.scale, 0.5);
  assert.equal(report.frames, 2);
});

test('IP-Adapter argument errors: usage errors exit 2, missing files 1 with their code', () => {
  const out = join(dir, 'x.gif');
  // --ip-adapter alone, and a folder holding several adapters.
  assert.equal(pia([...base, '--ip-adapter', fixture('ip-adapter/models/ip-adapter_sd15.bin'), '-o', out]).status, 2);
  assert.equal(pia([...base, '--ip-image', ipImage, '--ip-adapter', fixture('ip-adapter/models'), '-o', out]).status, 2);
  const noImage = pia([...base, '--ip-image', join(dir, 'nope.png'), '--json', '-o', out]);
  assert.equal(noImage.status, 1);
  assert.equal(JSON.parse(noImage.stdout).code, 'E_IMAGE');
  // A --model without --ip-adapter looks for h94/IP-Adapter in the (here empty) Hugging Face cache.
  const noRepo = pia(['animate', image, '-p', 'x', '--steps', '1', '--frames', '2', '--json', '--model', fixture('models/mini-sd'),
    '--adapter', fixture('models/mini-sd-motion-adapter'), '--ip-image', ipImage, '-o', out], { HF_HUB_CACHE: dir });
  assert.equal(noRepo.status, 1);
  assert.equal(JSON.parse(noRepo.stdout).code, 'E_MODEL_NOT_FOUND');
  assert.match(JSON.parse(noRepo.stdout).message, /h94\/IP-Adapter/);
});
