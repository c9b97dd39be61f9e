// Textual inversion as diffusers v0.26.3 loads it (loaders/textual_inversion.py: load_textual_inversion,
// _retrieve_tokens_and_embeddings, _extend_tokens_and_embeddings, maybe_convert_prompt): A1111 `.pt`
// (`string_to_param`), kohya/A1111 `.safetensors` (`emb_params`) and diffusers `learned_embeds` files.
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { PiaError, invalidArgument } from '../errors.js';
import { readSafetensors } from '../io/safetensors.js';
import { isTorchTensor, readTorchCheckpoint, type PickleValue } from '../io/torch_checkpoint.js';
import { assertTensor, copyTensor, isTensor, type Tensor } from '../tensor.js';

/** A loaded embedding file as diffusers sees it: named tensors (safetensors), or a torch pickle's dict. */
type EmbeddingDict = Map<string, Tensor | PickleValue>;

export interface TextualInversionTokens {
  /** `<tok>`, `<tok>_1`, … one per vector. */
  tokens: string[];
  /** [tokens.length, hidden] */
  embeddings: Tensor;
}

function tensorFromPickle(v: PickleValue, what: string, file: string): Tensor {
  if (!isTorchTensor(v)) throw new PiaError('E_UNSUPPORTED', `textual inversion ${file}: ${what} is not a tensor`, { file });
  return copyTensor(v);
}

/**
 * diffusers' load_textual_inversion file lookup: a file as given; a folder holds `weightName`, else
 * learned_embeds.safetensors, else learned_embeds.bin (what textual_inversion.py saves).
 */
export function resolveEmbeddingFile(path: string, weightName?: string): string {
  let stat;
  try {
    stat = statSync(path);
  } catch {
    throw new PiaError('E_MODEL_NOT_FOUND', `textual inversion: no file or folder at ${path}`, { file: path });
  }
  if (!stat.isDirectory()) return path;
  const names = weightName !== undefined ? [weightName] : ['learned_embeds.safetensors', 'learned_embeds.bin'];
  for (const name of names) {
    const file = join(path, name);
    if (existsSync(file)) return file;
  }
  throw new PiaError('E_MODEL_NOT_FOUND', `textual inversion: ${path} holds no ${names.join(' or ')}`, { file: path });
}

function readEmbeddingFile(path: string): EmbeddingDict {
  const out: EmbeddingDict = new Map();
  if (path.endsWith('.safetensors')) {
    const f = readSafetensors(path);
    try {
      for (const name of f.names()) {
        out.set(name, copyTensor(f.get(name)));
      }
    } finally {
      f.close();
    }
    return out;
  }
  const ckpt = readTorchCheckpoint(path);
  try {
    const root = ckpt.root;
    if (isTorchTensor(root)) {
      out.set('', tensorFromPickle(root, 'the file', path));
      return out;
    }
    if (root === null || typeof root !== 'object' || Array.isArray(root) || root instanceof Map || root instanceof Uint8Array) {
      throw new PiaError('E_UNSUPPORTED', `textual inversion ${path}: expected a dict or a tensor`, { file: path });
    }
    for (const [k, v] of Object.entries(root as Record<string, PickleValue>)) {
      if (k === 'string_to_param') {
        // A1111's Embedding.save: {'*': tensor}; read the tensors now (the checkpoint closes below).
        const inner = v as Record<string, PickleValue>;
        if (inner === null || typeof inner !== 'object' || !('*' in inner)) {
          throw new PiaError('E_UNSUPPORTED', `textual inversion ${path}: string_to_param has no '*' entry`, { file: path });
        }
        out.set(k, { '*': tensorFromPickle(inner['*'], "string_to_param['*']", path) } as unknown as PickleValue);
      } else {
        out.set(k, isTorchTensor(v) ? tensorFromPickle(v, k, path) : v);
      }
    }
    return out;
  } finally {
    ckpt.close();
  }
}

