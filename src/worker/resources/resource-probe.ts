// What the worker needs to know about its machine, behind one narrow interface so that the
// worker loop and the report builder are tested with a fake instead of the real host.
import type { HostFacts } from '../contracts.js';

export type { HostFacts };

/** One GPU as nvidia-smi reports it; `undefined` where the driver said "[N/A]". */
export interface GpuSample {
  index: number;
  uuid: string;
  name: string;
  memoryTotalBytes: number;
  memoryUsedBytes?: number;
  utilizationPercent?: number;
  temperatureC?: number;
  powerW?: number;
}

/** One measurement of the machine. */
export interface HostSample {
  atMs: number;
  cpuPercent: number;
  memoryUsedBytes: number;
  memoryTotalBytes: number;
  diskUsedBytes: number;
  diskTotalBytes: number;
  netRxBytesPerSec: number;
  netTxBytesPerSec: number;
  gpus: GpuSample[];
  docker: DockerStatus;
}

export interface DockerStatus {
  ok: boolean;
  /** Engine version when ok, otherwise why Docker is not usable. */
  version?: string;
  message?: string;
}

export interface ResourceProbe {
  facts(): Promise<HostFacts>;
  sample(): Promise<HostSample>;
}
