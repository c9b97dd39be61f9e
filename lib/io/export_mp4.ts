import { spawn } from 'node:child_process';
import { constants } from 'node:fs';
import { access } from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { PiaError, abortError, throwIfAborted } from '../errors.js';
import type { Frame } from './image.js';
import { checkFps, checkFrames, checkIntInRange } from './export_frames.js';
import { withAtomicFile } from './atomic_write.js';

export interface Mp4Options {
  /** Frames per second (default 8). */
  fps?: number;
  /** x264 constant rate factor, 0 (lossless) .. 51 (worst); default 18 (visually near-lossless). */
  crf?: number;
  /** The ffmpeg executable; default: `ffmpeg` found on PATH. */
  ffmpegPath?: string;
  signal?: AbortSignal;
}

async function isExecutable(p: string): Promise<boolean> {
  try {
    await access(p, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** The first `ffmpeg` on PATH, or undefined. */
export async function findFfmpeg(): Promise<string | undefined> {
  const names = process.platform === 'win32' ? ['ffmpeg.exe', 'ffmpeg'] : ['ffmpeg'];
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (!dir) continue;
    for (const n of names) if (await isExecutable(join(dir, n))) return join(dir, n);
  }
  return undefined;
}

function noFfmpeg(detail: string): PiaError {
  return new PiaError(
    'E_UNSUPPORTED',
    `exportToMp4 needs ffmpeg on PATH (${detail}); install ffmpeg (e.g. apt-get install ffmpeg, brew install ffmpeg), ` +
      'pass { ffmpegPath }, or export a GIF, WebP or PNG sequence instead',
  );
}

/** Feeds `chunks` to ffmpeg's stdin and waits for it to exit; rejects with its stderr on failure. */
function runFfmpeg(cmd: string, args: string[], chunks: Uint8Array[], signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    let aborted = false;
    let stderr = '';
    let spawnError: Error | undefined;
    const child = spawn(cmd, args, { stdio: ['pipe', 'ignore', 'pipe'] });
    const onAbort = () => {
      aborted = true;
      child.kill('SIGKILL');
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d: string) => {
      stderr = (stderr + d).slice(-4000);
    });
    child.on('error', (e) => {
      spawnError = e;
    });
    // 'close' comes after 'error' too (the process never started), so every outcome is settled here,
    // once the process is gone and can no longer write the output file.
    child.on('close', (code, sig) => {
      signal?.removeEventListener('abort', onAbort);
      if (aborted) return reject(abortError(signal));
      if (spawnError) {
        const code = (spawnError as NodeJS.ErrnoException).code;
        return reject(code === 'ENOENT' ? noFfmpeg(`${cmd} not found`) : new PiaError('E_BACKEND', `cannot run ${cmd}: ${spawnError.message}`, { cause: spawnError }));
      }
      if (code === 0) return resolve();
      const msg = stderr.trim();
      if (/Unknown encoder|Encoder not found/i.test(msg)) {
        return reject(new PiaError('E_UNSUPPORTED', `exportToMp4: this ffmpeg has no libx264 encoder: ${msg}`));
      }
      reject(new PiaError('E_BACKEND', `ffmpeg failed (${code !== null ? `exit code ${code}` : `signal ${sig}`}): ${msg || 'no message'}`));
    });
    // A write error (EPIPE) means ffmpeg exited early; its exit status and stderr, seen above, say why.
    pipeline(Readable.from(chunks), child.stdin).catch(() => {});
  });
}

/**
 * Writes frames as an H.264 MP4 (yuv420p, which every player reads) through an `ffmpeg` executable,
 * fed raw RGB frames on stdin; written to a temp file beside `path`, then renamed.
 * yuv420p needs even sizes: an odd width or height is padded by one black column/row.
 */
export async function exportToMp4(frames: readonly Frame[], path: string, options: Mp4Options = {}): Promise<string> {
  const { fps = 8, crf = 18, ffmpegPath, signal } = options;
  const { width, height } = checkFrames(frames);
  checkFps(fps);
  checkIntInRange('crf', crf, 0, 51);
  throwIfAborted(signal);
  const ffmpeg = ffmpegPath ?? (await findFfmpeg());
  if (!ffmpeg) throw noFfmpeg(`none found in ${(process.env.PATH ?? '').split(delimiter).filter(Boolean).length} PATH folders`);
  const pad = width % 2 !== 0 || height % 2 !== 0;
  await withAtomicFile(path, (tmp) =>
    runFfmpeg(
      ffmpeg,
      [
        '-hide_banner', '-loglevel', 'error', '-nostdin', '-y',
        '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-s', `${width}x${height}`, '-r', String(fps), '-i', 'pipe:0',
        '-an',
        ...(pad ? ['-vf', 'pad=ceil(iw/2)*2:ceil(ih/2)*2'] : []),
        '-c:v', 'libx264', '-pix_fmt', 'yuv420p', '-crf', String(crf), '-movflags', '+faststart',
        '-f', 'mp4', tmp,
      ],
      frames.map((f) => f.data),
      signal,
    ),
  );
  return path;
}
