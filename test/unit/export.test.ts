import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { exportToGif, exportToWebp, exportToPngs, exportToMp4, findFfmpeg, type Frame } from '../../lib/io/index.js';
import { PiaError } from '../../lib/errors.js';
import { tempDir } from '../helpers/tmp.js';

function isPiaError(code: string) {
  return (e: unknown) => e instanceof PiaError && e.code === code;
}

/** A moving gradient with a few flat patches: distinct frames, many colours. */
function makeFrames(count: number, width: number, height: number): Frame[] {
  return Array.from({ length: count }, (_, k) => {
    const data = new Uint8Array(width * height * 3);
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        const o = (y * width + x) * 3;
        data[o] = (x * 255) / Math.max(1, width - 1);
        data[o + 1] = (y * 255) / Math.max(1, height - 1);
        data[o + 2] = (k * 60 + x * 3) % 256;
      }
    }
    return { data, width, height };
  });
}

/** Frames with at most 4 colours each, so a 256-colour palette can hold them (nearly) exactly. */
function flatFrames(count: number, width: number, height: number): Frame[] {
  const colours = [[0, 0, 0], [255, 255, 255], [200, 40, 10], [20, 120, 220]];
  return Array.from({ length: count }, (_, k) => {
    const data = new Uint8Array(width * height * 3);
    for (let i = 0; i < width * height; i++) data.set(colours[(Math.floor(i / width) + k + (i % width > width / 2 ? 1 : 0)) % 4], i * 3);
    return { data, width, height };
  });
}

async function decodeAll(path: string): Promise<{ pages: number; width: number; pageHeight: number; loop?: number; delay?: number[]; data: Buffer }> {
  const meta = await sharp(path, { pages: -1 }).metadata();
  const { data } = await sharp(path, { pages: -1 }).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  return { pages: meta.pages ?? 1, width: meta.width!, pageHeight: meta.pageHeight ?? meta.height!, loop: meta.loop, delay: meta.delay, data };
}

function maxAbsDiff(a: Uint8Array, b: Uint8Array): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

function meanAbsDiff(a: Uint8Array, b: Uint8Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += Math.abs(a[i] - b[i]);
  return s / a.length;
}

/** Only the expected names in the folder: no `.name.pid.rand.tmp` left behind. */
function assertNoTemp(dir: string) {
  const left = readdirSync(dir).filter((n) => n.endsWith('.tmp'));
  assert.deepEqual(left, []);
}

