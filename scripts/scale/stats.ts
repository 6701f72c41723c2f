// The pure arithmetic of bench:scale: percentiles, and the markdown table the lead pastes into
// docs/benchmarks.md. Kept apart from the simulator so a unit test covers it without a master.

/** Nearest-rank percentile (p in 0..100) of the samples; undefined when there are none. */
export function percentile(samples: readonly number[], p: number): number | undefined {
  if (samples.length === 0) return undefined;
  const sorted = [...samples].sort((a, b) => a - b);
  const rank = Math.ceil((Math.min(Math.max(p, 0), 100) / 100) * sorted.length);
  return sorted[Math.max(rank, 1) - 1];
}

/** p50 and p99 of a sample set, with its size: what every latency row of the table shows. */
export interface Spread {
  n: number;
  p50?: number;
  p99?: number;
}

export function spread(samples: readonly number[]): Spread {
  return { n: samples.length, p50: percentile(samples, 50), p99: percentile(samples, 99) };
}

/** What one run measured; the JSON file holds these as they are. */
export interface ScaleResult {
  nodes: number;
  /** Tasks queued that no node can take (fewer than asked when the submit phase ran out of time). */
  queued: number;
  queuedAsked: number;
  reportIntervalMs: number;
  nodesPerChannel: number;
  loadCore: boolean;
  /** Simulated nodes that registered and subscribed. */
  nodesUp: number;
  /** Milliseconds from the first Register to the last node subscribed. */
  enrollMs: number;
  /** Milliseconds the Q queued tasks took to submit, all of them. */
  submitMs: number;
  placementMs: Spread;
  /** Probe tasks that never reached a node within the phase. */
  probesLost: number;
  throughput: { seconds: number; submitted: number; completed: number; perSecond: number; cpuMsPerPlacement?: number };
  idle: { seconds: number; reports: number; cpuMsPerReport?: number; cpuPercent: number };
  master: { cpuPercent: number; maxRssBytes: number; walBytes?: number };
  uploadMs: Spread;
  listNodesMs: Spread;
  listTasksMs: Spread;
  /** Failed admin list calls (deadline or error) while sampling. */
  listErrors: number;
  /** Nodes the master lists offline at the end while the simulator kept them reporting (undefined: that listing failed). */
  wronglyOffline: number | undefined;
  /** Errors the simulated nodes saw from the master (per kind), to tell overload from bugs. */
  nodeErrors: Record<string, number>;
  eventLoopStalls: string;
  /** The same for the RPC threads (the longest of them per window), or "no RPC threads". */
  rpcThreadStalls: string;
}

const ms = (v: number | undefined): string => (v === undefined ? '-' : v >= 10_000 ? `${(v / 1000).toFixed(1)} s` : `${Math.round(v)} ms`);
const pair = (s: Spread): string => `${ms(s.p50)} / ${ms(s.p99)}`;
const mib = (b: number): string => `${Math.round(b / 1024 ** 2)} MiB`;

/** The table: one row per run. */
export function markdownTable(rows: readonly ScaleResult[]): string {
  const head = '| nodes | tasks/s | placement p50 / p99 | master CPU / max RSS | upload p50 | ListNodes p50 / p99 | ListTasks p50 / p99 | wrongly offline |';
  const rule = '|---:|---:|---:|---:|---:|---:|---:|---:|';
  const body = rows.map((r) =>
    [
      r.nodes.toLocaleString('en-US'),
      r.throughput.perSecond.toFixed(1),
      pair(r.placementMs) + (r.probesLost ? ` (${r.probesLost} never placed)` : ''),
      `${r.master.cpuPercent.toFixed(0)} % / ${mib(r.master.maxRssBytes)}`,
      ms(r.uploadMs.p50),
      pair(r.listNodesMs),
      pair(r.listTasksMs),
      r.wronglyOffline === undefined ? '? (listing failed)' : String(r.wronglyOffline),
    ].join(' | '),
  );
  return [head, rule, ...body.map((b) => `| ${b} |`)].join('\n');
}

/** The cost table: master CPU per report (idle phase, queue full) and per placed task. */
export function costTable(rows: readonly ScaleResult[]): string {
  const fix = (v: number | undefined, d = 2) => (v === undefined ? '-' : v.toFixed(d));
  const head = '| nodes | queued | idle CPU % | CPU ms / report | CPU ms / placement | enroll | submit Q |';
  const rule = '|---:|---:|---:|---:|---:|---:|---:|';
  const body = rows.map((r) =>
    `| ${r.nodes.toLocaleString('en-US')} | ${r.queued.toLocaleString('en-US')} | ${r.idle.cpuPercent.toFixed(0)} % | ${fix(r.idle.cpuMsPerReport)} | ${fix(r.throughput.cpuMsPerPlacement)} | ${ms(r.enrollMs)} | ${ms(r.submitMs)} |`,
  );
  return [head, rule, ...body].join('\n');
}
