// Model resolution as diffusers' from_pretrained does it, offline: a local folder is used as is;
// otherwise a Hugging Face repo id (`org/name`) is looked up in the cache that huggingface_hub's
// download functions fill (`models--org--name/{refs,snapshots,blobs}`), without any network access.
import { lstatSync, readFileSync, readdirSync, readlinkSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, isAbsolute, join, resolve, sep } from 'node:path';
import { PiaError, invalidArgument, throwIfAborted } from '../errors.js';

export interface ResolveModelOptions {
  /** A branch or tag (a file under `refs/`) or a 40-hex commit hash; default `main`. Ignored for local folders, as in diffusers. */
  revision?: string;
  /** A folder inside the model (`unet`, `text_encoder`), as diffusers' `subfolder`. */
  subfolder?: string;
  signal?: AbortSignal;
  /** What is being loaded, for messages ("pipeline", "motion adapter"). */
  what?: string;
  /** The option that named the model, for E_INVALID_ARGUMENT (`err.option`). */
  option?: string;
}

/** huggingface_hub's REGEX_COMMIT_HASH: a revision that is a full commit hash names its snapshot folder directly. */
const COMMIT_HASH = /^[0-9a-f]{40}$/;

// huggingface_hub's validate_repo_id: an optional namespace, then a name of 1..96 characters from
// [\w.-], each starting and ending with a word character; no "--" (the cache's separator) nor "..".
const REPO_PART = '[\\p{L}\\p{N}_](?:[\\p{L}\\p{N}_.-]*[\\p{L}\\p{N}_])?';
const REPO_ID = new RegExp(`^(?:${REPO_PART}/)?${REPO_PART}$`, 'u');

export function isRepoId(s: string): boolean {
  if (!REPO_ID.test(s) || s.includes('--') || s.includes('..') || s.endsWith('.git')) return false;
  const name = s.slice(s.indexOf('/') + 1);
  return [...name].length <= 96;
}

/** The env var (or default) that set the cache root, so messages can say why we looked there. */
export interface HubCacheRoot {
  dir: string;
  from: string;
}

// os.path.expanduser + os.path.expandvars, which huggingface_hub applies to HF_HOME and HF_HUB_CACHE.
function expand(p: string, env: NodeJS.ProcessEnv): string {
  let out = p === '~' || p.startsWith('~/') ? homedir() + p.slice(1) : p;
  out = out.replace(/\$(\w+)|\$\{([^}]+)\}/g, (m, a: string | undefined, b: string | undefined) => env[(a ?? b)!] ?? m);
  return out;
}

/**
 * The hub cache folder, with huggingface_hub's precedence (constants.py): `HF_HUB_CACHE`, then the
 * legacy `HUGGINGFACE_HUB_CACHE`, then `$HF_HOME/hub`, then `$XDG_CACHE_HOME/huggingface/hub`, then
 * `~/.cache/huggingface/hub`. An empty variable counts as unset (Python would use "" as a relative path).
 */
export function hubCacheRoot(env: NodeJS.ProcessEnv = process.env): HubCacheRoot {
  const set = (k: string) => (env[k] !== undefined && env[k] !== '' ? env[k] : undefined);
  const hub = set('HF_HUB_CACHE');
  if (hub) return { dir: resolve(expand(hub, env)), from: '$HF_HUB_CACHE' };
  const legacy = set('HUGGINGFACE_HUB_CACHE');
  if (legacy) return { dir: resolve(expand(legacy, env)), from: '$HUGGINGFACE_HUB_CACHE' };
  const home = set('HF_HOME');
  if (home) return { dir: resolve(expand(home, env), 'hub'), from: '$HF_HOME/hub' };
  const xdg = set('XDG_CACHE_HOME');
  if (xdg) return { dir: resolve(expand(xdg, env), 'huggingface', 'hub'), from: '$XDG_CACHE_HOME/huggingface/hub' };
  return { dir: join(homedir(), '.cache', 'huggingface', 'hub'), from: 'the default ~/.cache/huggingface/hub' };
}

