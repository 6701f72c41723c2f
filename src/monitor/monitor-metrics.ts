// Prometheus metrics of a worker node (prom-client, a registry of its own): task outcomes and
// durations, reports and uploads, the tunnel's handshake age, the latest resource sample and the
// data cache (data-cache-metrics.ts), the service replicas and the gateway pipe (replica-metrics.ts).
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { TaskState, type ResourceReport } from '../protocol/gen/hivemind/v1/common.js';
import type { TaskUpdate } from '../protocol/gen/hivemind/v1/node.js';
import type { DataCacheView, TaskProgressEvent } from '../worker/contracts.js';
import { registerDataCacheMetrics } from './data-cache-metrics.js';
import { registerReplicaMetrics, type ReplicaSource } from './replica-metrics.js';
import { outcomeView, stateName } from './monitor-view.js';

const TERMINAL = new Set([TaskState.TASK_STATE_SUCCEEDED, TaskState.TASK_STATE_FAILED, TaskState.TASK_STATE_CANCELLED, TaskState.TASK_STATE_REJECTED]);

export class MonitorMetrics {
  readonly registry = new Registry();
  private readonly tasks: Counter<'state' | 'outcome'>;
  private readonly durations: Histogram<'outcome'>;
  private readonly reports: Counter;
  private readonly uploads: Counter;
  private readonly uploadBytes: Counter;
  private readonly uploadSent = new Map<string, number>();
  private lastReport: ResourceReport | undefined;
  private readonly progressLines: Counter;
  private readonly progressRejected: Counter;
  /** Per running attempt: its latest progress fraction (absent: none given) and the counts already added. */
  private readonly progress = new Map<string, { taskId: string; fraction: number | undefined; updates: number; rejected: number }>();

