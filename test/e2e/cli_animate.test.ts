// `pia animate` on the bundled demo model, as the README's first command runs it: outputs are
// decoded back with sharp; usage errors exit 2, failures 1, Ctrl-C 130.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { fixture, repoRoot } from '../helpers/fixtures.js';
import { tempDir } from '../helpers/tmp.js';

const dir = tempDir('pia-cli-');
const image = fixture('golden/pipeline/input_64x64.png');
const cli = join(repoRoot, 'lib/cli/main.ts');

function pia(...args: string[]) {
  return spawnSync(process.execPath, ['--import', 'tsx', cli, ...args], { cwd: repoRoot, encoding: 'utf8' });
}

test('animate writes a GIF that decodes to the requested frames', () => {
  const out = join(dir, 'a.gif');
  const r = pia('animate', image, '--prompt', 'a red ball', '--steps', '3', '--frames', '6', '--seed', '7', '-o', out);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /demo model/);
  assert.match(r.stderr, /output is noise/i);
  return sharp(out, { pages: -1 }).metadata().then((m) => {
    assert.equal(m.format, 'gif');
    assert.equal(m.pages, 6);
    assert.equal(m.width, 64);
    assert.equal(m.pageHeight, 64);
  });
});

test('animate writes an animated WebP and a PNG sequence; --json reports it', async () => {
  const webp = join(dir, 'a.webp');
  const r = pia('animate', image, '-p', 'x', '--steps', '2', '--frames', '4', '--size', '32x48', '--scheduler', 'euler-a', '--json', '-o', webp);
  assert.equal(r.status, 0, r.stderr);
  const report = JSON.parse(r.stdout);
  assert.equal(report.ok, true);
  assert.equal(report.frames, 4);
  const m = await sharp(webp, { pages: -1 }).metadata();
  assert.equal(m.format, 'webp');
  assert.equal(m.pages, 4);
  assert.equal(m.width, 32);
  assert.equal(m.pageHeight, 48);

  const pngs = join(dir, 'frames') + '/';
  const r2 = pia('animate', image, '-p', 'x', '--steps', '2', '--frames', '3', '--free-init=2', '--free-u', '--motion-scale', '4', '-q', '-o', pngs);
  assert.equal(r2.status, 0, r2.stderr);
  const files = readdirSync(pngs).sort();
  assert.deepEqual(files, ['frame_0000.png', 'frame_0001.png', 'frame_0002.png']);
  const px = await sharp(join(pngs, files[0])).raw().toBuffer({ resolveWithObject: true });
  assert.equal(px.info.channels, 3);
  assert.equal(px.info.width, 64);
});

test('the same seed gives the same animation', async () => {
  const a = join(dir, 's1') + '/', b = join(dir, 's2') + '/';
  for (const out of [a, b]) assert.equal(pia('animate', image, '-p', 'x', '--steps', '2', '--frames', '2', '--seed', '123', '-q', '-o', out).status, 0);
  const x = await sharp(join(a, 'frame_0001.png')).raw().toBuffer();
  const y = await sharp(join(b, 'frame_0001.png')).raw().toBuffer();
  assert.ok(x.equals(y));
});

test('usage errors exit 2, failures exit 1 with the error code', () => {
  assert.equal(pia('animate', image, '-o', join(dir, 'x.gif')).status, 2); // no prompt
  assert.equal(pia('animate', image, '-p', 'x').status, 2); // no output
  assert.equal(pia('animate', image, '-p', 'x', '--scheduler', 'nope', '-o', join(dir, 'x.gif')).status, 2);
  assert.equal(pia('animate', image, '-p', 'x', '--size', '10x10x', '-o', join(dir, 'x.gif')).status, 2);
  assert.equal(pia('animate', image, '-p', 'x', '-o', join(dir, 'x.bmp')).status, 2);
  const bad = pia('animate', image, '-p', 'x', '--motion-scale', '9', '--json', '-o', join(dir, 'x.gif'));
  assert.equal(bad.status, 1);
  assert.equal(JSON.parse(bad.stdout).code, 'E_INVALID_ARGUMENT');
  const missing = pia('animate', join(dir, 'nope.png'), '-p', 'x', '-o', join(dir, 'x.gif'));
  assert.equal(missing.status, 1);
  assert.match(missing.stderr, /E_IMAGE/);
  const notImage = pia('animate', cli, '-p', 'x', '-o', join(dir, 'x.gif'));
  assert.equal(notImage.status, 1);
  assert.match(notImage.stderr, /E_IMAGE/);
});

test('Ctrl-C cancels cleanly with exit code 130 and writes nothing', async () => {
  const out = join(dir, 'interrupted.gif');
  const child = spawn(process.execPath, ['--import', 'tsx', cli, 'animate', image, '-p', 'x', '--steps', '500', '--frames', '8', '-o', out], {
    cwd: repoRoot,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d) => {
    stderr += d;
    // Interrupt once the denoising loop is running.
    if (/step 3\//.test(stderr) && !child.killed) child.kill('SIGINT');
  });
  const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
  assert.equal(code, 130, stderr);
  assert.match(stderr, /interrupted/);
  assert.deepEqual(readdirSync(dir).filter((f) => f.startsWith('interrupted')), []);
});
