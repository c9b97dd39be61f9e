/**
 * CLIPTokenizer: transformers' slow `CLIPTokenizer` as diffusers' `encode_prompt` uses it
 * (`tokenizer(prompt, padding="max_length", max_length=tokenizer.model_max_length, truncation=True)`),
 * on the path taken when `ftfy` is not installed. See basic_clean.ts for the text clean-up, bpe.ts for the
 * merges and added_tokens.ts for how special/added tokens are split out first.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

import { PiaError, invalidArgument, throwIfAborted } from '../errors.js';
import { resolveModel, throwIfDanglingLink } from '../loaders/hub.js';
import { packageRoot } from '../native/package_root.js';
import { AddedTokenSplitter } from './added_tokens.js';
import { preTokenize } from './basic_clean.js';
import { BytePairEncoder, END_OF_WORD } from './bpe.js';
import { BYTE_DECODER, bytesToUnicode } from './bytes_to_unicode.js';

export interface CLIPEncodeOptions {
  /**
   * 'max_length' (the default, as diffusers calls it) pads every sequence to `maxLength`; 'longest' (or
   * `true`) pads to the longest sequence of the batch; `false` returns sequences of their own length.
   */
  padding?: 'max_length' | 'longest' | boolean;
  /** defaults to `modelMaxLength` (77 for CLIP) */
  maxLength?: number;
  /** cut sequences longer than `maxLength` (BOS kept, EOS last); default true */
  truncation?: boolean;
}

export interface CLIPEncoding {
  inputIds: number[][];
  /** 1 for real tokens (BOS and EOS included), 0 for padding */
  attentionMask: number[][];
}

/** The parsed contents of a tokenizer folder (what `fromPretrained` reads). */
export interface CLIPTokenizerFiles {
  /** vocab.json: token → id */
  vocab: Record<string, number> | ReadonlyMap<string, number>;
  /** merges.txt: `[first, second]` in rank order, header already removed */
  merges: [string, string][];
  /** tokenizer_config.json merged with special_tokens_map.json (the latter wins, as in HF) */
  config?: Record<string, unknown>;
  /** legacy added_tokens.json: token → id */
  addedTokens?: Record<string, number> | ReadonlyMap<string, number>;
}

// HF's CLIPTokenizer reads only this many merges (`[1 : 49152 - 256 - 2 + 1]` after the header line),
// whatever merges.txt holds; openai's simple_tokenizer cuts at the same place.
const MAX_MERGES = 49152 - 256 - 2;


// HF pre-fills the BPE cache with these two literal strings, so the regex matches above come out as one
// token each (mapped through the vocabulary like any other BPE token).
const BPE_SEEDS: ReadonlyMap<string, readonly string[]> = new Map([
  ['<|startoftext|>', ['<|startoftext|>']],
  ['<|endoftext|>', ['<|endoftext|>']],
]);

// CLIPTokenizer.__init__ defaults, used when neither JSON file names a token.
const DEFAULT_SPECIALS = {
  bos_token: '<|startoftext|>',
  eos_token: '<|endoftext|>',
  unk_token: '<|endoftext|>',
  pad_token: '<|endoftext|>',
} as const;

// A config without model_max_length makes HF fall back to a huge number; 77 (the CLIP text model's
// max_position_embeddings) is what every SD tokenizer folder states and what the text encoder accepts.
const DEFAULT_MODEL_MAX_LENGTH = 77;

interface VocabTables {
  vocab: ReadonlyMap<string, number>;
  idToToken: ReadonlyMap<number, string>;
  ranks: ReadonlyMap<string, number>;
}

export class CLIPTokenizer {
  readonly modelMaxLength: number;
  readonly bosToken: string;
  readonly eosToken: string;
  readonly unkToken: string;
  readonly padToken: string;
  readonly additionalSpecialTokens: readonly string[];

  private readonly tables: VocabTables;
  private readonly bpe: BytePairEncoder;
  private readonly addedEncoder = new Map<string, number>();
  private readonly addedDecoder = new Map<number, string>();
  private readonly splitter = new AddedTokenSplitter();
  private readonly specialTokens: ReadonlySet<string>;

