// Time and peak memory of loading a real-size SD-1.5 single-file checkpoint (fp16, LDM names, random
// weights) with PIAPipeline.fromSingleFile, plus PIA's original motion checkpoint at its real size.
//
//   node --import tsx bench/single_file_load.ts [--dir /tmp] [--keep] [--safetensors-only]
//
// The files (~2.1 GB + ~0.8 GB, as .safetensors and then as torch .ckpt zips with the `state_dict` wrapper
// Lightning-era checkpoints carry) are written to a temporary folder and deleted afterwards. Each load runs in
// a fresh child process so its peak RSS is the load's own; the reference is a plain sequential read of the
// same bytes in the same run. Both run twice: cold (the files' pages dropped from the page cache first)
// and warm. Weights are memory-mapped at load and paged in on first use, so a first tiny generate (every
// network once) is timed too.
import { spawnSync } from 'node:child_process';
import { closeSync, fsyncSync, mkdtempSync, openSync, readSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { narrowF16 } from '../lib/io/float16.js';
import { tensor, torchSaveZip, type PyValue } from '../test/helpers/torch_pickle.js';
import { layoutBytes, piaOriginalLayout, sd1SingleFileLayout, SD15, type LayoutEntry } from './ldm_checkpoint_layout.js';

const self = fileURLToPath(import.meta.url);
const MiB = 1024 * 1024;

// ---- writing -------------------------------------------------------------------------------------------

/** A pool of random fp16 values (uniform ±0.05, the scale of trained SD weights); tensors are slices of it. */
function randomPool(n: number, seed: number): Uint16Array {
  let s = seed >>> 0 || 1;
  const v = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s ^= s << 13; s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5; s >>>= 0;
    v[i] = (s / 0x1_0000_0000 - 0.5) * 0.1;
  }
  return narrowF16(v);
}

