// Per-task CPU and memory for the resource report, from the engine's raw counters. The CPU share
// needs two samples: the previous one of each container is kept between reports.
import type { TaskUsage } from '../protocol/gen/hivemind/v1/common.js';
import type { ContainerStats } from './container-engine.js';

/** CPU use between two samples, in percent of one core (200 = two cores busy). */
export function cpuPercentOfOneCore(prev: ContainerStats | undefined, cur: ContainerStats): number {
  if (!prev) return 0;
  const used = cur.cpuTotalNs - prev.cpuTotalNs;
  const system = cur.systemCpuNs - prev.systemCpuNs;
  // A restarted counter or a sample taken twice in one tick: no meaningful share.
  if (used <= 0 || system <= 0) return 0;
  return (used / system) * cur.onlineCpus * 100;
}

export type StatsReader = (containerId: string) => Promise<ContainerStats>;

/** Samples the given running containers; forgets containers that are no longer asked for. */
export class TaskUsageSampler {
  private previous = new Map<string, ContainerStats>();

  constructor(private readonly read: StatsReader) {}

  async sample(running: ReadonlyArray<{ taskId: string; containerId: string }>): Promise<TaskUsage[]> {
    const next = new Map<string, ContainerStats>();
    const out: TaskUsage[] = [];
    await Promise.all(
      running.map(async ({ taskId, containerId }) => {
        let cur: ContainerStats;
        try {
          cur = await this.read(containerId);
        } catch {
          return; // the container just exited: it is no longer a running task
        }
        next.set(containerId, cur);
        out.push({ taskId, cpuPercent: Math.round(cpuPercentOfOneCore(this.previous.get(containerId), cur) * 10) / 10, memoryBytes: cur.memoryBytes });
      }),
    );
    this.previous = next;
    return out.sort((a, b) => a.taskId.localeCompare(b.taskId));
  }
}