  constructor(files: CLIPTokenizerFiles) {
    const vocab = files.vocab instanceof Map ? files.vocab : new Map(Object.entries(files.vocab));
    const idToToken = new Map<number, string>();
    for (const [token, id] of vocab) idToToken.set(id, token);
    const ranks = new Map<string, number>();
    // Later duplicates overwrite earlier ones, as `dict(zip(merges, range(...)))` does.
    files.merges.slice(0, MAX_MERGES).forEach(([a, b], rank) => ranks.set(BytePairEncoder.pairKey(a, b), rank));
    this.tables = { vocab, idToToken, ranks };
    this.bpe = new BytePairEncoder(ranks, BPE_SEEDS);

    const config = files.config ?? {};
    this.bosToken = tokenContent(config.bos_token) ?? DEFAULT_SPECIALS.bos_token;
    this.eosToken = tokenContent(config.eos_token) ?? DEFAULT_SPECIALS.eos_token;
    this.unkToken = tokenContent(config.unk_token) ?? DEFAULT_SPECIALS.unk_token;
    this.padToken = tokenContent(config.pad_token) ?? DEFAULT_SPECIALS.pad_token;
    const extra = Array.isArray(config.additional_special_tokens) ? config.additional_special_tokens : [];
    this.additionalSpecialTokens = extra.map(tokenContent).filter((t): t is string => t !== undefined);
    const mml = config.model_max_length;
    this.modelMaxLength =
      typeof mml === 'number' && Number.isInteger(mml) && mml > 0 && mml < 1e9 ? mml : DEFAULT_MODEL_MAX_LENGTH;

    // Added tokens with fixed ids first (tokenizer_config's added_tokens_decoder, then legacy
    // added_tokens.json), as PreTrainedTokenizer.__init__ registers them before the special tokens.
    const decoderEntries = config.added_tokens_decoder;
    if (decoderEntries !== null && typeof decoderEntries === 'object') {
      for (const [id, value] of Object.entries(decoderEntries as Record<string, unknown>)) {
        const content = tokenContent(value);
        if (content !== undefined) this.registerAdded(content, Number(id));
      }
    }
    const legacy = files.addedTokens ?? {};
    for (const [token, id] of legacy instanceof Map ? legacy : Object.entries(legacy)) this.registerAdded(token, id);

    // Every special token becomes an added token even when the vocabulary has it. That is why a pad token
    // of "!" (SD-2-style tokenizer folders) makes HF split each "!" of a prompt out as id 0 instead of
    // BPE-merging "!!!" (diffusers issue #4153); we copy it because the text encoder was run that way.
    const specials = [this.bosToken, this.eosToken, this.unkToken, this.padToken, ...this.additionalSpecialTokens];
    this.addTokensInternal(specials);
    this.specialTokens = new Set(specials);
  }

  /**
   * Loads a tokenizer folder (diffusers' `tokenizer/` subfolder: vocab.json, merges.txt, ...), or one from
   * a repo id in the Hugging Face cache (`revision`, `subfolder: 'tokenizer'` as in transformers).
   */
  static async fromPretrained(
    dirOrRepo: string,
    options: { signal?: AbortSignal; revision?: string; subfolder?: string } = {},
  ): Promise<CLIPTokenizer> {
    const { signal } = options;
    throwIfAborted(signal);
    const dir = resolveModel(dirOrRepo, { revision: options.revision, subfolder: options.subfolder, what: 'tokenizer', signal });
    const vocabPath = join(dir, 'vocab.json');
    const mergesPath = join(dir, 'merges.txt');
    const configPath = join(dir, 'tokenizer_config.json');
    const mapPath = join(dir, 'special_tokens_map.json');
    const addedPath = join(dir, 'added_tokens.json');

    const [vocabText, mergesText, configText, mapText, addedText] = await Promise.all([
      readRequired(vocabPath),
      readRequired(mergesPath),
      readOptional(configPath),
      readOptional(mapPath),
      readOptional(addedPath),
    ]);
    throwIfAborted(signal);

    const vocab = parseIdTable(vocabText, vocabPath);
    if (vocab.size === 0) {
      throw new PiaError('E_WEIGHTS_CORRUPT', `${vocabPath}: empty vocabulary`, { file: vocabPath });
    }
    const merges = parseMerges(mergesText, mergesPath);
    // special_tokens_map.json overrides tokenizer_config.json key by key (PreTrainedTokenizerBase._from_pretrained).
    const tokenizerConfig = configText === undefined ? {} : parseObject(configText, configPath);
    const specialTokensMap = mapText === undefined ? {} : parseObject(mapText, mapPath);
    const config: Record<string, unknown> = { ...tokenizerConfig, ...specialTokensMap };
    for (const key of ['bos_token', 'eos_token', 'unk_token', 'pad_token'] as const) {
      const v = config[key];
      if (v !== undefined && v !== null && tokenContent(v) === undefined) {
        const file = key in specialTokensMap ? mapPath : configPath;
        throw new PiaError('E_WEIGHTS_CORRUPT', `${file}: ${key} is neither a string nor {"content": string}`, {
          file,
          key,
        });
      }
    }
    const addedTokens = addedText === undefined ? undefined : parseIdTable(addedText, addedPath);
    return new CLIPTokenizer({ vocab, merges, config, addedTokens });
  }

