// Pure decision whether a task assignment fits on this node right now, and the node's free
// capacity for reports and Subscribe. No I/O: inputs are the node's totals and what runs.
import type { Capacity, ResourceLimits } from '../protocol/gen/hivemind/v1/common.js';
import { formatBytes } from '../common/units.js';
import type { NodeBudget } from './contracts.js';

export type { NodeBudget };

/** What one running task holds. */
export interface Reservation {
  cpus: number;
  memoryBytes: number;
  gpuIndexes: number[];
}

export type FitDecision = { ok: true; gpuIndexes: number[]; reservation: Reservation } | { ok: false; reason: string };

/** The reservation a task's limits amount to, with zeros replaced by the node defaults. */
export function reservationFor(limits: ResourceLimits | undefined, budget: NodeBudget): Omit<Reservation, 'gpuIndexes'> & { gpus: number } {
  return {
    cpus: limits?.cpus && limits.cpus > 0 ? limits.cpus : budget.taskDefaults.cpus,
    memoryBytes: limits?.memoryBytes && limits.memoryBytes > 0 ? limits.memoryBytes : budget.taskDefaults.memoryBytes,
    gpus: limits?.gpus ?? 0,
  };
}

export function freeCapacity(budget: NodeBudget, running: readonly Reservation[]): Capacity {
  const usedCpus = running.reduce((s, r) => s + r.cpus, 0);
  const usedMem = running.reduce((s, r) => s + r.memoryBytes, 0);
  const usedGpus = new Set(running.flatMap((r) => r.gpuIndexes));
  return {
    // Rounded to avoid reporting 0.30000000000000004 cores.
    cpus: Math.max(0, Math.round((budget.cpus - usedCpus) * 1000) / 1000),
    memoryBytes: Math.max(0, budget.memoryBytes - usedMem),
    gpuIndexes: budget.gpuIndexes.filter((i) => !usedGpus.has(i)).sort((a, b) => a - b),
    taskSlots: Math.max(0, budget.maxTasks - running.length),
  };
}

/**
 * Decides whether a task with `limits` fits next to `running`. On success returns the
 * lowest free GPU indexes to pin; on failure a reason the master records verbatim.
 */
export function fitAssignment(limits: ResourceLimits | undefined, budget: NodeBudget, running: readonly Reservation[]): FitDecision {
  const want = reservationFor(limits, budget);
  const free = freeCapacity(budget, running);
  if (free.taskSlots < 1) {
    return { ok: false, reason: `all ${budget.maxTasks} task slots are busy` };
  }
  if (want.cpus > budget.cpus) {
    return { ok: false, reason: `needs ${want.cpus} CPUs, node offers at most ${budget.cpus}` };
  }
  if (want.cpus > free.cpus + 1e-9) {
    return { ok: false, reason: `needs ${want.cpus} CPUs, ${free.cpus} free` };
  }
  if (want.memoryBytes > budget.memoryBytes) {
    return { ok: false, reason: `needs ${formatMiB(want.memoryBytes)} memory, node offers at most ${formatMiB(budget.memoryBytes)}` };
  }
  if (want.memoryBytes > free.memoryBytes) {
    return { ok: false, reason: `needs ${formatMiB(want.memoryBytes)} memory, ${formatMiB(free.memoryBytes)} free` };
  }
  if (want.gpus > budget.gpuIndexes.length) {
    return { ok: false, reason: `needs ${want.gpus} GPUs, node has ${budget.gpuIndexes.length}` };
  }
  if (want.gpus > free.gpuIndexes.length) {
    return { ok: false, reason: `needs ${want.gpus} GPUs, ${free.gpuIndexes.length} free` };
  }
  const gpuIndexes = free.gpuIndexes.slice(0, want.gpus);
  return { ok: true, gpuIndexes, reservation: { cpus: want.cpus, memoryBytes: want.memoryBytes, gpuIndexes } };
}

function formatMiB(bytes: number): string {
  // Whole MiB reads best for the common case; fall back to formatBytes for odd sizes.
  return bytes % (1024 * 1024) === 0 ? `${bytes / (1024 * 1024)} MiB` : formatBytes(bytes);
}
