// The HiveMind reward formula: what one report interval of this node is worth. Base 10, scaled
// by how busy the machine was (the average of CPU and memory usage), plus 0.01 per GPU
// utilisation percent summed over the GPUs.
import type { ResourceReport } from '../protocol/gen/hivemind/v1/common.js';
import type { ContributionPoint } from './contracts.js';

export type { ContributionPoint };

export const CONTRIBUTION_BASE = 10;
export const GPU_POINTS_PER_PERCENT = 0.01;

/** The usage multiplier for the average of CPU and memory usage (percent). */
export function usageMultiplier(averagePercent: number): number {
  if (averagePercent < 20) return 0.8;
  if (averagePercent < 50) return 1.0;
  if (averagePercent < 80) return 1.2;
  return 1.5;
}

export function contributionScore(cpuPercent: number, memoryPercent: number, gpuPercent: number): { score: number; multiplier: number } {
  const multiplier = usageMultiplier((cpuPercent + memoryPercent) / 2);
  return { score: CONTRIBUTION_BASE * multiplier + gpuPercent * GPU_POINTS_PER_PERCENT, multiplier };
}

const clampPercent = (x: number) => (Number.isFinite(x) ? Math.min(100, Math.max(0, x)) : 0);

/** Scores one report (the interval it closes); `total` is left for the store to fill in. */
export function scoreReport(report: ResourceReport, atMs: number, intervalMs: number): Omit<ContributionPoint, 'total'> {
  const cpuPercent = clampPercent(report.cpuPercent);
  const memoryPercent = report.memoryTotalBytes > 0 ? clampPercent((report.memoryUsedBytes / report.memoryTotalBytes) * 100) : 0;
  const gpuPercent = report.gpus.reduce((sum, g) => sum + clampPercent(g.utilizationPercent), 0);
  const { score, multiplier } = contributionScore(cpuPercent, memoryPercent, gpuPercent);
  return { atMs, intervalMs, score, multiplier, cpuPercent, memoryPercent, gpuPercent };
}
