// Generates the tiny random-weight demo model that ships in assets/ (what `pia animate` uses when
// no --model is given): the architecture of the test fixtures' `tiny` family (configs and tensor
// shapes read from ../shared/fixtures/models/tiny*), NEW random weights from our own Generator with
// a fixed seed, stored as F16 to keep the package small. Its output is noise by construction.
//
//   node --import tsx scripts/make-demo-model.ts [outDir]     (default: assets/)
//
// Deterministic: the same script gives the same bytes (a test checks the committed files).
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readSafetensors, saveSafetensors } from '../lib/io/safetensors.js';
import { narrowF16 } from '../lib/io/float16.js';
import { Generator } from '../lib/random/generator.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const fixtures = process.env.PIA_FIXTURES ?? join(root, '..', 'shared', 'fixtures');
const out = process.argv[2] ?? join(root, 'assets');
const SEED = 20240301n;

const parts: Array<[src: string, dst: string, weights?: string]> = [
  ['models/tiny/model_index.json', 'demo-model/model_index.json'],
  ['models/tiny/scheduler/scheduler_config.json', 'demo-model/scheduler/scheduler_config.json'],
  ['models/tiny/text_encoder/config.json', 'demo-model/text_encoder/config.json', 'model.safetensors'],
  ['models/tiny/unet/config.json', 'demo-model/unet/config.json', 'diffusion_pytorch_model.safetensors'],
  ['models/tiny/vae/config.json', 'demo-model/vae/config.json', 'diffusion_pytorch_model.safetensors'],
  ['models/tiny-motion-adapter/config.json', 'demo-motion-adapter/config.json', 'diffusion_pytorch_model.safetensors'],
];

const generator = new Generator().manualSeed(SEED);

for (const [src, dst, weights] of parts) {
  const dstPath = join(out, dst);
  mkdirSync(join(dstPath, '..'), { recursive: true });
  writeFileSync(dstPath, readFileSync(join(fixtures, src)));
  if (!weights) continue;
  const ref = readSafetensors(join(fixtures, src, '..', weights));
  const tensors: Record<string, { dtype: 'F16'; data: Uint16Array; shape: number[] }> = {};
  for (const name of ref.names()) {
    const { shape } = ref.info(name);
    const n = shape.reduce((a, b) => a * b, 1);
    let values: Float32Array;
    if (shape.length === 1) {
      // Norm scales start at 1, every bias (and norm shift) at 0, like PyTorch's defaults for norms.
      values = new Float32Array(n).fill(name.endsWith('.weight') ? 1 : 0);
    } else if (name.includes('embedding')) {
      values = generator.randn(shape).data.map((v) => v * 0.02);
    } else {
      // Uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)), PyTorch's default bound for linear and conv weights.
      const fanIn = n / shape[0];
      const bound = 1 / Math.sqrt(fanIn);
      values = generator.rand(shape).data.map((u) => (2 * u - 1) * bound);
    }
    tensors[name] = { dtype: 'F16', data: narrowF16(values), shape };
  }
  ref.close();
  saveSafetensors(join(dstPath, '..', weights), tensors, { format: 'pt', note: 'pia-animate demo model: random weights, output is noise' });
}
console.log(`demo model written to ${out}`);

