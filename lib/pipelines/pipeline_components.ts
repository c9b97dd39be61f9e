// What PIAPipeline needs of its parts. The concrete classes live in lib/models; the pipeline is
// written against these shapes so that any object with the same methods (a GPU model, a test
// double for the call order) can stand in.
import type { Generator } from '../random/generator.js';
import type { Tensor } from '../tensor.js';

export interface TokenizerLike {
  readonly modelMaxLength: number;
  encode(
    texts: string[],
    options?: { padding?: 'max_length'; maxLength?: number; truncation?: boolean },
  ): { inputIds: number[][]; attentionMask: number[][] };
}

export interface TextEncoderLike {
  readonly config: { num_hidden_layers: number; [key: string]: unknown };
  encode(inputIds: number[][], options?: { clipSkip?: number; loraScale?: number; signal?: AbortSignal }): Promise<{ lastHiddenState: Tensor }>;
  dispose(): void;
}

export interface LatentDistributionLike {
  sample(generator?: Generator): Tensor;
}

export interface VaeLike {
  readonly config: { scaling_factor?: number; block_out_channels?: number[]; [key: string]: unknown };
  encode(x: Tensor, options?: { signal?: AbortSignal }): Promise<LatentDistributionLike>;
  /** `slicing` overrides enableSlicing() for one call (the pipeline's retry after running out of memory). */
  decode(z: Tensor, options?: { signal?: AbortSignal; slicing?: boolean }): Promise<Tensor>;
  readonly useSlicing?: boolean;
  enableSlicing(): void;
  disableSlicing(): void;
  enableTiling(): void;
  disableTiling(): void;
  dispose(): void;
}

export interface UNetLike {
  readonly config: { readonly sample_size?: number | null };
  forward(
    sample: Tensor,
    timestep: number,
    encoderHiddenStates: Tensor,
    options?: { signal?: AbortSignal; loraScale?: number; imageEmbeds?: Tensor },
  ): Promise<Tensor>;
  enableFreeU(options: { s1: number; s2: number; b1: number; b2: number }): void;
  disableFreeU(): void;
  dispose(): void;
}
