// The shape of what the addon exports (native/addon/*.cpp). Internal: users go through lib/.

export interface NativeSafetensorsFile {
  names(): string[];
  metadata(): Record<string, string>;
  info(name: string): { dtype: string; shape: number[]; byteLength: number };
  read(name: string): ArrayBuffer;
  close(): void;
}

export interface CudaDeviceInfo {
  index: number;
  name: string;
  computeCapability: string;
  totalMemory: number;
  freeMemory: number;
  multiprocessors: number;
  driverVersion: number;
  runtimeVersion: number;
}

export interface BackendsInfo {
  cpu: { threads: number; features: string[] };
  cuda: { available: boolean; reason?: string; library?: string; devices?: CudaDeviceInfo[] };
}

export interface NativeAddon {
  abiVersion: number;
  backends(): BackendsInfo;
  setNumThreads(n: number): number;
  cudaSelfTest(device?: number): Promise<boolean>;
  SafetensorsFile: new (path: string) => NativeSafetensorsFile;
}
