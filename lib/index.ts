// pia-animate: the public API. Names follow ../shared/API.md (diffusers' names, camelCase).
export { PiaError, type PiaErrorCode } from './errors.js';
export { type Tensor, tensor, zeros, numel } from './tensor.js';
export { backends, setNumThreads, type BackendsInfo, type CudaDeviceInfo } from './backends.js';
export {
  readSafetensors,
  safeOpen,
  saveSafetensors,
  type RawTensor,
  type SafetensorsFile,
  type SafetensorsDtype,
  type SaveableTensor,
} from './io/safetensors.js';
export * from './io/index.js';
export { Generator } from './random/index.js';
export { CLIPTokenizer } from './tokenizers/clip_tokenizer.js';
export { CLIPTextModel, type CLIPTextConfig, type CLIPTextModelOutput } from './models/clip_text_model.js';
export { CLIPImageProcessor, type CLIPImageProcessorOptions } from './models/clip_image_processor.js';
export { CLIPVisionModelWithProjection, type CLIPVisionConfig, type CLIPVisionModelOutput } from './models/clip_vision_model.js';
export { IPAdapter, type IpAdapterKind } from './loaders/ip_adapter.js';
export { type ImageEmbeds, type LoadIpAdapterOptions } from './loaders/ip_adapter_mixin.js';
export { AutoencoderKL, type AutoencoderKLConfig, type LatentDistribution } from './models/autoencoder_kl.js';
export { MotionAdapter, type MotionAdapterConfig } from './models/motion_adapter.js';
export { UNet2DConditionModel } from './models/unet_2d_condition_model.js';
export { UNetMotionModel, type UNetMotionConfig, type FreeUOptions } from './models/unet_motion_model.js';
export * from './schedulers/index.js';
export {
  PIAPipeline,
  type PIAGenerateOptions,
  type PIAPipelineOutput,
  type PIAFromPretrainedOptions,
  type PIAFromSingleFileOptions,
  type EncodePromptOptions,
  type ProgressInfo,
} from './pipelines/pia.js';
export { RANGE_LIST, prepareMaskCoefByStatistics } from './pipelines/mask_coef.js';
export { type FreeInitOptions, type FreeInitMethod } from './freeinit.js';
export { version } from './version.js';
