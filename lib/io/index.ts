export { loadImage, rgbToTensor, framesFromTensor, DEFAULT_MAX_PIXELS } from './image.js';
export type { RgbImage, ImageInput, LoadImageOptions } from './image.js';
export { resizeLanczos } from './lanczos.js';
