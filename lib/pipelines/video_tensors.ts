// The few tensor reshapes PIAPipeline needs on the JS side (latents are small: [B, 4, F, h, w]).
import type { Tensor } from '../tensor.js';

/** torch.cat along dim 0. */
export function catBatch(xs: readonly Tensor[]): Tensor {
  const rest = xs[0].shape.slice(1);
  const total = xs.reduce((n, x) => n + x.data.length, 0);
  const data = new Float32Array(total);
  let off = 0;
  for (const x of xs) {
    data.set(x.data, off);
    off += x.data.length;
  }
  return { data, shape: [xs.reduce((n, x) => n + x.shape[0], 0), ...rest] };
}

/** torch.cat along dim 1 (channels) of tensors that agree on every other dim. */
export function catChannels(xs: readonly Tensor[]): Tensor {
  const b = xs[0].shape[0];
  const inner = xs[0].shape.slice(2).reduce((p, d) => p * d, 1);
  const channels = xs.reduce((n, x) => n + x.shape[1], 0);
  const data = new Float32Array(b * channels * inner);
  let dst = 0;
  for (let i = 0; i < b; i++) {
    for (const x of xs) {
      const len = x.shape[1] * inner;
      data.set(x.data.subarray(i * len, (i + 1) * len), dst);
      dst += len;
    }
  }
  return { data, shape: [b, channels, ...xs[0].shape.slice(2)] };
}

/** `tensor.chunk(2)` along dim 0. */
export function chunk2(x: Tensor): [Tensor, Tensor] {
  const half = x.data.length / 2;
  const shape = [x.shape[0] / 2, ...x.shape.slice(1)];
  return [
    { data: x.data.slice(0, half), shape },
    { data: x.data.slice(half), shape: [...shape] },
  ];
}

/** x * s in float32, as torch multiplies a float32 tensor by a Python scalar. */
export function scale(x: Tensor, s: number): Tensor {
  const f = Math.fround(s);
  const data = new Float32Array(x.data.length);
  for (let i = 0; i < data.length; i++) data[i] = x.data[i] * f;
  return { data, shape: [...x.shape] };
}

/** F.interpolate(x, size=[h, w]) with the default mode 'nearest': src = floor(dst * in / out). */
export function interpolateNearest(x: Tensor, h: number, w: number): Tensor {
  const [n, c, ih, iw] = x.shape;
  const data = new Float32Array(n * c * h * w);
  // torch computes the source index with a float32 scale (in / out) then floors.
  const sh = Math.fround(ih / h), sw = Math.fround(iw / w);
  const rows = Array.from({ length: h }, (_, y) => Math.min(Math.floor(Math.fround(y * sh)), ih - 1));
  const cols = Array.from({ length: w }, (_, xx) => Math.min(Math.floor(Math.fround(xx * sw)), iw - 1));
  for (let p = 0; p < n * c; p++) {
    for (let y = 0; y < h; y++) {
      for (let xx = 0; xx < w; xx++) data[(p * h + y) * w + xx] = x.data[(p * ih + rows[y]) * iw + cols[xx]];
    }
  }
  return { data, shape: [n, c, h, w] };
}

/** [B, C, F, H, W] -> [B·F, C, H, W] (diffusers: permute(0, 2, 1, 3, 4).reshape). */
export function framesToBatch(x: Tensor): Tensor {
  const [b, c, f, h, w] = x.shape;
  const hw = h * w;
  const data = new Float32Array(x.data.length);
  for (let i = 0; i < b; i++) {
    for (let ch = 0; ch < c; ch++) {
      for (let fr = 0; fr < f; fr++) {
        const src = (((i * c + ch) * f + fr) * hw);
        const dst = (((i * f + fr) * c + ch) * hw);
        data.set(x.data.subarray(src, src + hw), dst);
      }
    }
  }
  return { data, shape: [b * f, c, h, w] };
}

/**
 * Decoded frames [B·F, 3, H, W] in [-1, 1] -> video [B, F, H, W, 3] in [0, 1], as
 * VaeImageProcessor.postprocess: (x / 2 + 0.5).clamp(0, 1) in float32.
 */
export function decodedToVideo(x: Tensor, batch: number): Tensor {
  const [bf, c, h, w] = x.shape;
  const hw = h * w;
  const data = new Float32Array(x.data.length);
  for (let n = 0; n < bf; n++) {
    for (let ch = 0; ch < c; ch++) {
      const src = (n * c + ch) * hw;
      for (let p = 0; p < hw; p++) {
        const v = Math.fround(Math.fround(x.data[src + p] / 2) + 0.5);
        data[(n * hw + p) * c + ch] = v < 0 ? 0 : v > 1 ? 1 : v;
      }
    }
  }
  return { data, shape: [batch, bf / batch, h, w, c] };
}
