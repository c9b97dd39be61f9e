// An original (CompVis/LDM) Stable Diffusion 1.x single-file checkpoint, as A1111 and model sites
// ship them → the diffusers components PIA needs (UNet2DConditionModel, AutoencoderKL, CLIPTextModel):
// one config and one key map each. Other Stable Diffusion families are refused up front.
import { PiaError } from '../errors.js';
import type { CheckpointView } from './checkpoint_view.js';
import { convertLdmText, TEXT_PREFIX, type LdmText } from './ldm_to_diffusers_text.js';
import { convertLdmUnet, UNET_PREFIX, type LdmUnet } from './ldm_to_diffusers_unet.js';
import { convertLdmVae, VAE_PREFIX, type LdmVae } from './ldm_to_diffusers_vae.js';

export interface LdmCheckpoint {
  unet: LdmUnet;
  /** null when the file holds no VAE (`first_stage_model.*`) */
  vae: LdmVae | null;
  /** null when the file holds no CLIP text tower */
  textEncoder: LdmText | null;
}

function refuse(view: CheckpointView, what: string, key?: string): never {
  throw new PiaError('E_UNSUPPORTED', `${view.path}: this looks like ${what}; PIA animates Stable Diffusion 1.x-based models only`, {
    file: view.path,
    key: key === undefined ? undefined : view.fileKey(key),
  });
}

/**
 * E_UNSUPPORTED for checkpoints of other families, by their telltale tensors (the keys diffusers
 * v0.26.3 infer_original_config_file checks, and shapes): SDXL base/refiner, SD-2.x, inpainting and
 * other extra-channel UNets, files without an LDM UNet.
 */
export function checkSd1Checkpoint(view: CheckpointView): void {
  const find = (pred: (k: string) => boolean): string | undefined => view.keys.find(pred);
  let k = find((key) => key.startsWith('conditioner.embedders.'));
  if (k) refuse(view, 'an SDXL checkpoint (conditioner.embedders.*)', k);
  k = find((key) => key.startsWith(UNET_PREFIX + 'label_emb.'));
  if (k) refuse(view, 'an SDXL checkpoint (label_emb = add_embedding)', k);
  k = find((key) => key.startsWith('cond_stage_model.model.'));
  if (k) refuse(view, 'a Stable Diffusion 2.x checkpoint (OpenCLIP text encoder cond_stage_model.model.*)', k);
  if (!view.keys.some((key) => key.startsWith(UNET_PREFIX))) {
    const hint = view.keys.some((key) => key.startsWith('down_blocks.') || key === 'conv_in.weight')
      ? ' (it holds diffusers-named UNet weights: load its folder with fromPretrained)'
      : view.keys.some((key) => key.startsWith('encoder.down.')) ? ' (it holds only a VAE: pass it as the `vae` option)' : '';
    throw new PiaError('E_UNSUPPORTED', `${view.path}: not an original Stable Diffusion checkpoint: no ${UNET_PREFIX}* tensors${hint}`, {
      file: view.path,
    });
  }
  const toK = find((key) => key.startsWith(UNET_PREFIX) && key.endsWith('.attn2.to_k.weight'));
  if (toK) {
    const context = view.shape(toK)![1];
    if (context === 1024) refuse(view, 'a Stable Diffusion 2.x checkpoint (1024-wide cross-attention context)', toK);
    if (context === 2048 || context === 1280) refuse(view, `an SDXL checkpoint (${context}-wide cross-attention context)`, toK);
  }
  const projIn = find((key) => key.startsWith(UNET_PREFIX) && key.endsWith('.proj_in.weight'));
  if (projIn && view.shape(projIn)!.length === 2) {
    refuse(view, 'a Stable Diffusion 2.x checkpoint (linear proj_in: use_linear_projection)', projIn);
  }
  const convIn = view.shape(UNET_PREFIX + 'input_blocks.0.0.weight');
  if (convIn && convIn[1] !== 4) {
    const what = convIn[1] === 9 ? 'an inpainting checkpoint (9-channel conv_in), not an SD-1.5 txt2img model'
      : `a ${convIn[1]}-channel UNet (depth / instruct-pix2pix / other), not an SD-1.5 txt2img model`;
    refuse(view, what, UNET_PREFIX + 'input_blocks.0.0.weight');
  }
}

/** The three components' configs and key maps (their weights stay in the file). */
export function convertLdmCheckpoint(view: CheckpointView): LdmCheckpoint {
  checkSd1Checkpoint(view);
  const unet = convertLdmUnet(view);
  const vae = view.keys.some((k) => k.startsWith(VAE_PREFIX)) ? convertLdmVae(view, VAE_PREFIX) : null;
  const textEncoder = view.keys.some((k) => k.startsWith(TEXT_PREFIX)) ? convertLdmText(view) : null;
  if (textEncoder && unet.config.cross_attention_dim !== textEncoder.config.hidden_size) {
    throw new PiaError('E_WEIGHTS_MISMATCH',
      `${view.path}: the UNet attends to ${unet.config.cross_attention_dim}-wide text states, the text encoder makes ${textEncoder.config.hidden_size}`,
      { file: view.path });
  }
  return { unet, vae, textEncoder };
}
