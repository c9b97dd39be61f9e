#!/usr/bin/env node
// npm install hook: use a matching prebuilt addon when one loads; otherwise build from source
// with cmake-js (needs cmake and a C++17 compiler; nvcc optional). Nothing here touches the
// network: cmake-js is told to use the local Node headers (package.json "binary.napi_versions").
'use strict';
const { spawnSync } = require('node:child_process');
const path = require('node:path');

const root = path.resolve(__dirname, '..');

function prebuildLoads() {
  // Test-load in a child process: a broken binary must not take this process down.
  const probe = `require(${JSON.stringify(require.resolve('node-gyp-build', { paths: [root] }))})(${JSON.stringify(root)})`;
  const r = spawnSync(process.execPath, ['-e', probe], { cwd: root, stdio: 'pipe', encoding: 'utf8' });
  return r.status === 0 ? null : (r.stderr || r.stdout || '').trim().split('\n').slice(-3).join('\n');
}

if (process.env.PIA_FORCE_BUILD !== '1') {
  const why = prebuildLoads();
  if (why === null) {
    console.log('pia-animate: using the prebuilt native addon');
    process.exit(0);
  }
  console.log(`pia-animate: no usable prebuilt addon (${why.split('\n').pop()}); building from source`);
}

const cmakeJs = require.resolve('cmake-js/bin/cmake-js', { paths: [root] });
const args = [cmakeJs, 'compile', '--directory', root];
if (process.env.PIA_CUDA === '0') args.push('--CDPIA_CUDA=OFF');
const r = spawnSync(process.execPath, args, { cwd: root, stdio: 'inherit' });
if (r.status !== 0) {
  console.error(
    'pia-animate: building the native addon failed. It needs cmake >= 3.18 and a C++17 compiler\n' +
      '(apt-get install cmake g++). Set PIA_CUDA=0 to skip the CUDA backend.',
  );
  process.exit(r.status ?? 1);
}
