// The CLIP text tower of an SD-1.x checkpoint (`cond_stage_model.transformer.*` = transformers'
// CLIPTextModel state dict with a prefix; diffusers v0.26.3 create_text_encoder_from_ldm_clip_checkpoint)
// and the config its shapes imply. LDM's FrozenCLIPEmbedder always means openai/clip-vit-large-patch14,
// so what shapes cannot tell (heads, activation, token ids) comes from that model's text config.
import { PiaError } from '../errors.js';
import type { CheckpointView } from './checkpoint_view.js';
import { KeyMap } from './key_map.js';
import { countIndexed } from './ldm_to_diffusers_unet.js';

export const TEXT_PREFIX = 'cond_stage_model.transformer.';

export interface LdmText {
  config: Record<string, unknown>;
  keyMap: KeyMap;
}

export function convertLdmText(view: CheckpointView): LdmText {
  const raw = view.keysUnder(TEXT_PREFIX);
  // Files saved with transformers < 4.? lack the `text_model.` level.
  const inner = (k: string): string => (k.startsWith('text_model.') ? k : `text_model.${k}`);
  const byDiffusers = new Map(raw.map((k) => [inner(k), k]));
  const shape = (k: string): number[] | undefined => {
    const f = byDiffusers.get(k);
    return f === undefined ? undefined : view.shape(TEXT_PREFIX + f);
  };
  const need = (k: string): number[] => {
    const s = shape(k);
    if (!s) throw new PiaError('E_WEIGHTS_MISMATCH', `${view.path}: no text encoder ${TEXT_PREFIX}${k}`, { file: view.path, key: TEXT_PREFIX + k });
    return s;
  };
  const [vocab, hidden] = need('text_model.embeddings.token_embedding.weight');
  const [maxPos] = need('text_model.embeddings.position_embedding.weight');
  const layers = countIndexed(byDiffusers.keys(), 'text_model.encoder.layers.');
  const [intermediate] = need('text_model.encoder.layers.0.mlp.fc1.weight');
  const config: Record<string, unknown> = {
    architectures: ['CLIPTextModel'],
    model_type: 'clip_text_model',
    vocab_size: vocab,
    hidden_size: hidden,
    intermediate_size: intermediate,
    num_hidden_layers: layers,
    // openai CLIP text towers use 64-wide heads (ViT-L/14: 768 = 12 × 64).
    num_attention_heads: Math.max(1, Math.round(hidden / 64)),
    max_position_embeddings: maxPos,
    hidden_act: 'quick_gelu',
    layer_norm_eps: 1e-5,
    bos_token_id: 0,
    eos_token_id: 2,
    pad_token_id: 1,
    projection_dim: 768,
  };
  const keyMap = new KeyMap();
  for (const [d, f] of byDiffusers) {
    // transformers' buffer (int64, recomputed by the model); diffusers drops it too.
    if (d === 'text_model.embeddings.position_ids') continue;
    keyMap.set(d, view.fileKey(TEXT_PREFIX + f));
  }
  return { config, keyMap };
}
