// Resource reports: one per interval and one on demand, each stored (the local history has no
// gaps), scored as a contribution, announced, and sent to the master when it is there.
import type { Clock } from '../common/clock.js';
import { errorMessage } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import type { Capacity, DataCacheStatus, ResourceReport, TunnelStatus } from '../protocol/gen/hivemind/v1/common.js';
import { WORKER_DEFAULTS } from '../config/defaults.js';
import { scoreReport } from './contribution.js';
import type { ContributionPoint, LifecycleState, TaskExecutor } from './contracts.js';
import { buildReport } from './resources/report-builder.js';
import type { HostSample, ResourceProbe } from './resources/resource-probe.js';
import type { SampleRetention, WorkerStore } from './store/worker-store.js';

export interface ReporterDeps {
  probe: Pick<ResourceProbe, 'sample'>;
  executor: Pick<TaskExecutor, 'usage'>;
  tunnel?: { status(): Promise<TunnelStatus> };
  /** The data cache's status, when the node has one. */
  cache?(): DataCacheStatus;
  store: Pick<WorkerStore, 'addSample' | 'addContribution'>;
  clock: Clock;
  logger: Logger;
  /** The configured interval; undefined: the master's (or the default). */
  reportIntervalMs: number | undefined;
  sampleRetention: SampleRetention;
  /** The node's side of the report, as of the moment it is built. */
  state(): { free: Capacity; lifecycleState: LifecycleState; accepting: boolean };
  /** Each sample, before its report is built (Docker answering again, say). */
  onSample(sample: HostSample): void;
  onReport(report: ResourceReport): void;
  onContribution(point: ContributionPoint): void;
  /** Hands the report to the master if connected. */
  send(report: ResourceReport): void;
}

export class Reporter {
  private masterIntervalMs = 0;
  private seq = 0;
  private timer: NodeJS.Timeout | undefined;
  private inFlight: Promise<void> | undefined;
  private again = false;
  /** Reports go on through the drain (the master must not think the node is gone); stopped last. */
  private stopped = false;
  private lastReportAt: number | undefined;

  constructor(private readonly deps: ReporterDeps) {}

  /**
   * The master's interval unless one is configured; never longer than the master's, which marks
   * a node offline after 3 of its own intervals without a report.
   */
  intervalMs(): number {
    const master = this.masterIntervalMs || undefined;
    const own = this.deps.reportIntervalMs;
    if (own === undefined) return master ?? WORKER_DEFAULTS.reportIntervalMs;
    return master === undefined ? own : Math.min(own, master);
  }

  /** The interval the master asked for at registration; the schedule follows it. */
  setMasterInterval(ms: number): void {
    const intervalBefore = this.intervalMs();
    this.masterIntervalMs = ms;
    const own = this.deps.reportIntervalMs;
    if (own !== undefined && ms > 0 && own > ms) {
      this.deps.logger.warn({ reportIntervalMs: own, masterReportIntervalMs: ms },
        'the configured report interval is longer than the master\'s, which would mark this node offline: reporting at the master\'s interval');
    }
    if (this.intervalMs() !== intervalBefore) this.schedule();
  }

  /** (Re)arms the interval timer. */
  schedule(): void {
    if (this.timer) clearTimeout(this.timer);
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.reportNow();
      this.schedule();
    }, this.intervalMs());
  }

  /** Sends a report now; if one is on its way, another follows it (it may carry older facts). */
  reportNow(): void {
    if (this.stopped) return;
    if (this.inFlight) {
      this.again = true;
      return;
    }
    this.inFlight = this.send()
      .catch((err) => this.deps.logger.warn({ err: errorMessage(err) }, 'resource report failed'))
      .finally(() => {
        this.inFlight = undefined;
        if (this.again) {
          this.again = false;
          this.reportNow();
        }
      });
  }

  /** No report after this; waits for the one on its way. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    await this.inFlight;
  }

  private async send(): Promise<void> {
    const [sample, tasks, tunnel] = await Promise.all([
      this.deps.probe.sample(),
      this.deps.executor.usage().catch((err: unknown) => {
        this.deps.logger.debug({ err: errorMessage(err) }, 'per-task usage unavailable');
        return [];
      }),
      this.deps.tunnel?.status().catch(() => undefined),
    ]);
    if (this.stopped) return;
    let cache: DataCacheStatus | undefined;
    try {
      cache = this.deps.cache?.();
    } catch (err) {
      this.deps.logger.warn({ err: errorMessage(err) }, 'data cache status unavailable');
    }
    this.deps.onSample(sample);
    const report = buildReport({
      seq: ++this.seq,
      sample,
      tasks,
      ...(tunnel ? { tunnel } : {}),
      ...(cache ? { cache } : {}),
      ...this.deps.state(),
    });
    // Stored even while the master is away: the local history has no gaps. Without the list of
    // held data sets (up to thousands of digests, per sample): the cache's own index has it.
    this.deps.store.addSample(report.cache ? { ...report, cache: { ...report.cache, held: [] } } : report, this.deps.sampleRetention);
    this.deps.onReport(report);
    this.recordContribution(report);
    this.deps.send(report);
  }

  /** Scores the interval this report closes and records it with the running total. */
  private recordContribution(report: ResourceReport): void {
    const at = report.atMs || this.deps.clock.now();
    const intervalMs = this.lastReportAt === undefined ? this.intervalMs() : Math.max(0, at - this.lastReportAt);
    this.lastReportAt = at;
    try {
      const point = this.deps.store.addContribution(scoreReport(report, at, intervalMs));
      this.deps.onContribution(point);
    } catch (err) {
      this.deps.logger.warn({ err: errorMessage(err) }, 'recording the contribution failed');
    }
  }
}
