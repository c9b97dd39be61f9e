// `pia animate --device/--dtype/--cpu-offload`: on the CPU the flags are accepted and change nothing
// in the result; a GPU the machine cannot use is a failure (exit 1) that says why.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { backends } from '../../lib/backends.js';
import { fixture, repoRoot } from '../helpers/fixtures.js';
import { tempDir } from '../helpers/tmp.js';

const dir = tempDir('pia-cli-device-');
const image = fixture('golden/pipeline/input_64x64.png');
const cli = join(repoRoot, 'lib/cli/main.ts');

function pia(...args: string[]) {
  return spawnSync(process.execPath, ['--import', 'tsx', cli, ...args], { cwd: repoRoot, encoding: 'utf8' });
}

test('--device cpu --dtype float16 --cpu-offload: the same frames as without', () => {
  const base = ['animate', image, '-p', 'x', '--steps', '2', '--frames', '2', '--seed', '3', '-q'];
  const a = join(dir, 'a') + '/', b = join(dir, 'b') + '/';
  const r1 = pia(...base, '-o', a);
  assert.equal(r1.status, 0, r1.stderr);
  const r2 = pia(...base, '--device', 'cpu', '--dtype', 'float16', '--cpu-offload', '-o', b);
  assert.equal(r2.status, 0, r2.stderr);
  assert.ok(readFileSync(join(a, 'frame_0001.png')).equals(readFileSync(join(b, 'frame_0001.png'))));
});

test('a device the machine cannot use, or a bad value, fails with the reason', () => {
  const cuda = backends().cuda;
  if (!cuda.available) {
    const r = pia('animate', image, '-p', 'x', '--steps', '1', '--frames', '2', '--device', 'cuda', '-o', join(dir, 'c.gif'));
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /CUDA is not available/);
    assert.ok(r.stderr.includes(cuda.reason!.slice(0, 20)), r.stderr);
  }
  const bad = pia('animate', image, '-p', 'x', '--device', 'tpu', '-o', join(dir, 'd.gif'));
  assert.notEqual(bad.status, 0);
  assert.match(bad.stderr, /device/);
  const badType = pia('animate', image, '-p', 'x', '--dtype', 'float64', '-o', join(dir, 'e.gif'));
  assert.notEqual(badType.status, 0);
  assert.match(badType.stderr, /dtype/);
});
