import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { backends, setNumThreads, PiaError } from '../../lib/index.js';
import { repoRoot } from '../helpers/fixtures.js';

test('backends() reports CPU threads and features', () => {
  const b = backends();
  assert.ok(Number.isInteger(b.cpu.threads) && b.cpu.threads >= 1);
  assert.ok(b.cpu.features.length >= 1);
  if (process.arch === 'x64') assert.ok(b.cpu.features.every((f) => ['avx2', 'fma', 'f16c', 'avx512f', 'generic'].includes(f)));
});

test('CUDA is either usable with devices, or unavailable with a reason', () => {
  const { cuda } = backends();
  if (cuda.available) {
    assert.ok(cuda.devices && cuda.devices.length > 0);
    for (const d of cuda.devices) assert.match(d.computeCapability, /^\d+\.\d+$/);
  } else {
    assert.equal(typeof cuda.reason, 'string');
    assert.ok(cuda.reason!.length > 10, cuda.reason);
  }
});

test('setNumThreads resizes the pool and 0 restores the default', () => {
  const before = backends().cpu.threads;
  assert.equal(setNumThreads(1), 1);
  assert.equal(backends().cpu.threads, 1);
  assert.equal(setNumThreads(3), 3);
  assert.equal(setNumThreads(0), before);
  assert.throws(() => setNumThreads(-1), (e) => e instanceof PiaError && e.code === 'E_INVALID_ARGUMENT');
  assert.throws(() => setNumThreads(1.5), PiaError);
});

test('PIA_NUM_THREADS sizes the pool', () => {
  const r = spawnSync(process.execPath, ['--import', 'tsx', '-e', "import('./lib/index.ts').then(m => console.log(m.backends().cpu.threads))"], {
    cwd: repoRoot,
    env: { ...process.env, PIA_NUM_THREADS: '3' },
    encoding: 'utf8',
  });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout.trim(), '3');
});

function pia(...args: string[]) {
  return spawnSync(process.execPath, ['--import', 'tsx', join(repoRoot, 'lib/cli/main.ts'), ...args], { cwd: repoRoot, encoding: 'utf8' });
}

test('pia doctor prints backends; --json is machine-readable', () => {
  const text = pia('doctor');
  assert.equal(text.status, 0, text.stderr);
  assert.match(text.stdout, /cpu: .*threads/);
  assert.match(text.stdout, /cuda: /);
  const json = pia('doctor', '--json');
  assert.equal(json.status, 0, json.stderr);
  const report = JSON.parse(json.stdout);
  assert.equal(typeof report.cuda.available, 'boolean');
  assert.ok(Array.isArray(report.cpu.features));
  assert.match(report.addon, /\.node$/);
});

test('pia exits 2 on usage errors', () => {
  assert.equal(pia('frobnicate').status, 2);
  assert.equal(pia('doctor', '--no-such-flag').status, 2);
  assert.equal(pia().status, 2);
  assert.equal(pia('--help').status, 0);
});
