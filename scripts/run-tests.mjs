#!/usr/bin/env node
// node 20's --test expands no globs, and npm runs scripts under sh where ** matches
// one level only: list the test files here and hand them over explicitly.
import { readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const dirs = ['test/unit', 'test/parity', 'test/e2e', 'test/gpu'];
const only = process.argv.slice(2);

function walk(dir, out) {
  let entries;
  try { entries = readdirSync(dir); } catch { return out; }
  for (const e of entries.sort()) {
    const p = join(dir, e);
    if (statSync(p).isDirectory()) walk(p, out);
    else if (/\.test\.ts$/.test(e)) out.push(relative(root, p));
  }
  return out;
}

let files = dirs.flatMap((d) => walk(join(root, d), []));
if (only.length) files = files.filter((f) => only.some((o) => f.includes(o)));
if (files.length === 0) {
  console.error('no test files found');
  process.exit(1);
}
// The parity suites compare against CPU goldens at CPU tolerances: on a GPU machine their 'auto'
// device is pinned to the CPU (PIA_DEVICE); test/gpu places its networks itself.
function run(list, env) {
  if (list.length === 0) return 0;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--test', '--test-concurrency=1', ...list], {
    cwd: root,
    stdio: 'inherit',
    env,
  });
  return r.status ?? 1;
}
const gpu = files.filter((f) => f.startsWith('test/gpu'));
const rest = files.filter((f) => !f.startsWith('test/gpu'));
const status = [run(rest, { ...process.env, PIA_DEVICE: process.env.PIA_DEVICE ?? 'cpu' }), run(gpu, process.env)];
process.exit(status.find((s) => s !== 0) ?? 0);
