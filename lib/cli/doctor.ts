import { arch, cpus, platform, totalmem } from 'node:os';
import { backends } from '../backends.js';
import { addonPath } from '../native/addon.js';
import { version } from '../version.js';

export interface DoctorReport {
  version: string;
  node: string;
  platform: string;
  addon: string;
  cpu: { model: string; threads: number; features: string[]; memoryGiB: number };
  cuda: ReturnType<typeof backends>['cuda'];
}

export function doctorReport(): DoctorReport {
  const b = backends();
  return {
    version,
    node: process.version,
    platform: `${platform()}-${arch()}`,
    addon: addonPath() ?? 'unknown',
    cpu: {
      model: cpus()[0]?.model ?? 'unknown',
      threads: b.cpu.threads,
      features: b.cpu.features,
      memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    },
    cuda: b.cuda,
  };
}

// cudaDriverGetVersion's encoding: 1000 · major + 10 · minor (12040 is 12.4).
function cudaVersion(v: number): string {
  return v > 0 ? `${Math.floor(v / 1000)}.${Math.floor((v % 1000) / 10)}` : 'unknown';
}

export function formatDoctor(r: DoctorReport): string {
  const gib = (n: number) => `${(n / 2 ** 30).toFixed(1)} GiB`;
  const lines = [
    `pia-animate ${r.version} (node ${r.node}, ${r.platform})`,
    `addon: ${r.addon}`,
    `cpu:   ${r.cpu.model}, ${r.cpu.threads} threads, ${r.cpu.memoryGiB} GiB RAM, features: ${r.cpu.features.join(' ')}`,
  ];
  if (r.cuda.available) {
    for (const d of r.cuda.devices ?? []) {
      lines.push(
        `cuda:  [${d.index}] ${d.name}, compute ${d.computeCapability}, ${gib(d.freeMemory)} free of ${gib(d.totalMemory)}, ` +
          `${d.multiprocessors} SMs, CUDA driver ${cudaVersion(d.driverVersion)}, runtime ${cudaVersion(d.runtimeVersion)}`,
      );
    }
  } else {
    lines.push(`cuda:  unavailable (${r.cuda.reason ?? 'unknown reason'})`);
  }
  // Optional NVIDIA libraries, looked for even without a GPU so that a user can check an install.
  const libs = r.cuda.libraries;
  if (libs) {
    const uses = { cuBLASLt: 'used for GEMMs', cuDNN: 'used for convolutions' };
    for (const [name, l] of [['cuBLASLt', libs.cublasLt], ['cuDNN', libs.cudnn]] as const) {
      if (l.inUse) {
        // e.g. "cuDNN 9.1.0: used for f16/bf16 convolutions where it times faster than the built-in kernel (path)"
        lines.push(`       ${name}${l.version ? ` ${l.version}` : ''}: ${l.note ?? uses[name]} (${l.path ?? '?'})`);
      } else {
        lines.push(`       ${name}: ${l.found ? `${l.path}, ` : ''}${l.note ?? (l.found ? 'found' : 'not found')}`);
      }
    }
  }
  return lines.join('\n');
}
