// Builds the native C++ harness (no Node inside it: the same executable runs on a bare GPU
// machine) with CMake, CPU only, and runs its test suite.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from '../helpers/fixtures.js';

const buildDir = join(repoRoot, 'build-native');

test('native harness builds with CMake alone and its tests pass', { timeout: 1_800_000 }, () => {
  const hasNinja = spawnSync('ninja', ['--version']).status === 0;
  const configure = spawnSync(
    'cmake',
    ['-S', repoRoot, '-B', buildDir, '-DPIA_CUDA=OFF', '-DPIA_NATIVE_TESTS=ON', ...(hasNinja && !existsSync(join(buildDir, 'Makefile')) ? ['-G', 'Ninja'] : [])],
    { encoding: 'utf8' },
  );
  assert.equal(configure.status, 0, configure.stdout + configure.stderr);
  const build = spawnSync('cmake', ['--build', buildDir, '--parallel', '2'], { encoding: 'utf8' });
  assert.equal(build.status, 0, (build.stdout + build.stderr).slice(-4000));
  const run = spawnSync(join(buildDir, 'bin', 'pia_native_tests'), [], { encoding: 'utf8', cwd: buildDir });
  process.stdout.write(run.stdout.split('\n').map((l) => `# ${l}`).join('\n') + '\n');
  assert.equal(run.status, 0, run.stdout.slice(-4000) + run.stderr);
  assert.match(run.stdout, /\d+ passed, 0 failed/);
});
