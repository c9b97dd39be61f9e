import { closeSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { open, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';

/**
 * A fresh name beside `path` (same folder, so the final rename stays on one file system and is
 * atomic). The leading dot keeps it out of casual listings; `.tmp` marks it as disposable.
 */
export function tempPathBeside(path: string): string {
  return join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
}

/** Writes `chunks` to a temp file beside `path`, fsyncs, then renames it over `path`: readers never see half a file. */
export function writeFileAtomicSync(path: string, chunks: readonly Uint8Array[]): void {
  const tmp = tempPathBeside(path);
  let fd: number | undefined;
  try {
    fd = openSync(tmp, 'wx');
    for (const c of chunks) {
      let done = 0;
      while (done < c.byteLength) done += writeSync(fd, c, done, c.byteLength - done);
    }
    fsyncSync(fd);
    closeSync(fd);
    fd = undefined;
    renameSync(tmp, path);
  } catch (e) {
    if (fd !== undefined) closeSync(fd);
    rmSync(tmp, { force: true });
    throw e;
  }
}

/** Async twin of writeFileAtomicSync. */
export async function writeFileAtomic(path: string, data: Uint8Array | readonly Uint8Array[]): Promise<void> {
  const chunks = data instanceof Uint8Array ? [data] : data;
  await withAtomicFile(path, async (tmp) => {
    const fh = await open(tmp, 'wx');
    try {
      for (const c of chunks) {
        let done = 0;
        while (done < c.byteLength) done += (await fh.write(c, done, c.byteLength - done)).bytesWritten;
      }
      await fh.sync();
    } finally {
      await fh.close();
    }
  });
}

/**
 * Runs `produce(tmp)`, which must create the file `tmp` (e.g. an external encoder writing it), then renames
 * it over `path`. On any failure the temp file is removed and the error rethrown; `path` is left untouched.
 */
export async function withAtomicFile(path: string, produce: (tmp: string) => Promise<void>): Promise<void> {
  const tmp = tempPathBeside(path);
  try {
    await produce(tmp);
    await rename(tmp, path);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
}
