// The master's own Prometheus series (prefix hivemind_master_), in a prom-client registry of its
// own, as the worker's monitor does: prom-client writes HELP/TYPE, escapes label values and keeps
// histograms cumulative. Sources that change on their own (nodes, the queue, the process, the
// event loop) are read when scraped through injected functions; what happens (calls, reports,
// tasks, transactions) is counted by the record methods, called from the master's wiring.
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { takeLoopLag, type LoopLag } from '../../common/loop-lag.js';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { NODE_STATES, type NodeStateCounts } from './node-states.js';

const P = 'hivemind_master_';

/** Queue → ASSIGNED: 1 ms (an idle master) up to a minute (a saturated one); longer lands in +Inf. */
export const PLACEMENT_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
/** gRPC calls: unary calls take ms; streams (Subscribe, Report) live for hours and land in +Inf. */
export const GRPC_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30, 300];
/** SQLite statements and transactions: tens of µs when healthy, ms under write pressure. */
export const DB_BUCKETS = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1];

/** What the metrics read from the master when scraped. */
export interface MasterMetricsSources {
  /** Nodes not removed, by state. */
  nodeStates(): NodeStateCounts;
  /** Tasks in state QUEUED (a count query on the state index, not a scan). */
  tasksQueued(): number;
  /**
   * Queued tasks by the scheduler's reason code. Absent: the by-reason series is not written
   * (the task manager's queueDepthByReason(): its demand classes, each with its reason code).
   */
  queueDepthByReason?: () => ReadonlyMap<string, number>;
  /** Event-loop delay of each RPC thread since the previous scrape, by thread name (master/rpc/). Absent: that series is not written. */
  rpcThreadLag?: () => Promise<(LoopLag & { thread: string })[]>;
}

export class MasterMetrics {
  readonly registry = new Registry();
  private readonly reports: Counter;
  private readonly submitted: Counter;
  private readonly finished: Counter<'outcome'>;
  private readonly placement: Histogram;
  private readonly grpcCalls: Counter<'service' | 'method' | 'code'>;
  private readonly grpcDuration: Histogram<'service' | 'method'>;
  private readonly db: Histogram<'op'>;
  private readonly loop: ReturnType<typeof monitorEventLoopDelay>;

  constructor(sources: MasterMetricsSources) {
    const registers = [this.registry];
    new Gauge({
      name: `${P}nodes`, help: 'Registered nodes (not removed) by state: online, offline (silent past the node timeout), draining, paused (online, not taking tasks).', labelNames: ['state'], registers,
      collect() {
        const counts = sources.nodeStates();
        for (const s of NODE_STATES) this.set({ state: s }, counts[s]);
      },
    });
    new Gauge({ name: `${P}tasks_queued`, help: 'Tasks waiting in the queue (state QUEUED).', registers, collect() { this.set(sources.tasksQueued()); } });
    if (sources.queueDepthByReason) {
      const byReason = sources.queueDepthByReason;
      new Gauge({
        name: `${P}tasks_queued_by_reason`, help: 'Queued tasks by the reason the scheduler left them queued.', labelNames: ['reason'], registers,
        collect() {
          this.reset();
          for (const [reason, n] of byReason()) this.set({ reason }, n);
        },
      });
    }
    this.submitted = new Counter({ name: `${P}tasks_submitted_total`, help: 'Tasks submitted (service replicas included).', registers });
    this.finished = new Counter({ name: `${P}tasks_finished_total`, help: 'Tasks that reached a terminal state, by outcome kind (exited, oom_killed, timed_out, cancelled, node_lost, ...).', labelNames: ['outcome'], registers });
    this.placement = new Histogram({ name: `${P}placement_latency_seconds`, help: 'Time from a task entering the queue to its assignment to a node.', buckets: PLACEMENT_BUCKETS, registers });
    this.reports = new Counter({ name: `${P}reports_total`, help: 'Resource reports received from nodes.', registers });
    this.grpcCalls = new Counter({ name: `${P}grpc_calls_total`, help: 'gRPC calls ended, by service, method and status code (streams count when they end).', labelNames: ['service', 'method', 'code'], registers });
    this.grpcDuration = new Histogram({ name: `${P}grpc_call_duration_seconds`, help: 'Duration of ended gRPC calls, by service and method.', labelNames: ['service', 'method'], buckets: GRPC_BUCKETS, registers });
    this.db = new Histogram({ name: `${P}db_duration_seconds`, help: 'Duration of SQLite transactions and hot statements, by operation.', labelNames: ['op'], buckets: DB_BUCKETS, registers });

    // Lag percentiles over the time since the previous scrape (reset at each): what an alert on
    // "p99 above 100 ms" means; a figure since start would hide a recent stall.
    this.loop = monitorEventLoopDelay({ resolution: 10 });
    this.loop.enable();
    const loop = this.loop;
    new Gauge({
      name: `${P}event_loop_lag_seconds`, help: 'Event loop delay since the previous scrape: p50, p99 and max.', labelNames: ['stat'], registers,
      collect() {
        const lag = takeLoopLag(loop);
        this.set({ stat: 'p50' }, lag.p50);
        this.set({ stat: 'p99' }, lag.p99);
        this.set({ stat: 'max' }, lag.max);
      },
    });
    if (sources.rpcThreadLag) {
      const threadLag = sources.rpcThreadLag;
      new Gauge({
        name: `${P}rpc_thread_event_loop_lag_seconds`, help: 'Event loop delay of each RPC thread (the threads holding the gRPC connections) since the previous scrape: p50, p99 and max.', labelNames: ['thread', 'stat'], registers,
        async collect() {
          this.reset();
          for (const l of await threadLag()) {
            this.set({ thread: l.thread, stat: 'p50' }, l.p50);
            this.set({ thread: l.thread, stat: 'p99' }, l.p99);
            this.set({ thread: l.thread, stat: 'max' }, l.max);
          }
        },
      });
    }
    new Gauge({ name: `${P}process_resident_memory_bytes`, help: 'Resident memory of the master process.', registers, collect() { this.set(process.memoryUsage.rss()); } });
    new Counter({
      name: `${P}process_cpu_seconds_total`, help: 'CPU time of the master process, user and system.', registers,
      collect() {
        const u = process.cpuUsage();
        this.reset();
        this.inc((u.user + u.system) / 1e6);
      },
    });
    const start = Math.round(Date.now() / 1000 - process.uptime());
    new Gauge({ name: `${P}process_start_time_seconds`, help: 'Start time of the master process, seconds since the epoch.', registers, collect() { this.set(start); } });
  }

  /** The text format 0.0.4 body of every series here. */
  render(): Promise<string> {
    return this.registry.metrics();
  }

  reportReceived(): void {
    this.reports.inc();
  }

  taskSubmitted(): void {
    this.submitted.inc();
  }

  taskFinished(outcome: string): void {
    this.finished.inc({ outcome });
  }

  taskPlaced(seconds: number): void {
    this.placement.observe(seconds);
  }

  grpcCall(service: string, method: string, code: string, seconds: number): void {
    this.grpcCalls.inc({ service, method, code });
    this.grpcDuration.observe({ service, method }, seconds);
  }

  dbTimed(op: string, seconds: number): void {
    this.db.observe({ op }, seconds);
  }

  close(): void {
    this.loop.disable();
  }
}
