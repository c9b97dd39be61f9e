// gifenc 1.0.3 ships no type declarations; these cover what lib/io/export_gif.ts uses.
// Its CommonJS build exposes everything on the default export only (no named ESM exports).
declare module 'gifenc' {
  namespace gifenc {
    type Format = 'rgb565' | 'rgb444' | 'rgba4444';
    /** Colours as [r, g, b] (or [r, g, b, a] with format 'rgba4444'). */
    type Palette = number[][];
    interface QuantizeOptions {
      format?: Format;
      oneBitAlpha?: boolean | number;
      clearAlpha?: boolean;
      clearAlphaThreshold?: number;
      clearAlphaColor?: number;
    }
    interface WriteFrameOptions {
      palette?: Palette;
      first?: boolean;
      transparent?: boolean;
      transparentIndex?: number;
      /** Milliseconds; stored in centiseconds (rounded). */
      delay?: number;
      /** -1 = play once (no NETSCAPE block), 0 = forever, n = n repetitions. First frame only. */
      repeat?: number;
      colorDepth?: number;
      dispose?: number;
    }
    interface Encoder {
      writeFrame(index: Uint8Array, width: number, height: number, options?: WriteFrameOptions): void;
      finish(): void;
      bytes(): Uint8Array;
      bytesView(): Uint8Array;
      reset(): void;
      writeHeader(): void;
    }
    /** `rgba` must own its whole ArrayBuffer (it is read through a Uint32Array view of `.buffer`). */
    function quantize(rgba: Uint8Array | Uint8ClampedArray, maxColors: number, options?: QuantizeOptions): Palette;
    function applyPalette(rgba: Uint8Array | Uint8ClampedArray, palette: Palette, format?: Format): Uint8Array;
    function nearestColorIndex(palette: Palette, pixel: ArrayLike<number>): number;
    function GIFEncoder(options?: { auto?: boolean; initialCapacity?: number }): Encoder;
  }
  export = gifenc;
}
