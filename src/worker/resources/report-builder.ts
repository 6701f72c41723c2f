// Pure construction of the ResourceReport the worker streams every interval, from a host
// sample, the free capacity and the worker's state. No I/O, so tested with plain values.
import type { Capacity, DataCacheStatus, ResourceReport, TaskUsage, TunnelStatus } from '../../protocol/gen/hivemind/v1/common.js';
import type { HostSample } from './resource-probe.js';
import { CONTROL_CHARACTERS_EXCEPT_WHITESPACE, MAX_DOCKER_MESSAGE_CHARS } from '../../protocol/node-limits.js';

export interface ReportInput {
  seq: number;
  sample: HostSample;
  free: Capacity;
  lifecycleState: string;
  accepting: boolean;
  tasks?: TaskUsage[];
  tunnel?: TunnelStatus;
  cache?: DataCacheStatus;
}

const clampPercent = (v: number) => (Number.isFinite(v) ? Math.min(100, Math.max(0, v)) : 0);
/** The master refuses a report whose docker_message is over its limit or holds control characters. */
const CONTROLS_IN_TEXT = new RegExp(CONTROL_CHARACTERS_EXCEPT_WHITESPACE.source, 'g');
const dockerMessage = (m: string) => {
  const clean = m.replace(CONTROLS_IN_TEXT, ' ');
  return clean.length > MAX_DOCKER_MESSAGE_CHARS ? `${clean.slice(0, MAX_DOCKER_MESSAGE_CHARS - 1)}…` : clean;
};
const nonNegInt = (v: number) => (Number.isFinite(v) && v > 0 ? Math.round(v) : 0);

export function buildReport(input: ReportInput): ResourceReport {
  const s = input.sample;
  return {
    seq: input.seq,
    atMs: s.atMs,
    cpuPercent: clampPercent(s.cpuPercent),
    memoryUsedBytes: nonNegInt(s.memoryUsedBytes),
    memoryTotalBytes: nonNegInt(s.memoryTotalBytes),
    diskUsedBytes: nonNegInt(s.diskUsedBytes),
    diskTotalBytes: nonNegInt(s.diskTotalBytes),
    netRxBytesPerSec: nonNegInt(s.netRxBytesPerSec),
    netTxBytesPerSec: nonNegInt(s.netTxBytesPerSec),
    // "[N/A]" fields become 0: the wire format has no "unknown", and 0 is never mistaken for load.
    gpus: s.gpus.map((g) => ({
      index: g.index,
      utilizationPercent: clampPercent(g.utilizationPercent ?? 0),
      memoryUsedBytes: nonNegInt(g.memoryUsedBytes ?? 0),
      memoryTotalBytes: nonNegInt(g.memoryTotalBytes),
      temperatureC: g.temperatureC ?? 0,
      powerW: g.powerW ?? 0,
    })),
    dockerOk: s.docker.ok,
    dockerMessage: s.docker.ok ? '' : dockerMessage(s.docker.message ?? 'Docker is not available'),
    tasks: input.tasks ?? [],
    free: input.free,
    lifecycleState: input.lifecycleState,
    accepting: input.accepting,
    ...(input.tunnel ? { tunnel: input.tunnel } : {}),
    ...(input.cache ? { cache: input.cache } : {}),
  };
}