/**
 * diffusers' _retrieve_tokens_and_embeddings + _extend_tokens_and_embeddings for one file or tensor:
 * a bare tensor needs `token`; a dict with `string_to_param` is A1111 (`name` the default token); a
 * single-key dict is the diffusers format (the key is the token: `emb_params` too, unless `token` is
 * given); [n, d] with n > 1 gives tokens `<tok>`, `<tok>_1`, …
 */
export function readTextualInversion(
  source: string | Tensor | Record<string, Tensor>,
  token: string | undefined,
  hidden: number,
  weightName?: string,
): TextualInversionTokens {
  let dict: EmbeddingDict;
  const where = typeof source === 'string' ? source : 'the given tensors';
  if (typeof source === 'string') dict = readEmbeddingFile(resolveEmbeddingFile(source, weightName));
  else if (isTensor(source)) dict = new Map([['', source]]);
  else if (source !== null && typeof source === 'object') dict = new Map(Object.entries(source));
  else throw invalidArgument('pretrainedModelNameOrPath', 'expected a file path, a tensor or a dict of tensors');

  let embedding: Tensor;
  let name: string | undefined = token;
  if (dict.size === 1 && dict.has('')) {
    if (!name) throw invalidArgument('token', 'is required for a bare embedding tensor');
    embedding = dict.get('') as Tensor;
  } else if (dict.has('string_to_param')) {
    const a1111Name = dict.get('name');
    name ??= typeof a1111Name === 'string' ? a1111Name : undefined;
    if (!name) throw invalidArgument('token', 'is required: the A1111 embedding has no name');
    embedding = (dict.get('string_to_param') as unknown as Record<string, Tensor>)['*'];
  } else if (dict.size === 1) {
    const [key, value] = [...dict.entries()][0];
    name ??= key;
    if (!isTensor(value)) throw new PiaError('E_UNSUPPORTED', `textual inversion ${where}: '${key}' is not a tensor`);
    embedding = value;
  } else {
    throw new PiaError('E_UNSUPPORTED', `textual inversion ${where}: not an embedding file (expected a single tensor, A1111's string_to_param, or one token → tensor)`);
  }
  assertTensor(embedding, 'embedding');
  const shape = embedding.shape;
  let n: number;
  if (shape.length === 1) n = 1;
  else if (shape.length === 2) n = shape[0];
  else throw new PiaError('E_UNSUPPORTED', `textual inversion ${where}: embedding shape [${shape}] is not [d] or [n, d]`);
  const d = shape[shape.length - 1];
  if (d !== hidden) {
    throw new PiaError('E_WEIGHTS_MISMATCH', `textual inversion ${where}: embeddings have ${d} values, the text encoder's hidden size is ${hidden}`);
  }
  if (n < 1) throw new PiaError('E_UNSUPPORTED', `textual inversion ${where}: no vectors`);
  const tokens = n === 1 ? [name] : Array.from({ length: n }, (_, i) => (i === 0 ? name! : `${name}_${i}`));
  return { tokens, embeddings: { data: embedding.data, shape: [n, d] } };
}

/**
 * diffusers' maybe_convert_prompt: every added token `<tok>` the tokenizer finds in the prompt is followed
 * by `<tok>_1`, `<tok>_2`, … for as long as those are added tokens too — decided by the tokenizer's added
 * tokens, not by how the embeddings were loaded, and applied as a plain string replacement (so `<tok>`
 * inside `<tok>_1` is replaced as well), exactly as diffusers does.
 */
export function maybeConvertPrompt(prompt: string, tokenize: (text: string) => string[], isAddedToken: (token: string) => boolean): string {
  let out = prompt;
  for (const token of new Set(tokenize(prompt))) {
    if (!isAddedToken(token)) continue;
    let replacement = token;
    for (let i = 1; isAddedToken(`${token}_${i}`); i++) replacement += ` ${token}_${i}`;
    if (replacement !== token) out = out.replaceAll(token, replacement);
  }
  return out;
}