/** Streams a .safetensors file: header, then every tensor's bytes (random fp16; position ids 0..n-1). */
function writeSafetensors(path: string, entries: readonly LayoutEntry[], pool: Uint16Array): number {
  const size = { F16: 2, F32: 4, I64: 8 } as const;
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  let offset = 0;
  for (const e of entries) {
    const bytes = e.shape.reduce((a, b) => a * b, 1) * size[e.dtype];
    header[e.name] = { dtype: e.dtype, shape: e.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8);
  const fd = openSync(path, 'w');
  try {
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
    writeSync(fd, len);
    writeSync(fd, json);
    const poolBytes = Buffer.from(pool.buffer, pool.byteOffset, pool.byteLength);
    for (const e of entries) {
      const n = e.shape.reduce((a, b) => a * b, 1);
      if (e.dtype === 'I64') {
        writeSync(fd, Buffer.from(BigInt64Array.from({ length: n }, (_, i) => BigInt(i % e.shape[e.shape.length - 1])).buffer));
        continue;
      }
      if (e.dtype !== 'F16') throw new Error(`writer: ${e.dtype} not needed here`);
      let left = n * 2;
      while (left > 0) {
        const chunk = Math.min(left, poolBytes.length / 2);
        const start = 2 * Math.floor(Math.random() * ((poolBytes.length - chunk) / 2));
        writeSync(fd, poolBytes, start, chunk);
        left -= chunk;
      }
    }
    fsyncSync(fd); // clean pages, so the cold runs can evict them
  } finally {
    closeSync(fd);
  }
  return statSync(path).size;
}

/**
 * The same tensors as torch.save writes them: a Lightning-era SD checkpoint is `{global_step, state_dict}`;
 * PIA's train.py saves the flat state dict (`wrap` false).
 */
function writeCkpt(path: string, entries: readonly LayoutEntry[], pool: Uint16Array, wrap: boolean): number {
  const poolBytes = Buffer.from(pool.buffer, pool.byteOffset, pool.byteLength);
  const stateDict: Record<string, PyValue> = {};
  entries.forEach((e, key) => {
    const n = e.shape.reduce((a, b) => a * b, 1);
    let bytes: Uint8Array;
    if (e.dtype === 'I64') {
      bytes = new Uint8Array(BigInt64Array.from({ length: n }, (_, i) => BigInt(i % e.shape[e.shape.length - 1])).buffer);
    } else {
      bytes = new Uint8Array(n * 2);
      for (let at = 0; at < bytes.length;) {
        const chunk = Math.min(bytes.length - at, poolBytes.length);
        const start = 2 * Math.floor(Math.random() * ((poolBytes.length - chunk) / 2));
        bytes.set(poolBytes.subarray(start, start + chunk), at);
        at += chunk;
      }
    }
    stateDict[e.name] = tensor({ storage: { key: String(key), dtype: e.dtype as 'F16' | 'I64', bytes }, shape: e.shape });
  });
  writeFileSync(path, torchSaveZip(wrap ? { global_step: 840000, state_dict: stateDict } : stateDict, { archive: 'random' }));
  const fd = openSync(path, 'r+');
  fsyncSync(fd);
  closeSync(fd);
  return statSync(path).size;
}

// ---- measuring (child process) -------------------------------------------------------------------------

async function measure(kind: string, model: string, adapter: string): Promise<void> {
  const { readFileSync } = await import('node:fs');
  const hwm = () => Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? NaN) / 1024;
  const rss = () => process.memoryUsage().rss / MiB;
  const out: Record<string, number | string> = { kind };
  if (kind === 'read') {
    // Reference: the bytes of both files read sequentially into one reused 64 MiB buffer.
    const buf = Buffer.alloc(64 * MiB);
    const t0 = performance.now();
    let total = 0;
    for (const p of [model, adapter]) {
      const fd = openSync(p, 'r');
      for (let n; (n = readSync(fd, buf, 0, buf.length, null)) > 0;) total += n;
      closeSync(fd);
    }
    out.seconds = (performance.now() - t0) / 1000;
    out.bytes = total;
  } else {
    const { backends } = await import('../lib/backends.js');
    const { MotionAdapter } = await import('../lib/models/motion_adapter.js');
    const { PIAPipeline } = await import('../lib/pipelines/pia.js');
    backends(); // loads the addon, so the baseline includes it
    out.baselineRssMiB = rss();
    const t0 = performance.now();
    const motionAdapter = await MotionAdapter.fromSingleFile(adapter);
    out.adapterSeconds = (performance.now() - t0) / 1000;
    out.afterAdapterRssMiB = rss();
    if (kind === 'pipeline') {
      const t1 = performance.now();
      const pipe = await PIAPipeline.fromSingleFile(model, { motionAdapter });
      out.pipelineSeconds = (performance.now() - t1) / 1000;
      out.afterPipelineRssMiB = rss();
      out.peakAfterLoadMiB = hwm();
      out.unetClass = pipe.unet.constructor.name;
      // Loading maps the file; weights are paged in (and widened where the backend keeps f32) on first
      // use. The smallest real run touches every network once: text encoder, VAE encode, one UNet step on
      // an 8×8 latent (64×64 px, 1 frame, no CFG), VAE decode. A second run shows the steady state.
      const image = { data: new Uint8Array(64 * 64 * 3).fill(128), width: 64, height: 64 };
      const run = () => pipe.generate({ image, prompt: 'a cat', numFrames: 1, height: 64, width: 64, numInferenceSteps: 1, guidanceScale: 1, outputType: 'tensor' });
      let t2 = performance.now();
      await run();
      out.firstGenerateSeconds = (performance.now() - t2) / 1000;
      out.afterFirstGenerateRssMiB = rss();
      t2 = performance.now();
      await run();
      out.secondGenerateSeconds = (performance.now() - t2) / 1000;
      pipe.dispose();
    }
    out.totalSeconds = (performance.now() - t0) / 1000;
  }
  // getrusage's maxRSS survives exec (it can report the parent's peak); VmHWM is this process's own.
  out.peakRssMiB = process.resourceUsage().maxRSS / 1024; // KiB
  out.vmHwmMiB = hwm();
  console.log(JSON.stringify(out));
}

/**
 * Drops the files' pages from the page cache (GNU dd's iflag=nocache = posix_fadvise DONTNEED on clean
 * pages; no root needed). Returns false where that is not available: the run is then warm, and says so.
 */