  /**
   * The openai CLIP tokenizer shipped with the package (assets/clip-tokenizer: SD-1.x's tokenizer folder),
   * for single-file checkpoints that carry no tokenizer.
   */
  static async bundled(options: { signal?: AbortSignal } = {}): Promise<CLIPTokenizer> {
    return CLIPTokenizer.fromPretrained(bundledTokenizerDir(), options);
  }

  /** Size of the base vocabulary (vocab.json), like HF's `vocab_size`. */
  get vocabSize(): number {
    return this.tables.vocab.size;
  }

  /** Base vocabulary plus added tokens that are not in it, like HF's `len(tokenizer)`. */
  get length(): number {
    let extra = 0;
    for (const token of this.addedEncoder.keys()) if (!this.tables.vocab.has(token)) extra++;
    return this.tables.vocab.size + extra;
  }

  get bosTokenId(): number {
    return this.tokenToId(this.bosToken);
  }

  get eosTokenId(): number {
    return this.tokenToId(this.eosToken);
  }

  get padTokenId(): number {
    return this.tokenToId(this.padToken);
  }

  get unkTokenId(): number {
    return this.tokenToId(this.unkToken);
  }

  /** Whether `token` is a vocabulary entry or an added token (diffusers' `token in tokenizer.get_vocab()`). */
  hasToken(token: string): boolean {
    return this.addedEncoder.has(token) || this.tables.vocab.has(token);
  }

  /** Whether `token` was added (special tokens included): HF's `token in tokenizer.added_tokens_encoder`. */
  isAddedToken(token: string): boolean {
    return this.addedEncoder.has(token);
  }

  /** The BPE token strings of `text`, without BOS/EOS (HF's `tokenizer.tokenize(text)`). */
  tokenize(text: string): string[] {
    if (typeof text !== 'string') throw invalidArgument('text', 'must be a string');
    const out: string[] = [];
    for (const piece of this.splitter.split(text)) {
      if (piece.added) {
        out.push(piece.text);
        continue;
      }
      for (const word of preTokenize(piece.text)) {
        for (const token of this.bpe.encode(bytesToUnicode(word))) out.push(token);
      }
    }
    return out;
  }

  /** Token strings → ids; unknown strings map to the unk token's id, as in HF. */
  convertTokensToIds(tokens: string): number;
  convertTokensToIds(tokens: readonly string[]): number[];
  convertTokensToIds(tokens: string | readonly string[]): number | number[] {
    if (typeof tokens === 'string') return this.tokenToId(tokens);
    return tokens.map((t) => this.tokenToId(t));
  }

  convertIdsToTokens(ids: number): string | undefined;
  convertIdsToTokens(ids: readonly number[]): (string | undefined)[];
  convertIdsToTokens(ids: number | readonly number[]): string | undefined | (string | undefined)[] {
    if (typeof ids === 'number') return this.idToToken(ids);
    return ids.map((id) => this.idToToken(id));
  }

