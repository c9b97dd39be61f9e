import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** ../shared/fixtures beside the repository (read in place, never copied and edited). */
export const repoRoot = fileURLToPath(new URL('../..', import.meta.url));
export const fixturesDir = process.env.PIA_FIXTURES ?? join(repoRoot, '..', 'shared', 'fixtures');

export function fixture(...parts: string[]): string {
  const p = join(fixturesDir, ...parts);
  if (!existsSync(p)) throw new Error(`fixture missing: ${p} (tests read ../shared/fixtures beside the clone)`);
  return p;
}