function evict(paths: string[]): boolean {
  return paths.every((p) => spawnSync('dd', [`if=${p}`, 'iflag=nocache', 'count=0', 'status=none']).status === 0);
}

function child(kind: string, model: string, adapter: string, cache: 'cold' | 'warm'): Record<string, number | string> {
  const cold = cache === 'cold' && evict([model, adapter]);
  const load = loadavg()[0];
  const r = spawnSync(process.execPath, ['--import', 'tsx', self, '--measure', kind, model, adapter], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${kind} run failed (${r.status}):\n${r.stderr}`);
  const line = r.stdout.trim().split('\n').pop()!;
  return { ...JSON.parse(line), cache: cold ? 'cold' : 'warm', loadavg1: load };
}

// ---- main ----------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  if (args[0] === '--measure') return measure(args[1], args[2], args[3]);
  const dirArg = args.indexOf('--dir');
  const dir = mkdtempSync(join(dirArg >= 0 ? args[dirArg + 1] : tmpdir(), 'pia-bench-single-file-'));
  const keep = args.includes('--keep');
  console.log(`machine: ${cpus().length} × ${cpus()[0]?.model}, ${(totalmem() / 2 ** 30).toFixed(1)} GiB; load average ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  try {
    const sd = sd1SingleFileLayout(SD15);
    const pia = piaOriginalLayout(SD15.unetChannels);
    const pool = randomPool(32 * MiB, 20240229);
    const gib = (b: number) => (b / 2 ** 30).toFixed(2);
    const f = (x: unknown, d = 2) => Number(x).toFixed(d);
    const results: Record<string, unknown>[] = [];
    const formats = args.includes('--safetensors-only') ? ['safetensors'] : ['safetensors', 'ckpt'];
    for (const format of formats) {
      const model = join(dir, `sd15-random.fp16.${format}`);
      const adapter = join(dir, `pia-random.fp16.${format}`);
      const t = performance.now();
      const modelBytes = format === 'ckpt' ? writeCkpt(model, sd, pool, true) : writeSafetensors(model, sd, pool);
      const adapterBytes = format === 'ckpt' ? writeCkpt(adapter, pia, pool, false) : writeSafetensors(adapter, pia, pool);
      console.log(`\n${format}: wrote ${sd.length} tensors, ${gib(modelBytes)} GiB (payload ${layoutBytes(sd)} B) and ` +
        `${pia.length} tensors (PIA original layout), ${gib(adapterBytes)} GiB in ${((performance.now() - t) / 1000).toFixed(1)} s`);
      for (const cache of ['cold', 'warm'] as const) {
        const read = child('read', model, adapter, cache);
        const full = child('pipeline', model, adapter, cache);
        results.push({ format, modelBytes, adapterBytes, ...read }, { format, modelBytes, adapterBytes, ...full });
        const loadSeconds = Number(full.adapterSeconds) + Number(full.pipelineSeconds);
        console.log(`[${format}, ${full.cache} page cache, load avg ${f(full.loadavg1)}]`);
        console.log(`  reference: sequential read of both files ${f(read.seconds)} s (${gib((modelBytes + adapterBytes) / Number(read.seconds))} GiB/s)`);
        console.log(`  MotionAdapter.fromSingleFile ${f(full.adapterSeconds)} s + PIAPipeline.fromSingleFile ${f(full.pipelineSeconds)} s ` +
          `(${f(loadSeconds / Number(read.seconds))}× the read); peak RSS after load ${f(full.peakAfterLoadMiB, 0)} MiB (baseline ${f(full.baselineRssMiB, 0)} MiB)`);
        console.log(`  first generate (1 step, 1 frame, 64×64, every network once) ${f(full.firstGenerateSeconds)} s, second ${f(full.secondGenerateSeconds)} s; ` +
          `RSS after ${f(full.afterFirstGenerateRssMiB, 0)} MiB; process peak (VmHWM) ${f(full.vmHwmMiB, 0)} MiB`);
      }
      if (!keep) {
        rmSync(model);
        rmSync(adapter);
      }
    }
    console.log(JSON.stringify(results));
  } finally {
    if (!keep) rmSync(dir, { recursive: true, force: true });
    else console.log(`kept ${dir}`);
  }
}

await main();