  /**
   * Adds tokens (textual inversion's placeholder tokens) as HF's `add_tokens` does: a new string gets the
   * next id from `length` on, a string already in the vocabulary keeps its id; either way it is split out
   * of the text before BPE from now on. Returns each token's id.
   */
  addTokens(tokens: readonly string[]): number[] {
    if (!Array.isArray(tokens) || tokens.some((t) => typeof t !== 'string' || t.length === 0)) {
      throw invalidArgument('tokens', 'must be an array of non-empty strings');
    }
    return this.addTokensInternal(tokens);
  }

  /**
   * Tokenizes a prompt or a batch of prompts into ids: BOS + tokens + EOS, truncated to `maxLength` (EOS
   * kept last) and padded with the pad id, exactly like
   * `tokenizer(texts, padding="max_length", max_length=77, truncation=True)` with the defaults.
   */
  encode(texts: string | readonly string[], options: CLIPEncodeOptions = {}): CLIPEncoding {
    const list = typeof texts === 'string' ? [texts] : texts;
    if (!Array.isArray(list) || list.some((t) => typeof t !== 'string')) {
      throw invalidArgument('texts', 'must be a string or an array of strings');
    }
    const padding = options.padding ?? 'max_length';
    if (padding !== 'max_length' && padding !== 'longest' && typeof padding !== 'boolean') {
      throw invalidArgument('padding', `must be 'max_length', 'longest' or a boolean, got ${String(padding)}`);
    }
    const truncation = options.truncation ?? true;
    if (typeof truncation !== 'boolean') throw invalidArgument('truncation', 'must be a boolean');
    const maxLength = options.maxLength ?? this.modelMaxLength;
    if (!Number.isInteger(maxLength) || maxLength < 2) {
      throw invalidArgument('maxLength', `must be an integer ≥ 2 (room for BOS and EOS), got ${maxLength}`);
    }

    const bos = this.bosTokenId;
    const eos = this.eosTokenId;
    const inputIds = list.map((text) => {
      let ids = this.convertTokensToIds(this.tokenize(text));
      // HF truncates the content before adding BOS/EOS ("longest_first" on a single sequence drops from the
      // right), so a cut prompt still ends in EOS.
      if (truncation && ids.length + 2 > maxLength) ids = ids.slice(0, maxLength - 2);
      return [bos, ...ids, eos];
    });

    let target = 0;
    if (padding === 'max_length') target = maxLength;
    else if (padding === 'longest' || padding === true) target = Math.max(0, ...inputIds.map((s) => s.length));
    const pad = this.padTokenId;
    const attentionMask = inputIds.map((seq) => {
      const mask = new Array<number>(Math.max(seq.length, target)).fill(0);
      mask.fill(1, 0, seq.length);
      return mask;
    });
    for (const seq of inputIds) while (seq.length < target) seq.push(pad);
    return { inputIds, attentionMask };
  }

  /**
   * Ids back to text (for messages such as diffusers' "this part of your prompt was truncated"): byte-level
   * decoding with U+FFFD for broken UTF-8, `</w>` read as a space; added tokens are kept as written.
   */
  decode(ids: readonly number[], options: { skipSpecialTokens?: boolean } = {}): string {
    const parts: string[] = [];
    let bytes: number[] = [];
    const flush = (): void => {
      if (bytes.length > 0) parts.push(Buffer.from(bytes).toString('utf8'));
      bytes = [];
    };
    for (const id of ids) {
      const token = this.idToToken(id);
      if (token === undefined) continue;
      if (this.addedEncoder.has(token)) {
        if (options.skipSpecialTokens && this.specialTokens.has(token)) continue;
        flush();
        parts.push(` ${token} `);
        continue;
      }
      const endsWord = token.endsWith(END_OF_WORD);
      const body = endsWord ? token.slice(0, -END_OF_WORD.length) : token;
      for (const ch of body) {
        const b = BYTE_DECODER.get(ch);
        if (b !== undefined) bytes.push(b);
      }
      if (endsWord) bytes.push(0x20);
    }
    flush();
    return parts.join('').replace(/ {2,}/g, ' ').trim();
  }

