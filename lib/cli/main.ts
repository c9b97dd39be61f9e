#!/usr/bin/env node
// The `pia` command. Exit codes: 0 ok, 1 failure, 2 usage error, 130 interrupted.
import { parseArgs } from 'node:util';
import { PiaError } from '../errors.js';
import { animate, checkPrompt, SCHEDULER_NAMES, UsageError } from './animate.js';
import { doctorReport, formatDoctor } from './doctor.js';
import { version } from '../version.js';

const USAGE = `usage: pia <command> [options]

commands:
  animate <image> --prompt "..." -o out.gif|out.webp|out.mp4|frames/
                   animate a still image (without --model: the bundled demo model, noise only)
  doctor           what this machine can run (CPU features, CUDA status)

animate options:
  --prompt, -p TEXT          what the animation shows
  --negative-prompt, -n TEXT what it should not show
  --model DIR|ORG/NAME|FILE  SD-1.5 model: a diffusers pipeline folder, a Hugging Face repo id
                             read offline from the local cache (huggingface-cli download ORG/NAME),
                             or a single-file checkpoint (.safetensors / .ckpt, original SD layout)
  --adapter DIR|ORG/NAME|FILE  PIA motion adapter (default with --model: openmmlab/PIA-condition-adapter);
                             a file: PIA's original motion checkpoint (pia.ckpt layout)
  --vae DIR|FILE             a VAE replacing the model's (diffusers folder, or an LDM VAE file such as vae-ft-mse)
  --config DIR|ORG/NAME      configs and tokenizer for a single-file --model (a diffusers pipeline folder or
                             repo id); without it, SD-1.5's stock configs and the bundled CLIP tokenizer
  --lora FILE[:SCALE]        a LoRA (kohya/A1111 or diffusers .safetensors), weight SCALE (default 1);
                             repeat for several, e.g. --lora style.safetensors:0.8 --lora detail.safetensors:0.5
  --embedding FILE[:TOKEN]   a textual inversion (A1111 .pt/.safetensors, a diffusers learned_embeds file or
                             folder), used in the prompt as TOKEN (default: the file's own name); repeatable
  --ip-image FILE            an image prompt (IP-Adapter): the animation takes after it
  --ip-adapter FILE[:SCALE]  the IP-Adapter for --ip-image (h94/IP-Adapter layout: image_encoder/ beside the
                             file; or ORG/NAME/SUBFOLDER/FILE from the cache), weight SCALE (default 1);
                             default: the bundled demo adapter; with --model, h94/IP-Adapter/models/ip-adapter_sd15.safetensors
  --revision REV             branch, tag or commit of the --model repo (default main)
  --variant NAME             weight variant of the model, e.g. fp16 (*.fp16.safetensors)
  --device auto|cpu|cuda|cuda:N  where the networks run (default auto: the GPU when usable, see pia doctor)
  --dtype float32|float16|bfloat16  what a GPU computes in (default float32; the CPU computes in float32)
  --cpu-offload              keep only the running network's weights on the GPU (less GPU memory)
  --scheduler NAME           ${Object.keys(SCHEDULER_NAMES).join(' | ')}
  --steps N                  denoising steps (default 50)
  --guidance G               classifier-free guidance scale (default 7.5)
  --frames N                 frames (default 16)
  --size WxH                 output size, multiples of 8 (default: the model's)
  --motion-scale 0-8         0-2 small..large motion, 3-5 looping, 6-8 style transfer (default 0)
  --strength S               0..1, how far from the image to start (default 1)
  --seed N                   random seed (same seed, same video)
  --free-init[=ITERS]        FreeInit noise re-initialisation (default 3 iterations)
  --free-u[=s1,s2,b1,b2]     FreeU (default: the SD 1.5 values)
  --clip-skip N              use the text encoder's hidden state N layers before the last
  --fps N                    frames per second of the output (default 8)
  -o, --output PATH          .gif, .webp, .mp4 (needs ffmpeg) or a folder/ for PNG frames

common options:
  --json           machine-readable output
  -q, --quiet      no progress output
  -h, --help       this help
  -v, --version    print the version

exit codes: 0 ok, 1 failure, 2 usage error, 130 interrupted`;

// parseArgs has no optional values: a bare --free-init / --free-u becomes --x= (empty value).
function normaliseOptionalValues(argv: string[]): string[] {
  return argv.map((a) => (a === '--free-init' || a === '--free-u' ? `${a}=` : a));
}

