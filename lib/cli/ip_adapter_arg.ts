// `--ip-adapter path[:scale]` → loadIpAdapter's (pathOrRepo, { subfolder, weightName }) and a scale.
// The path is the adapter file itself (its image encoder is `image_encoder/` beside it, h94/IP-Adapter's
// layout), a folder holding exactly one adapter file, or `org/name[/subfolder…]/file` in the Hugging Face
// cache. Without --ip-adapter, --ip-image uses the random demo adapter for the demo model and h94's
// SD-1.5 base adapter for a --model.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { packageRoot } from '../native/package_root.js';
import { UsageError } from './usage_error.js';
import { parseScaledPath } from './weight_args.js';

export const DEMO_IP_ADAPTER_FILE = join(packageRoot, 'assets', 'demo-ip-adapter', 'ip-adapter_demo.safetensors');
/** What diffusers' IP-Adapter docs load for SD-1.5. */
export const DEFAULT_IP_ADAPTER = 'h94/IP-Adapter/models/ip-adapter_sd15.safetensors';

export interface IpAdapterArg {
  pathOrRepo: string;
  subfolder?: string;
  weightName: string;
  /** set_ip_adapter_scale; 1 when not given. */
  scale: number;
}

const WEIGHT_FILE = /\.(safetensors|bin)$/;

function isDir(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

export function parseIpAdapterArg(arg: string): IpAdapterArg {
  const { path, scale } = parseScaledPath(arg, '--ip-adapter');
  if (isDir(path)) {
    const files = readdirSync(path).filter((f) => WEIGHT_FILE.test(f) && !isDir(join(path, f)));
    if (files.length !== 1) {
      throw new UsageError(`--ip-adapter ${path}: name the adapter file (${files.length === 0 ? 'the folder holds no .safetensors/.bin file' : `one of ${files.join(', ')}`})`);
    }
    return { pathOrRepo: path, weightName: files[0], scale };
  }
  if (existsSync(path)) return { pathOrRepo: dirname(path), weightName: basename(path), scale };
  // org/name[/subfolder…]/file.safetensors: a repo in the Hugging Face cache.
  const parts = path.split('/');
  if (!path.startsWith('/') && !path.startsWith('.') && parts.length >= 3 && WEIGHT_FILE.test(path)) {
    return {
      pathOrRepo: parts.slice(0, 2).join('/'),
      subfolder: parts.length > 3 ? parts.slice(2, -1).join('/') : undefined,
      weightName: parts[parts.length - 1],
      scale,
    };
  }
  // Let loadIpAdapter say where it looked.
  return { pathOrRepo: dirname(path), weightName: basename(path), scale };
}