  constructor(now: () => number, running: () => number, accepting: () => boolean, cache?: DataCacheView, replicas?: ReplicaSource) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: 'hivemind_worker_' });
    this.tasks = new Counter({ name: 'hivemind_worker_tasks_total', help: 'Tasks finished on this node, by final state and outcome kind', labelNames: ['state', 'outcome'], registers });
    this.durations = new Histogram({
      name: 'hivemind_worker_task_duration_seconds',
      help: 'Container run time of finished tasks',
      labelNames: ['outcome'],
      buckets: [0.5, 1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600],
      registers,
    });
    this.reports = new Counter({ name: 'hivemind_worker_reports_total', help: 'Resource reports produced', registers });
    this.uploads = new Counter({ name: 'hivemind_worker_result_uploads_total', help: 'Result uploads completed', registers });
    this.uploadBytes = new Counter({ name: 'hivemind_worker_result_upload_bytes_total', help: 'Result bytes sent to the master', registers });
    new Gauge({ name: 'hivemind_worker_running_tasks', help: 'Tasks running now', registers, collect() { this.set(running()); } });
    new Gauge({ name: 'hivemind_worker_accepting', help: '1 when the node takes new tasks', registers, collect() { this.set(accepting() ? 1 : 0); } });
    const self = this;
    const fromReport = (name: string, help: string, pick: (r: ResourceReport) => number) =>
      new Gauge({ name, help, registers, collect() { if (self.lastReport) this.set(pick(self.lastReport)); } });
    fromReport('hivemind_worker_cpu_percent', 'Machine CPU usage, percent', (r) => r.cpuPercent);
    fromReport('hivemind_worker_memory_used_bytes', 'Memory in use', (r) => r.memoryUsedBytes);
    fromReport('hivemind_worker_memory_total_bytes', 'Memory installed', (r) => r.memoryTotalBytes);
    fromReport('hivemind_worker_disk_used_bytes', 'Disk used on the data dir file system', (r) => r.diskUsedBytes);
    fromReport('hivemind_worker_disk_total_bytes', 'Size of the data dir file system', (r) => r.diskTotalBytes);
    fromReport('hivemind_worker_network_receive_bytes_per_second', 'Network receive rate', (r) => r.netRxBytesPerSec);
    fromReport('hivemind_worker_network_transmit_bytes_per_second', 'Network transmit rate', (r) => r.netTxBytesPerSec);
    fromReport('hivemind_worker_docker_up', '1 when the Docker daemon answers', (r) => (r.dockerOk ? 1 : 0));
    const perGpu = (name: string, help: string, pick: (g: ResourceReport['gpus'][number]) => number) =>
      new Gauge({
        name,
        help,
        labelNames: ['gpu'],
        registers,
        collect() {
          this.reset();
          for (const g of self.lastReport?.gpus ?? []) this.set({ gpu: String(g.index) }, pick(g));
        },
      });
    perGpu('hivemind_worker_gpu_utilization_percent', 'GPU utilisation', (g) => g.utilizationPercent);
    perGpu('hivemind_worker_gpu_memory_used_bytes', 'GPU memory in use', (g) => g.memoryUsedBytes);
    perGpu('hivemind_worker_gpu_temperature_celsius', 'GPU temperature', (g) => g.temperatureC);
    perGpu('hivemind_worker_gpu_power_watts', 'GPU power draw', (g) => g.powerW);
    new Gauge({
      name: 'hivemind_worker_tunnel_handshake_age_seconds',
      help: 'Seconds since the last WireGuard handshake with the master (absent without a tunnel, -1 before the first)',
      registers,
      collect() {
        this.reset();
        const t = self.lastReport?.tunnel;
        if (t) this.set(t.latestHandshakeMs > 0 ? Math.max(0, (now() - t.latestHandshakeMs) / 1000) : -1);
      },
    });
    this.progressLines = new Counter({ name: 'hivemind_worker_progress_lines_total', help: 'Progress lines read from tasks\' output (docs/progress.md), as forwarded to the master', registers });
    this.progressRejected = new Counter({ name: 'hivemind_worker_progress_lines_rejected_total', help: 'Of the progress lines read, those refused as malformed or over a limit', registers });
    new Gauge({
      name: 'hivemind_task_progress_fraction',
      help: 'A running task\'s own latest progress fraction, 0..1 (docs/progress.md); absent until it gives one',
      labelNames: ['task_id'],
      registers,
      collect() {
        this.reset();
        for (const p of self.progress.values()) if (p.fraction !== undefined) this.set({ task_id: p.taskId }, p.fraction);
      },
    });
    if (cache) registerDataCacheMetrics(this.registry, cache);
    if (replicas) registerReplicaMetrics(this.registry, replicas);
  }

  onUpdate(u: TaskUpdate): void {
    const k = `${u.taskId}#${u.attempt}`;
    if (u.progress) {
      const before = this.progress.get(k) ?? { taskId: u.taskId, fraction: undefined, updates: 0, rejected: 0 };
      // The counts are the attempt's totals: add what is new since the last report.
      this.progressLines.inc(Math.max(0, u.progress.updates - before.updates));
      this.progressRejected.inc(Math.max(0, u.progress.rejected - before.rejected));
      this.progress.set(k, { taskId: u.taskId, fraction: u.progress.fraction, updates: u.progress.updates, rejected: u.progress.rejected });
    }
    if (!TERMINAL.has(u.state)) return;
    this.progress.delete(k);
    const outcome = outcomeView(u.outcome)?.kind ?? 'none';
    this.tasks.inc({ state: stateName(u.state), outcome });
    if (u.outcome && u.outcome.durationMs > 0) this.durations.observe({ outcome }, u.outcome.durationMs / 1000);
    this.uploadSent.delete(`${u.taskId}#${u.attempt}`);
  }

  onProgress(p: TaskProgressEvent): void {
    if (p.kind !== 'upload') return;
    const k = `${p.taskId}#${p.attempt}`;
    const before = this.uploadSent.get(k) ?? 0;
    if (p.currentBytes > before) this.uploadBytes.inc(p.currentBytes - before);
    this.uploadSent.set(k, p.currentBytes);
    if (p.currentBytes >= p.totalBytes) this.uploads.inc();
  }

  onReport(r: ResourceReport): void {
    this.lastReport = r;
    this.reports.inc();
  }

  async text(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
