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
export { Generator } from './random/index.js';
export { version } from './version.js';
