// What a user gets from `npm install pia-animate`: pack the package, install the tarball into an
// empty folder with install scripts on, and check that the prebuilt addon loads without a
// build; then remove the prebuilds and check that the install builds from source.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from '../helpers/fixtures.js';
import { tempDir } from '../helpers/tmp.js';

const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const work = tempDir('pia-pack-');
let tarball = '';

function run(cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = {}): SpawnSyncReturns<string> {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', env: { ...process.env, ...env }, maxBuffer: 64 << 20 });
  const out = `${cmd} ${args.join(' ')} (in ${cwd}) exited ${r.status}\n${r.stdout}\n${r.stderr}`.slice(-6000);
  assert.equal(r.status, 0, out);
  return r;
}

function installInto(dir: string, tgz: string, env: NodeJS.ProcessEnv = {}): string {
  mkdirSync(dir, { recursive: true });
  // npm 11 runs a dependency's install script only when the project allows it (allowScripts);
  // a user allows ours the same way (npm install-scripts approve pia-animate).
  writeFileSync(
    join(dir, 'package.json'),
    JSON.stringify({ name: 'consumer', version: '1.0.0', private: true, allowScripts: { 'pia-animate': true } }),
  );
  // --foreground-scripts: the install script's output is what tells prebuild from source build.
  const r = run(npm, ['install', tgz, '--foreground-scripts', '--no-audit', '--no-fund', '--prefer-offline'], dir, env);
  return r.stdout + r.stderr;
}

function loadsIn(dir: string): { cuda: { available: boolean; reason?: string }; addon: string } {
  const script =
    "import('pia-animate').then(async (m) => { const d = await import('pia-animate/package.json', { with: { type: 'json' } });" +
    ' console.log(JSON.stringify({ cuda: m.backends().cuda, version: m.version, pkg: d.default.version })); })';
  const r = run(process.execPath, ['--input-type=module', '-e', script], dir);
  const parsed = JSON.parse(r.stdout.trim().split('\n').pop()!);
  assert.equal(parsed.version, parsed.pkg);
  const cli = run(process.execPath, [join(dir, 'node_modules/.bin/pia'), 'doctor', '--json'], dir);
  const report = JSON.parse(cli.stdout);
  return { cuda: parsed.cuda, addon: report.addon };
}

before(() => {
  // npm run prebuild is the real prebuild route (prebuildify + cmake-js); it also proves it works.
  run(npm, ['run', 'prebuild'], repoRoot);
  assert.ok(existsSync(join(repoRoot, 'prebuilds', `${process.platform}-${process.arch}`, 'pia-animate.node')));
  const r = run(npm, ['pack', '--pack-destination', work], repoRoot);
  tarball = join(work, r.stdout.trim().split('\n').pop()!);
  assert.ok(existsSync(tarball), tarball);
});

test('the tarball installs and loads the prebuilt addon without building', { timeout: 600_000 }, () => {
  const dir = join(work, 'with-prebuild');
  const log = installInto(dir, tarball);
  assert.match(log, /using the prebuilt native addon/);
  const pkg = join(dir, 'node_modules', 'pia-animate');
  assert.equal(existsSync(join(pkg, 'build')), false, 'nothing may be built when a prebuild loads');
  const { cuda, addon } = loadsIn(dir);
  assert.match(addon, /prebuilds\/linux-x64\/pia-animate\.node$/);
  if (!cuda.available) assert.ok(cuda.reason);
  // The tokenizer and sources for a fallback build ship too.
  for (const f of ['assets/clip-tokenizer/vocab.json', 'assets/clip-tokenizer/merges.txt', 'CMakeLists.txt', 'native/sources.gypi', 'dist/index.d.ts']) {
    assert.ok(existsSync(join(pkg, f)), `${f} is in the package`);
  }
});

test('without prebuilds the install builds the addon from source (CPU-only switch)', { timeout: 1_200_000 }, () => {
  // Repack the same package minus prebuilds/.
  const unpacked = join(work, 'unpacked');
  mkdirSync(unpacked, { recursive: true });
  run('tar', ['xzf', tarball, '-C', unpacked], work);
  const pkgDir = join(unpacked, 'package');
  rmSync(join(pkgDir, 'prebuilds'), { recursive: true, force: true });
  const bareDir = join(work, 'bare');
  mkdirSync(bareDir);
  const r = run(npm, ['pack', '--ignore-scripts', '--pack-destination', bareDir], pkgDir);
  const bare = join(bareDir, r.stdout.trim().split('\n').pop()!);

  const dir = join(work, 'from-source');
  const log = installInto(dir, bare, { PIA_CUDA: '0' });
  assert.match(log, /building from source/);
  const pkg = join(dir, 'node_modules', 'pia-animate');
  assert.ok(existsSync(join(pkg, 'build', 'Release', 'pia_addon.node')));
  assert.equal(existsSync(join(pkg, 'prebuilds')), false);
  const { addon } = loadsIn(dir);
  assert.match(addon, /build\/Release\/pia_addon\.node$/);
  assert.deepEqual(readdirSync(join(pkg, 'build', 'Release')).filter((f) => f.endsWith('.so')), [], 'CPU-only build has no CUDA library');
});