/** huggingface_hub's repo_folder_name for a model repo: `models--org--name`. */
export function repoFolderName(repoId: string): string {
  return ['models', ...repoId.split('/')].join('--');
}

/** `huggingface-cli download …`: how to fill the cache with what was not found. */
export function downloadCommand(repoId: string, revision?: string): string {
  return `huggingface-cli download ${repoId}${revision !== undefined && revision !== 'main' ? ` --revision ${revision}` : ''}`;
}

function isDir(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

// The repo and snapshot a path inside the hub cache belongs to, for "download again" hints.
function cacheRepoOf(p: string): { repoId: string; commit: string } | undefined {
  const parts = p.split(sep);
  const i = parts.findIndex((s, k) => s.startsWith('models--') && parts[k + 1] === 'snapshots' && parts[k + 2] !== undefined);
  if (i < 0) return undefined;
  return { repoId: parts[i].slice('models--'.length).split('--').join('/'), commit: parts[i + 2] };
}

/**
 * Whether `p` is a file (following links). False when nothing is there. A link whose target is gone
 * (in the hub cache: a snapshot entry whose blob was deleted or never finished downloading) is an
 * E_MODEL_NOT_FOUND that says so, instead of a confusing "no weights" later.
 */
export function isFile(p: string): boolean {
  try {
    return statSync(p).isFile();
  } catch {
    throwIfDanglingLink(p);
    return false;
  }
}

/** Throws the "incomplete download" error when `p` is a symbolic link to nothing. */
export function throwIfDanglingLink(p: string): void {
  let link: boolean;
  try {
    link = lstatSync(p).isSymbolicLink();
  } catch {
    return;
  }
  if (!link) return;
  try {
    statSync(p);
    return;
  } catch {
    // dangling: fall through
  }
  let target = '?';
  try {
    target = resolve(dirname(p), readlinkSync(p));
  } catch {
    // keep '?'
  }
  const repo = cacheRepoOf(p);
  const fix = repo
    ? `the download of ${repo.repoId} is incomplete: run \`${downloadCommand(repo.repoId, repo.commit)}\` again`
    : 'the file it points to was moved or deleted';
  throw new PiaError('E_MODEL_NOT_FOUND', `${p} is a link to ${target}, which does not exist: ${fix}`, { file: p });
}

function checkRelative(value: string | undefined, option: string): void {
  if (value === undefined) return;
  if (typeof value !== 'string' || value.length === 0) throw invalidArgument(option, 'must be a non-empty string');
  if (value.includes('\0') || value.includes('\\') || isAbsolute(value) || value.split('/').some((s) => s === '..' || s === '.')) {
    throw invalidArgument(option, `${JSON.stringify(value)} must be a relative name without '.' or '..' parts`);
  }
}

function inside(dir: string, subfolder: string | undefined, what: string, where: string): string {
  if (subfolder === undefined) return dir;
  const sub = join(dir, subfolder);
  if (!isDir(sub)) {
    throw new PiaError('E_MODEL_NOT_FOUND', `${what}: no subfolder '${subfolder}' in ${where} (looked for ${sub})`, { file: sub });
  }
  return sub;
}

/**
 * The absolute local folder of a model given as a folder or a Hugging Face repo id: a path that
 * exists is used as is; otherwise `org/name` is looked up in the hub cache (`refs/<revision>` → commit
 * → `snapshots/<commit>/`; a commit hash selects its snapshot directly). Nothing is downloaded: a
 * model that is not there is E_MODEL_NOT_FOUND listing where we looked and the command that fetches it.
 */
export function resolveModel(idOrPath: string, options: ResolveModelOptions = {}): string {
  throwIfAborted(options.signal);
  const what = options.what ?? 'model';
  const option = options.option ?? 'dirOrRepo';
  if (typeof idOrPath !== 'string' || idOrPath.length === 0) {
    throw invalidArgument(option, `${what}: expected a folder or a Hugging Face repo id ('org/name')`);
  }
  checkRelative(options.subfolder, 'subfolder');
  const revision = options.revision;
  if (revision !== undefined) {
    checkRelative(revision, 'revision');
  }

  const local = resolve(idOrPath);
  let stat;
  try {
    stat = statSync(local);
  } catch {
    stat = undefined;
  }
  if (stat?.isDirectory()) return inside(local, options.subfolder, what, local);
  if (stat) {
    throw invalidArgument(option, `${what}: ${local} is a file; fromPretrained takes a model folder or a repo id (single-file checkpoints: fromSingleFile)`);
  }
  if (isAbsolute(idOrPath)) {
    throw new PiaError('E_MODEL_NOT_FOUND', `${what}: no folder at ${local}`, { file: local });
  }
  if (!isRepoId(idOrPath)) {
    throw invalidArgument(
      option,
      `${what}: ${JSON.stringify(idOrPath)} is neither an existing folder (looked for ${local}) nor a Hugging Face repo id ` +
        `('org/name' of letters, digits, '_', '-', '.'; no '--' or '..')`,
    );
  }

  const repoId = idOrPath;
  const rev = revision ?? 'main';
  const cache = hubCacheRoot();
  const repoDir = join(cache.dir, repoFolderName(repoId));
  const looked = [`a local folder ${local}`];
  const notFound = (detail: string, file: string): PiaError =>
    new PiaError(
      'E_MODEL_NOT_FOUND',
      `${what}: ${repoId}${revision !== undefined ? ` (revision ${revision})` : ''} is not available offline: ${detail}. ` +
        `Looked for ${looked.join('; ')} (hub cache ${cache.dir}, from ${cache.from}). ` +
        `Get it with \`${downloadCommand(repoId, revision)}\`, or pass a local diffusers folder.`,
      { file },
    );

  looked.push(`the cache folder ${repoDir}`);
  if (!isDir(repoDir)) throw notFound('it is not in the Hugging Face cache', repoDir);

  let commit: string;
  if (COMMIT_HASH.test(rev)) {
    commit = rev;
  } else {
    const refPath = join(repoDir, 'refs', rev);
    looked.push(`the ref ${refPath}`);
    if (!isFile(refPath)) {
      const known = cachedRevisions(repoDir);
      throw notFound(`no revision '${rev}' in the cache${known.length ? ` (cached: ${known.join(', ')})` : ''}`, refPath);
    }
    // huggingface_hub writes the bare hash; tolerate a trailing newline from other writers.
    commit = readFileSync(refPath, 'utf8').trim();
    if (!COMMIT_HASH.test(commit)) {
      throw new PiaError('E_MODEL_NOT_FOUND', `${what}: ${refPath} does not hold a commit hash (${JSON.stringify(commit.slice(0, 60))})`, {
        file: refPath,
      });
    }
  }
  const snapshot = join(repoDir, 'snapshots', commit);
  looked.push(`the snapshot ${snapshot}`);
  if (!isDir(snapshot)) throw notFound(`snapshot ${commit} is not in the cache`, snapshot);
  throwIfAborted(options.signal);
  return inside(snapshot, options.subfolder, what, `${repoId} (snapshot ${commit})`);
}

// Branch names under refs/ (nested ones such as refs/pr/1 included) and snapshot hashes.
function cachedRevisions(repoDir: string): string[] {
  const out: string[] = [];
  const walk = (dir: string, prefix: string) => {
    let entries;
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      if (e.isDirectory()) walk(join(dir, e.name), `${prefix}${e.name}/`);
      else out.push(prefix + e.name);
    }
  };
  walk(join(repoDir, 'refs'), '');
  try {
    for (const s of readdirSync(join(repoDir, 'snapshots'))) out.push(s);
  } catch {
    // no snapshots folder
  }
  return out;
}
