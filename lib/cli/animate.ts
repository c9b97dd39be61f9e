// `pia animate <image> --prompt ... -o out.gif|.webp|.mp4|dir/`
import { existsSync, statSync } from 'node:fs';
import { extname } from 'node:path';
import { PiaError } from '../errors.js';
import { exportToGif, exportToMp4, exportToPngs, exportToWebp } from '../io/index.js';
import type { Frame } from '../io/index.js';
import { Generator } from '../random/generator.js';
import { schedulerClasses, type SchedulerClassName } from '../schedulers/index.js';
import { loadCliPipeline } from './load_pipeline.js';
import { progressReporter } from './progress.js';
import { DEFAULT_IP_ADAPTER, DEMO_IP_ADAPTER_FILE, parseIpAdapterArg } from './ip_adapter_arg.js';
import { UsageError } from './usage_error.js';
import { parseEmbeddingArg, parseLoraArg } from './weight_args.js';
import type { PipelineDevice, PipelineDtype } from '../loaders/device_options.js';

export const SCHEDULER_NAMES: Record<string, SchedulerClassName> = {
  ddim: 'DDIMScheduler',
  euler: 'EulerDiscreteScheduler',
  'euler-a': 'EulerAncestralDiscreteScheduler',
  'dpm++': 'DPMSolverMultistepScheduler',
  lms: 'LMSDiscreteScheduler',
  pndm: 'PNDMScheduler',
  lcm: 'LCMScheduler',
};

// FreeU values the FreeU authors suggest for SD 1.5.
const FREEU_SD15 = { s1: 0.9, s2: 0.2, b1: 1.5, b2: 1.6 };

export interface AnimateArgs {
  image: string;
  prompt: string;
  negativePrompt?: string;
  model?: string;
  adapter?: string;
  vae?: string;
  /** Component configs and tokenizer for a single-file model (folder or repo id). */
  config?: string;
  /** `path[:scale]`, one adapter each. */
  lora?: string[];
  /** `path[:token]`, one textual inversion each. */
  embedding?: string[];
  /** `path[:scale]` of an IP-Adapter (needs ipImage). */
  ipAdapter?: string;
  /** The image prompt. */
  ipImage?: string;
  revision?: string;
  variant?: string;
  /** 'auto' | 'cpu' | 'cuda' | 'cuda:N' and the GPU's dtype (checked by the pipeline loaders). */
  device?: string;
  dtype?: string;
  cpuOffload?: boolean;
  scheduler?: string;
  steps?: string;
  guidance?: string;
  frames?: string;
  size?: string;
  motionScale?: string;
  strength?: string;
  seed?: string;
  freeInit?: string;
  freeU?: string;
  clipSkip?: string;
  fps?: string;
  output: string;
  json: boolean;
  quiet: boolean;
}

export { UsageError } from './usage_error.js';

function int(v: string | undefined, name: string): number | undefined {
  if (v === undefined) return undefined;
  if (!/^-?\d+$/.test(v)) throw new UsageError(`--${name} must be an integer (got '${v}')`);
  return Number(v);
}

function num(v: string | undefined, name: string): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n)) throw new UsageError(`--${name} must be a number (got '${v}')`);
  return n;
}

function outputKind(path: string): 'gif' | 'webp' | 'mp4' | 'pngs' {
  if (path.endsWith('/') || (existsSync(path) && statSync(path).isDirectory())) return 'pngs';
  const ext = extname(path).toLowerCase();
  if (ext === '.gif') return 'gif';
  if (ext === '.webp') return 'webp';
  if (ext === '.mp4') return 'mp4';
  throw new UsageError(`-o must end in .gif, .webp or .mp4, or name a folder (ending in /) for PNG frames (got '${path}')`);
}

