// The production ResourceProbe: systeminformation for CPU, memory, network and host facts,
// statfs for the data dir's file system, nvidia-smi for GPUs, and an injected Docker check.
import { statfs } from 'node:fs/promises';
import os from 'node:os';
import si from 'systeminformation';
import type { Clock } from '../../common/clock.js';
import type { Logger } from '../../common/logger.js';
import { errorMessage } from '../../common/errors.js';
import { probeGpus, type GpuProbeOptions } from './gpu-probe.js';
import type { DockerStatus, GpuSample, HostFacts, HostSample, ResourceProbe } from './resource-probe.js';

export type DockerCheck = () => Promise<DockerStatus>;

export interface SystemProbeOptions {
  /** The disk reported is the file system holding this directory. */
  dataDir: string;
  dockerCheck: DockerCheck;
  clock: Clock;
  logger: Logger;
  gpu?: GpuProbeOptions;
}

export class SystemProbe implements ResourceProbe {
  private gpuWarned = false;

  constructor(private readonly opts: SystemProbeOptions) {}

  async facts(): Promise<HostFacts> {
    const [osInfo, cpu, mem, disk, gpus, docker] = await Promise.all([
      si.osInfo(),
      si.cpu(),
      si.mem(),
      this.disk(),
      this.gpus(),
      this.docker(),
    ]);
    return {
      hostname: os.hostname(),
      os: process.platform,
      osRelease: [osInfo.distro, osInfo.release].filter(Boolean).join(' ') || os.release(),
      arch: process.arch,
      // Logical cores: Docker's NanoCpus limits count them too.
      cpuCores: cpu.cores || os.availableParallelism(),
      cpuModel: [cpu.manufacturer, cpu.brand].filter(Boolean).join(' '),
      memoryBytes: mem.total,
      diskBytes: disk.total,
      gpus: gpus.map((g) => ({ index: g.index, uuid: g.uuid, name: g.name, memoryTotalBytes: g.memoryTotalBytes })),
      dockerVersion: docker.ok ? (docker.version ?? '') : '',
    };
  }

  async sample(): Promise<HostSample> {
    const [load, mem, disk, net, gpus, docker] = await Promise.all([
      si.currentLoad(),
      si.mem(),
      this.disk(),
      si.networkStats('*').catch(() => []),
      this.gpus(),
      this.docker(),
    ]);
    // rx_sec is null on the first call (no previous measurement): report 0 rather than NaN.
    const rate = (k: 'rx_sec' | 'tx_sec') => Math.max(0, Math.round(net.reduce((s, n) => s + (Number(n[k]) || 0), 0)));
    return {
      atMs: this.opts.clock.now(),
      cpuPercent: Number.isFinite(load.currentLoad) ? load.currentLoad : 0,
      // "available" excludes reclaimable page cache, which would otherwise look like a full machine.
      memoryUsedBytes: Math.max(0, mem.total - mem.available),
      memoryTotalBytes: mem.total,
      diskUsedBytes: disk.used,
      diskTotalBytes: disk.total,
      netRxBytesPerSec: rate('rx_sec'),
      netTxBytesPerSec: rate('tx_sec'),
      gpus,
      docker,
    };
  }

  /**
   * statfs on the data dir itself rather than si.fsSize(): it names exactly the file system
   * the spool and the database live on, with no mount-point guessing.
   */
  private async disk(): Promise<{ total: number; used: number }> {
    try {
      const s = await statfs(this.opts.dataDir);
      const total = s.blocks * s.bsize;
      return { total, used: Math.max(0, total - s.bfree * s.bsize) };
    } catch (err) {
      this.opts.logger.warn({ err: errorMessage(err), dataDir: this.opts.dataDir }, 'cannot stat the data dir file system');
      return { total: 0, used: 0 };
    }
  }

  private async gpus(): Promise<GpuSample[]> {
    try {
      const gpus = await probeGpus(this.opts.gpu);
      this.gpuWarned = false;
      return gpus;
    } catch (err) {
      // Warn once per failure streak: the report interval would otherwise flood the log.
      if (!this.gpuWarned) this.opts.logger.warn({ err: errorMessage(err) }, 'GPU probe failed; reporting no GPUs');
      this.gpuWarned = true;
      return [];
    }
  }

  private async docker(): Promise<DockerStatus> {
    try {
      return await this.opts.dockerCheck();
    } catch (err) {
      return { ok: false, message: errorMessage(err) };
    }
  }
}
