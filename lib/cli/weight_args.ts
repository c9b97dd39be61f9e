// `--lora path[:scale]`, `--ip-adapter path[:scale]` and `--embedding path[:token]`: the suffix after the last ':' is split off only when
// the whole argument is not an existing path and the suffix has the expected form, so a file whose name
// contains a colon still loads as given.
import { existsSync } from 'node:fs';
import { UsageError } from './usage_error.js';

export interface LoraArg {
  path: string;
  /** The adapter's weight (diffusers' set_adapters weights); 1 when not given. */
  scale: number;
}

export interface EmbeddingArg {
  path: string;
  /** The token the embedding is bound to; without it, the file's own name (diffusers' load_textual_inversion). */
  token?: string;
}

const NUMBER = /^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$/;

function splitSuffix(arg: string): [string, string] | undefined {
  if (existsSync(arg)) return undefined;
  const i = arg.lastIndexOf(':');
  if (i <= 0) return undefined;
  return [arg.slice(0, i), arg.slice(i + 1)];
}

/** `path[:scale]` of `flag` (--lora, --ip-adapter): the scale defaults to 1. */
export function parseScaledPath(arg: string, flag: string): { path: string; scale: number } {
  if (arg === '') throw new UsageError(`${flag} needs a path (path[:scale])`);
  const split = splitSuffix(arg);
  if (split && NUMBER.test(split[1])) {
    const scale = Number(split[1]);
    if (!Number.isFinite(scale)) throw new UsageError(`${flag} ${arg}: the scale must be a finite number`);
    return { path: split[0], scale };
  }
  return { path: arg, scale: 1 };
}

export function parseLoraArg(arg: string): LoraArg {
  return parseScaledPath(arg, '--lora');
}

export function parseEmbeddingArg(arg: string): EmbeddingArg {
  if (arg === '') throw new UsageError('--embedding needs a path (path[:token])');
  const split = splitSuffix(arg);
  // A token is one prompt word such as <kitestyle>: no path separator, no whitespace.
  if (split && split[1] !== '' && !/[\\/\s]/.test(split[1])) return { path: split[0], token: split[1] };
  return { path: arg };
}
