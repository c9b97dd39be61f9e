import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The folder holding pia-animate's package.json, found from this module (works from lib/ and dist/). */
export const packageRoot: string = (() => {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg)) {
      try {
        if (JSON.parse(readFileSync(pkg, 'utf8')).name === 'pia-animate') return dir;
      } catch {
        // keep walking: a malformed package.json higher up is not ours
      }
    }
    const parent = dirname(dir);
    if (parent === dir) throw new Error('pia-animate: cannot find the package root from ' + fileURLToPath(import.meta.url));
    dir = parent;
  }
})();
