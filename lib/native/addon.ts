// Loads the N-API addon once: PIA_ADDON_PATH, then what node-gyp-build finds (build/Release,
// then prebuilds/<platform>-<arch>/). When all fail, one message says what was tried and what to do.
import { createRequire } from 'node:module';
import { PiaError } from '../errors.js';
import { packageRoot } from './package_root.js';
import type { NativeAddon } from './types.js';

const require = createRequire(import.meta.url);
let cached: NativeAddon | undefined;
let cachedPath: string | undefined;

/** The file the addon was loaded from (after addon() succeeded). */
export function addonPath(): string | undefined {
  addon();
  return cachedPath;
}

export function addon(): NativeAddon {
  if (cached) return cached;
  const tried: string[] = [];
  const override = process.env.PIA_ADDON_PATH;
  if (override) {
    try {
      cached = require(override) as NativeAddon;
      cachedPath = override;
      return cached;
    } catch (e) {
      tried.push(`PIA_ADDON_PATH=${override}: ${(e as Error).message}`);
    }
  }
  try {
    const load = require('node-gyp-build') as ((dir: string) => unknown) & { resolve(dir: string): string };
    cachedPath = load.resolve(packageRoot);
    cached = require(cachedPath) as NativeAddon;
    return cached;
  } catch (e) {
    tried.push(`${packageRoot}/build/Release and ${packageRoot}/prebuilds/${process.platform}-${process.arch}: ${(e as Error).message.split('\n')[0]}`);
  }
  throw new PiaError(
    'E_BACKEND',
    'pia-animate: the native addon could not be loaded.\n  Tried:\n    ' + tried.join('\n    ') +
      '\n  There is no prebuilt addon for this platform, and npm skips install scripts unless allowed.' +
      '\n  Fix: `npm install-scripts approve pia-animate && npm rebuild pia-animate` (builds from source: needs cmake and a C++17' +
      ` compiler), or run \`npx cmake-js compile\` in ${packageRoot}.`,
  );
}
