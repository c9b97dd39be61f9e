// A Hugging Face hub cache on disk, as huggingface_hub's downloads leave it: blobs/ named by content hash,
// snapshots/<commit>/<path> relative symlinks into blobs/, refs/<branch> holding the bare commit hash.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';

/** Every file under `dir`, as paths relative to it. */
export function listFiles(dir: string, prefix = ''): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? listFiles(join(dir, e.name), `${prefix}${e.name}/`) : [`${prefix}${e.name}`],
  );
}

/**
 * One snapshot of a repo in a hub cache: each file's bytes go to blobs/<sha256> (shared between
 * snapshots, as in the real cache) and snapshots/<commit>/<path> is a relative link to it.
 */
export function addSnapshot(cache: string, repoId: string, commit: string, files: Map<string, Buffer>, refs: string[] = []): string {
  const repoDir = join(cache, `models--${repoId.replace('/', '--')}`);
  const snapshot = join(repoDir, 'snapshots', commit);
  for (const [path, bytes] of files) {
    const blob = join(repoDir, 'blobs', createHash('sha256').update(bytes).digest('hex'));
    mkdirSync(dirname(blob), { recursive: true });
    if (!existsSync(blob)) writeFileSync(blob, bytes);
    const link = join(snapshot, path);
    mkdirSync(dirname(link), { recursive: true });
    symlinkSync(relative(dirname(link), blob), link);
  }
  for (const ref of refs) {
    mkdirSync(join(repoDir, 'refs', dirname(ref)), { recursive: true });
    writeFileSync(join(repoDir, 'refs', ref), commit); // huggingface_hub writes the bare hash
  }
  return snapshot;
}

/** The files of a folder as a path → bytes map (`prefix` puts them under a subfolder). */
export function folderFiles(dir: string, prefix = ''): Map<string, Buffer> {
  return new Map(listFiles(dir).map((f) => [prefix + f, readFileSync(join(dir, f))]));
}