export async function animate(a: AnimateArgs, signal: AbortSignal): Promise<Record<string, unknown>> {
  const kind = outputKind(a.output);
  let height: number | undefined, width: number | undefined;
  if (a.size !== undefined) {
    const m = /^(\d+)x(\d+)$/i.exec(a.size);
    if (!m) throw new UsageError(`--size must be WxH, e.g. 512x512 (got '${a.size}')`);
    width = Number(m[1]);
    height = Number(m[2]);
  }
  const schedulerName = a.scheduler === undefined ? undefined : SCHEDULER_NAMES[a.scheduler];
  if (a.scheduler !== undefined && !schedulerName) {
    throw new UsageError(`--scheduler must be one of ${Object.keys(SCHEDULER_NAMES).join(', ')} (got '${a.scheduler}')`);
  }
  let freeU: typeof FREEU_SD15 | undefined;
  if (a.freeU !== undefined) {
    if (a.freeU === '' || a.freeU === 'true') freeU = FREEU_SD15;
    else {
      const parts = a.freeU.split(',').map(Number);
      if (parts.length !== 4 || parts.some((p) => !Number.isFinite(p))) throw new UsageError('--free-u takes s1,s2,b1,b2 (or no value for the SD 1.5 defaults)');
      freeU = { s1: parts[0], s2: parts[1], b1: parts[2], b2: parts[3] };
    }
  }
  const freeInitIters = a.freeInit === undefined ? undefined : a.freeInit === '' ? 3 : int(a.freeInit, 'free-init');
  const seed = a.seed === undefined ? undefined : /^\d+$/.test(a.seed) ? BigInt(a.seed) : (() => { throw new UsageError(`--seed must be a non-negative integer (got '${a.seed}')`); })();
  const fps = num(a.fps, 'fps') ?? 8;
  if (!(fps > 0 && fps <= 100)) throw new UsageError('--fps must be in (0, 100]');
  if (!existsSync(a.image)) throw new PiaError('E_IMAGE', `image not found: ${a.image}`, { file: a.image });

  if (a.model === undefined && (a.revision !== undefined || a.variant !== undefined)) {
    throw new UsageError(`--${a.revision !== undefined ? 'revision' : 'variant'} applies to --model, which was not given`);
  }
  if (a.ipAdapter !== undefined && a.ipImage === undefined) throw new UsageError('--ip-adapter needs --ip-image (the image prompt)');
  if (a.ipImage !== undefined && !existsSync(a.ipImage)) throw new PiaError('E_IMAGE', `image not found: ${a.ipImage}`, { file: a.ipImage });
  // Without --ip-adapter: the demo model's random adapter, or h94's SD-1.5 base adapter for a --model.
  const ip = a.ipImage === undefined ? undefined : parseIpAdapterArg(a.ipAdapter ?? (a.model === undefined ? DEMO_IP_ADAPTER_FILE : DEFAULT_IP_ADAPTER));
  const t0 = Date.now();
  if (a.model === undefined && a.vae !== undefined) throw new UsageError('--vae applies to --model, which was not given');
  if (a.model === undefined && a.config !== undefined) throw new UsageError('--config applies to a single-file --model, which was not given');
  const loras = (a.lora ?? []).map(parseLoraArg);
  const embeddings = (a.embedding ?? []).map(parseEmbeddingArg);
  const { pipe, demo, description } = await loadCliPipeline({
    model: a.model, adapter: a.adapter, vae: a.vae, config: a.config, revision: a.revision, variant: a.variant, loras, embeddings, signal,
    device: a.device as PipelineDevice | undefined, dtype: a.dtype as PipelineDtype | undefined,
  });
  if (a.cpuOffload) pipe.enableModelCpuOffload();
  if (demo && !a.quiet && !a.json) {
    process.stderr.write(
      'pia: no --model given: using the tiny random-weight demo model bundled with the package.\n' +
        '     Its output is noise. Real animations need real weights, e.g.\n' +
        '     --model SG161222/Realistic_Vision_V6.0_B1_noVAE --adapter openmmlab/PIA-condition-adapter\n',
    );
  }
  // The demo UNet's sample_size would give 16×16 frames; 64×64 shows more of what happens.
  if (demo && height === undefined) height = width = 64;
  try {
    if (schedulerName) pipe.scheduler = schedulerClasses[schedulerName].fromConfig(pipe.scheduler.config);
    if (freeU) pipe.enableFreeU(freeU);
    if (ip) {
      await pipe.loadIpAdapter(ip.pathOrRepo, { subfolder: ip.subfolder, weightName: ip.weightName, signal });
      pipe.setIpAdapterScale(ip.scale);
    }
    if (freeInitIters !== undefined) pipe.enableFreeInit({ numIters: freeInitIters, generator: seed === undefined ? undefined : new Generator().manualSeed(seed) });
    const progress = progressReporter(process.stderr, !a.quiet && !a.json);
    const tLoad = Date.now();
    const { frames } = await pipe.generate({
      image: a.image,
      prompt: a.prompt,
      negativePrompt: a.negativePrompt,
      numInferenceSteps: int(a.steps, 'steps'),
      guidanceScale: num(a.guidance, 'guidance'),
      numFrames: int(a.frames, 'frames'),
      height,
      width,
      motionScale: int(a.motionScale, 'motion-scale'),
      strength: num(a.strength, 'strength'),
      clipSkip: int(a.clipSkip, 'clip-skip'),
      ipAdapterImage: a.ipImage,
      generator: seed === undefined ? undefined : new Generator().manualSeed(seed),
      onProgress: (p) => progress.update(p),
      signal,
    });
    progress.done();
    const video = (frames as Frame[][])[0];
    if (kind === 'gif') await exportToGif(video, a.output, { fps });
    else if (kind === 'webp') await exportToWebp(video, a.output, { fps });
    else if (kind === 'mp4') await exportToMp4(video, a.output, { fps });
    else await exportToPngs(video, a.output);
    return {
      output: a.output,
      format: kind,
      frames: video.length,
      width: video[0]?.width,
      height: video[0]?.height,
      model: description,
      ...(ip ? { ipAdapter: { file: `${ip.pathOrRepo}/${ip.subfolder ? `${ip.subfolder}/` : ''}${ip.weightName}`, scale: ip.scale, image: a.ipImage } } : {}),
      demo,
      seconds: { load: (tLoad - t0) / 1000, generate: (Date.now() - tLoad) / 1000 },
    };
  } finally {
    pipe.dispose();
  }
}

export function checkPrompt(prompt: string | undefined): string {
  if (prompt === undefined || prompt.trim() === '') throw new UsageError('animate needs --prompt "..."');
  return prompt;
}