describe('exportToGif', () => {
  const dir = tempDir('pia-gif-');

  test('per-frame palette: frame count, size, loop, delay; flat colours come back within palette rounding', async () => {
    const frames = flatFrames(5, 20, 12);
    const p = join(dir, 'flat.gif');
    assert.equal(await exportToGif(frames, p, { fps: 10 }), p);
    const d = await decodeAll(p);
    assert.equal(d.pages, 5);
    assert.equal(d.width, 20);
    assert.equal(d.pageHeight, 12);
    assert.equal(d.loop, 0); // forever
    assert.deepEqual(d.delay, [100, 100, 100, 100, 100]);
    const want = Buffer.concat(frames.map((f) => f.data));
    // Tolerance: gifenc's quantizer bins colours as RGB565 and averages each bin, so a colour may move by
    // up to half a 5-bit step (4 levels) plus rounding.
    assert.ok(maxAbsDiff(d.data, want) <= 4, `max diff ${maxAbsDiff(d.data, want)}`);
    assertNoTemp(dir);
  });

  test('global palette and loop count; many-colour frames stay close', async () => {
    const frames = makeFrames(4, 32, 24);
    const p = join(dir, 'global.gif');
    await exportToGif(frames, p, { palette: 'global', loop: 3, fps: 8 });
    const d = await decodeAll(p);
    assert.equal(d.pages, 4);
    assert.equal(d.loop, 3);
    assert.deepEqual(d.delay, [130, 130, 130, 130]); // 125 ms stored as 13 centiseconds
    const want = Buffer.concat(frames.map((f) => f.data));
    // Tolerance: the frames span the whole RGB cube (~3000 distinct colours) and 256 entries cover it with
    // about 6 levels a channel (steps of ~40), so a mean error near 10 would be the uniform-grid bound; gifenc does better.
    assert.ok(meanAbsDiff(d.data, want) < 8, `mean diff ${meanAbsDiff(d.data, want)}`);
    // A global palette is written once: the file is smaller than with one palette per frame.
    const q = join(dir, 'perframe.gif');
    await exportToGif(frames, q, { palette: 'per-frame', loop: 3 });
    assert.ok(statSync(p).size < statSync(q).size);
    assertNoTemp(dir);
  });

  test('loop: 1 plays once; dither changes the indices but stays close', async () => {
    const frames = makeFrames(2, 48, 32); // more colours than a palette holds, so there is an error to diffuse
    const once = join(dir, 'once.gif');
    await exportToGif(frames, once, { loop: 1 });
    assert.equal((await decodeAll(once)).loop, 1);
    const plain = join(dir, 'plain.gif');
    const dith = join(dir, 'dither.gif');
    await exportToGif(frames, plain, { loop: 1 });
    await exportToGif(frames, dith, { loop: 1, dither: true });
    const a = await decodeAll(plain);
    const b = await decodeAll(dith);
    const want = Buffer.concat(frames.map((f) => f.data));
    assert.notDeepEqual(a.data, b.data);
    // Dithering trades per-pixel error for the right local average: per pixel it is no better than plain.
    assert.ok(meanAbsDiff(b.data, want) < 12, `dithered mean diff ${meanAbsDiff(b.data, want)}`);
    // ...but the 4x4 block averages are closer to the source than without it.
    const blockErr = (got: Uint8Array) => {
      let e = 0;
      for (let f = 0; f < 2; f++) for (let by = 0; by < 32; by += 4) for (let bx = 0; bx < 48; bx += 4) for (let c = 0; c < 3; c++) {
        let s = 0;
        for (let y = by; y < by + 4; y++) for (let x = bx; x < bx + 4; x++) {
          const o = ((f * 32 + y) * 48 + x) * 3 + c;
          s += got[o] - want[o];
        }
        e += Math.abs(s / 16);
      }
      return e;
    };
    assert.ok(blockErr(b.data) < blockErr(a.data), `block error dithered ${blockErr(b.data)} vs plain ${blockErr(a.data)}`);
  });

  test('bad frames and options are E_INVALID_ARGUMENT and leave the target untouched', async () => {
    const p = join(dir, 'keep.gif');
    writeFileSync(p, 'old');
    const good = makeFrames(2, 4, 4);
    const cases: [Frame[], object][] = [
      [[], {}],
      [[good[0], { data: new Uint8Array(3 * 4 * 5), width: 4, height: 5 }], {}],
      [[{ data: new Uint8Array(10), width: 4, height: 4 }], {}],
      [[{ data: [1, 2, 3] as unknown as Uint8Array, width: 1, height: 1 }], {}],
      [good, { fps: 0 }],
      [good, { loop: -1 }],
      [good, { palette: 'octree' }],
    ];
    for (const [frames, opts] of cases) {
      await assert.rejects(exportToGif(frames, p, opts), isPiaError('E_INVALID_ARGUMENT'));
    }
    assert.equal(readFileSync(p, 'utf8'), 'old');
    assertNoTemp(dir);
  });

  test('writing into a missing folder fails and leaves nothing', async () => {
    await assert.rejects(exportToGif(makeFrames(1, 4, 4), join(dir, 'no', 'such', 'x.gif')), { code: 'ENOENT' });
    assertNoTemp(dir);
  });
});

describe('exportToWebp', () => {
  const dir = tempDir('pia-webp-');

  test('animated lossless WebP decodes back to the exact frames', async () => {
    const frames = makeFrames(3, 24, 16);
    const p = join(dir, 'a.webp');
    await exportToWebp(frames, p, { lossless: true, fps: 4, loop: 2 });
    const d = await decodeAll(p);
    assert.equal(d.pages, 3);
    assert.equal(d.width, 24);
    assert.equal(d.pageHeight, 16);
    assert.equal(d.loop, 2);
    assert.deepEqual(d.delay, [250, 250, 250]);
    assert.deepEqual(new Uint8Array(d.data), new Uint8Array(Buffer.concat(frames.map((f) => f.data))));
    assertNoTemp(dir);
  });

  test('lossy WebP: right shape, close pixels, loops forever by default', async () => {
    const frames = makeFrames(2, 32, 32);
    const p = join(dir, 'b.webp');
    await exportToWebp(frames, p, { quality: 90 });
    const d = await decodeAll(p);
    assert.equal(d.pages, 2);
    assert.equal(d.loop, 0);
    assert.deepEqual(d.delay, [125, 125]);
    // Tolerance: lossy VP8 at quality 90 on smooth gradients (chroma is subsampled 4:2:0).
    assert.ok(meanAbsDiff(d.data, Buffer.concat(frames.map((f) => f.data))) < 6);
    await assert.rejects(exportToWebp(frames, p, { quality: 0 }), isPiaError('E_INVALID_ARGUMENT'));
    assertNoTemp(dir);
  });
});

describe('exportToPngs', () => {
  const dir = tempDir('pia-png-');

  test('one exact PNG per frame, folder created, names in order', async () => {
    const frames = makeFrames(3, 10, 7);
    const out = join(dir, 'nested', 'frames');
    const paths = await exportToPngs(frames, out);
    assert.deepEqual(readdirSync(out).sort(), ['frame_0000.png', 'frame_0001.png', 'frame_0002.png']);
    assert.deepEqual(paths, ['frame_0000.png', 'frame_0001.png', 'frame_0002.png'].map((n) => join(out, n)));
    for (let i = 0; i < 3; i++) {
      const { data, info } = await sharp(paths[i]).raw().toBuffer({ resolveWithObject: true });
      assert.equal(info.width, 10);
      assert.equal(info.height, 7);
      assert.equal(info.channels, 3);
      assert.deepEqual(new Uint8Array(data), frames[i].data);
    }
    const again = await exportToPngs(frames.slice(0, 1), out, { prefix: 'x-' });
    assert.deepEqual(again, [join(out, 'x-0000.png')]);
    await assert.rejects(exportToPngs(frames, out, { prefix: '../up' }), isPiaError('E_INVALID_ARGUMENT'));
    assertNoTemp(out);
  });
});