  private tokenToId(token: string): number {
    const added = this.addedEncoder.get(token);
    if (added !== undefined) return added;
    const id = this.tables.vocab.get(token);
    if (id !== undefined) return id;
    const unk = this.addedEncoder.get(this.unkToken) ?? this.tables.vocab.get(this.unkToken);
    if (unk === undefined) throw new PiaError('E_WEIGHTS_CORRUPT', `unk token ${this.unkToken} has no id`);
    return unk;
  }

  private idToToken(id: number): string | undefined {
    return this.addedDecoder.get(id) ?? this.tables.idToToken.get(id);
  }

  private registerAdded(token: string, id: number): void {
    if (!Number.isInteger(id) || id < 0) {
      throw new PiaError('E_WEIGHTS_CORRUPT', `added token ${JSON.stringify(token)} has a bad id ${id}`, {
        key: token,
      });
    }
    this.addedEncoder.set(token, id);
    this.addedDecoder.set(id, token);
    this.splitter.add(token);
  }

  private addTokensInternal(tokens: readonly string[]): number[] {
    return tokens.map((token) => {
      const known = this.addedEncoder.get(token);
      if (known !== undefined) return known;
      const id = this.tables.vocab.get(token) ?? this.nextId();
      this.registerAdded(token, id);
      return id;
    });
  }

  private nextId(): number {
    // HF: len(get_vocab()) at the time of the call, i.e. one past the highest id when ids are dense.
    let next = this.length;
    while (this.addedDecoder.has(next) || this.tables.idToToken.has(next)) next++;
    return next;
  }
}

/** assets/clip-tokenizer of the installed package (found from the module, so lib/ under tsx and dist/ both work). */
export function bundledTokenizerDir(): string {
  return join(packageRoot, 'assets', 'clip-tokenizer');
}

/** A special-token value as written in the JSON files: a string or an AddedToken dict. */
function tokenContent(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (value !== null && typeof value === 'object') {
    const content = (value as { content?: unknown }).content;
    if (typeof content === 'string') return content;
  }
  return undefined;
}

async function readRequired(path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'EISDIR') {
      throwIfDanglingLink(path);
      throw new PiaError('E_MODEL_NOT_FOUND', `tokenizer file not found: ${path}`, { file: path, cause: err });
    }
    throw err;
  }
}

async function readOptional(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    // A link to nothing (a hub cache blob that is gone) must not pass for an absent optional file.
    throwIfDanglingLink(path);
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

function parseObject(text: string, path: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new PiaError('E_WEIGHTS_CORRUPT', `${path}: not valid JSON (${(err as Error).message})`, {
      file: path,
      cause: err,
    });
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new PiaError('E_WEIGHTS_CORRUPT', `${path}: expected a JSON object`, { file: path });
  }
  return value as Record<string, unknown>;
}

function parseIdTable(text: string, path: string): Map<string, number> {
  const table = parseObject(text, path);
  const out = new Map<string, number>();
  for (const token in table) {
    const id = table[token];
    if (typeof id !== 'number' || !Number.isInteger(id) || id < 0) {
      throw new PiaError('E_WEIGHTS_CORRUPT', `${path}: id of ${JSON.stringify(token)} is not a non-negative integer`, {
        file: path,
        key: token,
      });
    }
    out.set(token, id);
  }
  return out;
}

function parseMerges(text: string, path: string): [string, string][] {
  // HF: `read().strip().split("\n")[1:...]` — the first line is dropped unread (normally "#version: 0.2").
  const lines = text.trim().split('\n').slice(1);
  const merges: [string, string][] = [];
  for (let i = 0; i < lines.length; i++) {
    const parts = lines[i].trim().split(/\s+/);
    if (parts.length !== 2 || parts[0] === '' || parts[1] === '') {
      throw new PiaError('E_WEIGHTS_CORRUPT', `${path}:${i + 2}: expected two symbols, got ${JSON.stringify(lines[i])}`, {
        file: path,
      });
    }
    merges.push([parts[0], parts[1]]);
  }
  return merges;
}