async function run(argv: string[], signal: AbortSignal): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: normaliseOptionalValues(argv),
      allowPositionals: true,
      strict: true,
      options: {
        json: { type: 'boolean', default: false },
        quiet: { type: 'boolean', short: 'q', default: false },
        help: { type: 'boolean', short: 'h', default: false },
        version: { type: 'boolean', short: 'v', default: false },
        prompt: { type: 'string', short: 'p' },
        'negative-prompt': { type: 'string', short: 'n' },
        model: { type: 'string' },
        adapter: { type: 'string' },
        vae: { type: 'string' },
        config: { type: 'string' },
        lora: { type: 'string', multiple: true },
        embedding: { type: 'string', multiple: true },
        'ip-adapter': { type: 'string' },
        'ip-image': { type: 'string' },
        revision: { type: 'string' },
        variant: { type: 'string' },
        device: { type: 'string' },
        dtype: { type: 'string' },
        'cpu-offload': { type: 'boolean', default: false },
        scheduler: { type: 'string' },
        steps: { type: 'string' },
        guidance: { type: 'string' },
        frames: { type: 'string' },
        size: { type: 'string' },
        'motion-scale': { type: 'string' },
        strength: { type: 'string' },
        seed: { type: 'string' },
        'free-init': { type: 'string' },
        'free-u': { type: 'string' },
        'clip-skip': { type: 'string' },
        fps: { type: 'string' },
        output: { type: 'string', short: 'o' },
      },
    });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const { values: v, positionals } = parsed;
  if (v.version) {
    console.log(version);
    return 0;
  }
  const [command, ...rest] = positionals;
  if (v.help || command === undefined || command === 'help') {
    console.log(USAGE);
    return command === undefined && !v.help ? 2 : 0;
  }
  switch (command) {
    case 'doctor': {
      if (rest.length) throw new UsageError(`doctor takes no arguments (got ${rest.join(' ')})`);
      const report = doctorReport();
      console.log(v.json ? JSON.stringify(report, null, 2) : formatDoctor(report));
      return 0;
    }
    case 'animate': {
      if (rest.length !== 1) throw new UsageError('animate takes exactly one image path');
      if (!v.output) throw new UsageError('animate needs -o out.gif|out.webp|out.mp4|folder/');
      const result = await animate(
        {
          image: rest[0],
          prompt: checkPrompt(v.prompt),
          negativePrompt: v['negative-prompt'],
          model: v.model,
          adapter: v.adapter,
          vae: v.vae,
          config: v.config,
          lora: v.lora,
          embedding: v.embedding,
          ipAdapter: v['ip-adapter'],
          ipImage: v['ip-image'],
          revision: v.revision,
          variant: v.variant,
          device: v.device,
          dtype: v.dtype,
          cpuOffload: v['cpu-offload'],
          scheduler: v.scheduler,
          steps: v.steps,
          guidance: v.guidance,
          frames: v.frames,
          size: v.size,
          motionScale: v['motion-scale'],
          strength: v.strength,
          seed: v.seed,
          freeInit: v['free-init'],
          freeU: v['free-u'],
          clipSkip: v['clip-skip'],
          fps: v.fps,
          output: v.output,
          json: v.json,
          quiet: v.quiet,
        },
        signal,
      );
      if (v.json) console.log(JSON.stringify({ ok: true, ...result }));
      else if (!v.quiet) console.error(`wrote ${result.output} (${result.frames} frames, ${result.width}x${result.height})`);
      return 0;
    }
    default:
      throw new UsageError(`unknown command '${command}'`);
  }
}

const controller = new AbortController();
let interrupted = false;
process.once('SIGINT', () => {
  interrupted = true;
  controller.abort();
});

try {
  process.exitCode = await run(process.argv.slice(2), controller.signal);
} catch (e) {
  const json = process.argv.includes('--json');
  let code = 1;
  let message: string;
  if (e instanceof UsageError) {
    code = 2;
    message = `${e.message}\n\n${USAGE}`;
  } else if (interrupted || (e instanceof DOMException && e.name === 'AbortError')) {
    code = 130;
    message = 'interrupted';
  } else {
    const err = e as Error;
    message = `${err instanceof PiaError ? `${err.code}: ` : ''}${err.message}`;
  }
  if (json) console.log(JSON.stringify({ ok: false, code: e instanceof PiaError ? e.code : code === 2 ? 'USAGE' : code === 130 ? 'INTERRUPTED' : 'ERROR', message: (e as Error).message }));
  console.error(`pia: ${message}`);
  process.exitCode = code;
}
