// Generates the random-weight IP-Adapter that ships with the demo model (assets/demo-ip-adapter, what
// `pia animate --ip-image` uses when neither --model nor --ip-adapter is given), in h94/IP-Adapter's
// layout: `image_encoder/` (a CLIPVisionModelWithProjection with the architecture of the test fixtures'
// small encoder, ../shared/fixtures/ip-adapter/models/image_encoder) and `ip-adapter_demo.safetensors`
// (a base adapter: Linear to 4 tokens + LayerNorm, to_k_ip/to_v_ip for each of the demo UNet's spatial
// cross-attention layers, keys numbered 1, 3, 5, … as h94's files are). The fixture adapter cannot serve:
// it makes tokens of width 64, the demo UNet's cross_attention_dim is 32. NEW random weights from our
// own Generator with a fixed seed, stored as F16. Its effect on the (noise) output is noise.
//
//   node --import tsx scripts/make-demo-ip-adapter.ts [outDir]     (default: assets/demo-ip-adapter)
//
// Deterministic: the same script gives the same bytes.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { narrowF16 } from '../lib/io/float16.js';
import { readSafetensors, saveSafetensors } from '../lib/io/safetensors.js';
import { MotionAdapter } from '../lib/models/motion_adapter.js';
import { UNetMotionModel } from '../lib/models/unet_motion_model.js';
import { Generator } from '../lib/random/generator.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const fixtures = process.env.PIA_FIXTURES ?? join(root, '..', 'shared', 'fixtures');
const out = process.argv[2] ?? join(root, 'assets', 'demo-ip-adapter');
const SEED = 20240302n;
const NOTE = { format: 'pt', note: 'pia-animate demo IP-Adapter: random weights, output is noise' };

const generator = new Generator().manualSeed(SEED);
type F16Tensor = { dtype: 'F16'; data: Uint16Array; shape: number[] };

// PyTorch-like defaults: norms 1/0, biases 0, embeddings N(0, 0.02²), weights U(±1/sqrt(fan_in)).
function init(name: string, shape: number[]): F16Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  let values: Float32Array;
  if (name.includes('embedding')) values = generator.randn(shape).data.map((v) => v * 0.02);
  else if (shape.length === 1) values = new Float32Array(n).fill(name.endsWith('.weight') ? 1 : 0);
  else {
    const bound = 1 / Math.sqrt(n / shape[0]);
    values = generator.rand(shape).data.map((u) => (2 * u - 1) * bound);
  }
  return { dtype: 'F16', data: narrowF16(values), shape };
}

// The image encoder: the fixture encoder's config and tensor shapes.
const encSrc = join(fixtures, 'ip-adapter', 'models', 'image_encoder');
mkdirSync(join(out, 'image_encoder'), { recursive: true });
const config = JSON.parse(readFileSync(join(encSrc, 'config.json'), 'utf8')) as { projection_dim: number };
writeFileSync(join(out, 'image_encoder', 'config.json'), `${JSON.stringify(config, null, 2)}\n`);
const ref = readSafetensors(join(encSrc, 'model.safetensors'));
const encoder: Record<string, F16Tensor> = {};
for (const name of ref.names()) encoder[name] = init(name, [...ref.info(name).shape]);
ref.close();
saveSafetensors(join(out, 'image_encoder', 'model.safetensors'), encoder, NOTE);

// The adapter, shaped for the demo UNet's cross-attention layers.
const demo = join(root, 'assets');
const unet = await UNetMotionModel.fromUnet2d(join(demo, 'demo-model', 'unet'), await MotionAdapter.fromPretrained(join(demo, 'demo-motion-adapter')));
const cross = unet.config.cross_attention_dim;
const sites = unet.ipAttentionSites();
unet.dispose();
const tokens = 4;
const adapter: Record<string, F16Tensor> = {
  'image_proj.proj.weight': init('image_proj.proj.weight', [tokens * cross, config.projection_dim]),
  'image_proj.proj.bias': init('image_proj.proj.bias', [tokens * cross]),
  'image_proj.norm.weight': init('image_proj.norm.weight', [cross]),
  'image_proj.norm.bias': init('image_proj.norm.bias', [cross]),
};
// Key ids follow diffusers' attn_processors order: down blocks, up blocks, then the mid block.
const ordered = ['down_blocks.', 'up_blocks.', 'mid_block.'].flatMap((g) => sites.filter((s) => s.name.startsWith(g)));
ordered.forEach((s, i) => {
  for (const kv of ['to_k_ip', 'to_v_ip']) {
    const key = `ip_adapter.${2 * i + 1}.${kv}.weight`;
    adapter[key] = init(key, [s.hidden_size, s.cross_attention_dim]);
  }
});
saveSafetensors(join(out, 'ip-adapter_demo.safetensors'), adapter, NOTE);
console.log(`demo IP-Adapter written to ${out} (${ordered.length} cross-attention layers)`);
