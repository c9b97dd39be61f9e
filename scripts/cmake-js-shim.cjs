#!/usr/bin/env node
// prebuildify drives node-gyp ("rebuild --target=X --devdir=... --release"); our real build is
// CMake, so this stands in for node-gyp and runs cmake-js instead. N-API builds do not depend on
// the target version, so only the build type is passed on.
'use strict';
const { spawnSync } = require('node:child_process');
const path = require('node:path');

const args = process.argv.slice(2);
const debug = args.includes('--debug');
const cmakeJs = require.resolve('cmake-js/bin/cmake-js', { paths: [path.resolve(__dirname, '..')] });
const extra = process.env.PIA_CUDA === '0' ? ['--CDPIA_CUDA=OFF'] : [];
const r = spawnSync(process.execPath, [cmakeJs, 'rebuild', ...(debug ? ['--debug'] : []), ...extra], { stdio: 'inherit' });
process.exit(r.status ?? 1);
