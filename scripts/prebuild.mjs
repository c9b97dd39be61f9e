#!/usr/bin/env node
// npm run prebuild: prebuilds/<platform>-<arch>/ with the stripped addon (and libpia_cuda.so when
// nvcc built it), in the layout node-gyp-build loads. prebuildify runs our CMake build through
// scripts/cmake-js-shim.cjs.
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const require = createRequire(import.meta.url);
const prebuildify = require.resolve('prebuildify/bin.js');
const t0 = Date.now();
const r = spawnSync(
  process.execPath,
  [prebuildify, '--napi', '--strip', `--target=${process.versions.node}`, `--node-gyp=${root}scripts/cmake-js-shim.cjs`],
  { cwd: root, stdio: 'inherit' },
);
if (r.status !== 0) process.exit(r.status ?? 1);
console.log(`prebuild done in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