describe('exportToMp4', () => {
  const dir = tempDir('pia-mp4-');

  test('no ffmpeg on PATH: E_UNSUPPORTED saying what to do', async () => {
    const empty = join(dir, 'empty-bin');
    mkdirSync(empty);
    const saved = process.env.PATH;
    process.env.PATH = empty;
    try {
      assert.equal(await findFfmpeg(), undefined);
      await assert.rejects(exportToMp4(makeFrames(2, 4, 4), join(dir, 'x.mp4')), (e: unknown) => {
        assert.ok(isPiaError('E_UNSUPPORTED')(e));
        assert.match((e as Error).message, /needs ffmpeg on PATH/);
        return true;
      });
      await assert.rejects(exportToMp4(makeFrames(2, 4, 4), join(dir, 'x.mp4'), { ffmpegPath: join(empty, 'ffmpeg') }), isPiaError('E_UNSUPPORTED'));
    } finally {
      process.env.PATH = saved;
    }
    assertNoTemp(dir);
  });

  // The plumbing (arguments, raw frames on stdin, temp file + rename, error reporting) is checked with a
  // stand-in `ffmpeg` script: it records its arguments and the number of stdin bytes in the output file.
  test('feeds raw RGB frames to ffmpeg and renames its output into place (stand-in ffmpeg)', { skip: process.platform === 'win32' }, async () => {
    const bin = join(dir, 'fake-bin');
    mkdirSync(bin);
    const fake = join(bin, 'ffmpeg');
    writeFileSync(fake, '#!/bin/sh\nfor last; do :; done\nn=$(wc -c | tr -d " ")\nprintf "%s\\n" "$*" "$n" > "$last"\n');
    chmodSync(fake, 0o755);
    const saved = process.env.PATH;
    process.env.PATH = `${bin}:${saved}`;
    try {
      assert.equal(await findFfmpeg(), fake);
      const frames = makeFrames(3, 6, 5); // odd height: padded for yuv420p
      const p = join(dir, 'out.mp4');
      await exportToMp4(frames, p, { fps: 12, crf: 20 });
      const [args, bytes] = readFileSync(p, 'utf8').trim().split('\n');
      assert.equal(Number(bytes), 3 * 6 * 5 * 3);
      assert.match(args, /-f rawvideo -pix_fmt rgb24 -s 6x5 -r 12 -i pipe:0/);
      assert.match(args, /pad=ceil\(iw\/2\)\*2:ceil\(ih\/2\)\*2/);
      assert.match(args, /-c:v libx264 -pix_fmt yuv420p -crf 20/);
      assert.match(args, /-f mp4 \S*\.out\.mp4\.\d+\.[0-9a-f]+\.tmp$/); // written beside, then renamed
      assertNoTemp(dir);

      writeFileSync(fake, '#!/bin/sh\ncat > /dev/null\necho "Unknown encoder libx264" >&2\nexit 1\n');
      await assert.rejects(exportToMp4(frames, join(dir, 'bad.mp4')), isPiaError('E_UNSUPPORTED'));
      writeFileSync(fake, '#!/bin/sh\nfor last; do :; done\necho partial > "$last"\necho "boom: broken pipe" >&2\nexit 3\n');
      await assert.rejects(exportToMp4(frames, join(dir, 'bad.mp4')), (e: unknown) => {
        assert.ok(isPiaError('E_BACKEND')(e));
        assert.match((e as Error).message, /exit code 3.*boom/);
        return true;
      });
      assert.deepEqual(readdirSync(dir).filter((n) => n.startsWith('bad') || n.includes('bad.mp4')), []);
      assertNoTemp(dir);

      writeFileSync(fake, '#!/bin/sh\nexec sleep 30\n');
      const ac = new AbortController();
      const run = exportToMp4(frames, join(dir, 'slow.mp4'), { signal: ac.signal });
      setTimeout(() => ac.abort(), 100);
      await assert.rejects(run, { name: 'AbortError' });
      assertNoTemp(dir);
    } finally {
      process.env.PATH = saved;
    }
  });

  test('real ffmpeg: a playable MP4', async (t) => {
    const ffmpeg = await findFfmpeg();
    if (!ffmpeg) return t.skip('no ffmpeg on PATH on this machine (exportToMp4 reports E_UNSUPPORTED there, tested above)');
    const p = join(dir, 'real.mp4');
    await exportToMp4(makeFrames(8, 32, 24), p, { fps: 8 });
    const head = readFileSync(p).subarray(4, 8).toString('latin1');
    assert.equal(head, 'ftyp');
    assertNoTemp(dir);
  });
});
