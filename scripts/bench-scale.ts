// bench:scale (issue 21): the master at network scale, measured from outside. A real master
// process (direct mode, loopback, temp data dir) and N simulated nodes speaking the real
// NodeService protocol (scripts/scale/sim-node.ts; no containers: a task is a timed answer with a
// real result upload). Per run: enroll N nodes, queue Q tasks no node can take (a GPU), idle a few
// report intervals (CPU per report), probe placement latency, then a throughput phase of 1-5 s
// tasks. Prints the issue's table and writes JSON (default test-artifacts/bench-scale.json).
// Usage: npm run bench:scale [-- --nodes 1000 --queued 10000 --report-interval 30s --load-core --report-stream --fleet-nice 10]
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { availableParallelism, getPriority, setPriority } from 'node:os';
import { dirname } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { AdminClient } from '../src/client/admin-client.js';
import { parseDuration } from '../src/common/units.js';
import { pool } from './bench-helpers.js';
import { MasterProcess } from './scale/master-process.js';
import { cpuPercent, ProcessMeter, type ProcSample } from './scale/proc-stat.js';
import { RUN_MS_ENV, SimFleet, type FleetHooks } from './scale/sim-node.js';
import { costTable, markdownTable, spread, type ScaleResult } from './scale/stats.js';

interface Options {
  nodes: number[];
  queued: number;
  reportIntervalMs: number;
  reportInterval: string;
  perChannel: number;
  probes: number;
  throughputS: number;
  idleIntervals: number;
  loadCore: boolean;
  /** Nodes report on a Report stream held open (as before SendReport), not one call per report. */
  reportStream: boolean;
  /** The master's --rpc-threads; undefined: its default. */
  rpcThreads: number | undefined;
  out: string;
  logLevel: string;
  /** Caps every waiting phase (enrol, submit, probe wait, the final listing), so a saturated master still ends the run. */
  maxPhaseMs: number | undefined;
  /**
   * The niceness of the simulated fleet (this process's main thread) while a master runs; 0: as
   * the master. The fleet stands for N other machines: at its own priority its CPU is taken from
   * the master's two cores, and the master's event-loop lag then holds the wait for a core.
   */
  fleetNice: number;
}

function options(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      nodes: { type: 'string', multiple: true },
      full: { type: 'boolean', default: false },
      queued: { type: 'string', default: '10000' },
      'report-interval': { type: 'string', default: '30s' },
      'nodes-per-channel': { type: 'string', default: '200' },
      probes: { type: 'string', default: '30' },
      'throughput-seconds': { type: 'string', default: '60' },
      'idle-intervals': { type: 'string', default: '3' },
      'load-core': { type: 'boolean', default: false },
      'report-stream': { type: 'boolean', default: false },
      'rpc-threads': { type: 'string' },
      out: { type: 'string', default: 'test-artifacts/bench-scale.json' },
      'log-level': { type: 'string', default: 'warn' },
      'max-phase-seconds': { type: 'string' },
      'fleet-nice': { type: 'string', default: '0' },
    },
  });
  const int = (name: string, v: string, min: number) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new Error(`--${name} ${v}: expected a whole number of at least ${min}`);
    return n;
  };
  const nodes = (values.nodes ?? []).flatMap((v) => v.split(',')).map((v) => int('nodes', v.replace(/_/g, ''), 1));
  const fleetNice = Math.min(19, int('fleet-nice', values['fleet-nice'], 0));
  // Lowering a niceness again needs root: a later run's master would be spawned niced.
  if (fleetNice > 0 && process.getuid?.() !== 0 && nodes.length !== 1) {
    throw new Error('--fleet-nice with more than one --nodes value needs root (the niceness is lowered again between runs); give one --nodes value');
  }
  return {
    nodes: nodes.length ? nodes : values.full ? [100, 1000, 10_000] : [100, 1000],
    queued: int('queued', values.queued, 0),
    reportIntervalMs: parseDuration(values['report-interval']),
    reportInterval: values['report-interval'],
    perChannel: int('nodes-per-channel', values['nodes-per-channel'], 1),
    probes: int('probes', values.probes, 1),
    throughputS: int('throughput-seconds', values['throughput-seconds'], 1),
    idleIntervals: int('idle-intervals', values['idle-intervals'], 1),
    loadCore: values['load-core'],
    reportStream: values['report-stream'],
    rpcThreads: values['rpc-threads'] === undefined ? undefined : int('rpc-threads', values['rpc-threads'], 0),
    out: values.out,
    logLevel: values['log-level'],
    maxPhaseMs: values['max-phase-seconds'] === undefined ? undefined : int('max-phase-seconds', values['max-phase-seconds'], 10) * 1000,
    fleetNice,
  };
}

/** Resolves with `p`, or rejects after `ms` (the bench must end by itself whatever the master does). */
function within<T>(what: string, ms: number, p: Promise<T>): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => (t = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms)));
  return Promise.race([p, timeout]).finally(() => clearTimeout(t));
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const priorityAtStart = getPriority();
const say = (s: string) => console.log(s);

/** Everything to kill on any exit, however the bench ends. */
const live = { master: undefined as MasterProcess | undefined, burner: undefined as ChildProcess | undefined, prober: undefined as ChildProcess | undefined };
process.on('exit', () => {
  live.burner?.kill('SIGKILL');
  live.prober?.kill('SIGKILL');
  live.master?.stopSync();
});
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.once(sig, () => process.exit(130));

const NEVER_FITS = { cpus: 1, memoryBytes: 64 * 1024 ** 2, pids: 0, gpus: 1, timeoutMs: 0 };
const FITS = { cpus: 0.5, memoryBytes: 256 * 1024 ** 2, pids: 0, gpus: 0, timeoutMs: 600_000 };

async function runOne(o: Options, n: number): Promise<ScaleResult> {
  const cap = (ms: number) => Math.min(ms, o.maxPhaseMs ?? ms);
  const budget = { enroll: cap(Math.max(60_000, n * 60)), submit: cap(Math.max(60_000, o.queued * 30)), probe: cap(180_000), list: cap(120_000) };
  say(`\n## ${n} nodes, ${o.queued} queued, report interval ${o.reportInterval}`);
  const master = await MasterProcess.start({ reportInterval: o.reportInterval, logLevel: o.logLevel, rpcThreads: o.rpcThreads });
  live.master = master;
  const admin = AdminClient.connect(master.address, await master.adminToken());
  const meter = ProcessMeter.create(master.pid);
  let peakRss = 0;
  const samples: ProcSample[] = [];
  const assignedAt = new Map<string, number>();
  const completedAt = new Map<string, number>();
  const uploads: number[] = [];
  const nodeErrors: Record<string, number> = {};
  const hooks: FleetHooks = {
    assigned: (id, at) => void (!assignedAt.has(id) && assignedAt.set(id, at)),
    completed: (id) => void completedAt.set(id, Date.now()),
    uploaded: (ms) => void uploads.push(ms),
    failed: (kind) => void (nodeErrors[kind] = (nodeErrors[kind] ?? 0) + 1),
  };
  const fleet = SimFleet.create(master.address, n, { perChannel: o.perChannel, reportIntervalMs: o.reportIntervalMs, hooks, reportOnStream: o.reportStream });
  const listNodes: number[] = [];
  const listTasks: number[] = [];
  let listErrors = 0;
  const meterTimer = setInterval(() => {
    try {
      const s = meter.sample();
      peakRss = Math.max(peakRss, s.peakRssBytes);
      samples.push(s);
    } catch {
      // the master is gone; the phase that waits on it reports why
    }
  }, 1000);
  // The master's own event-loop lag (its /metrics), one window per scrape: the longest block seen
  // and how many windows held a block over 100 ms.
  // Each window is tagged with the phase it ended in, so a stall is told apart by what caused it.
  let phase = 'enrol';
  const loopMax: { phase: string; ms: number }[] = [];
  // The RPC threads' own (the longest of them per window): their stalls delay calls, not the queue.
  const rpcMax: { phase: string; ms: number }[] = [];
  const loopTimer = setInterval(() => {
    const during = phase;
    void master.eventLoopMaxMs().then((lag) => {
      if (!lag) return;
      loopMax.push({ phase: during, ms: lag.main });
      if (lag.rpc !== undefined) rpcMax.push({ phase: during, ms: lag.rpc });
    }, () => undefined);
  }, 2000);
  // Admin calls are timed from a process of their own (scale/admin-prober.ts), not from this
  // one, whose event loop drives every simulated node.
  const prober = spawn(process.execPath, [fileURLToPath(new URL('./scale/admin-prober.js', import.meta.url)), master.address, await master.adminToken()], { stdio: ['pipe', 'pipe', 'inherit'] });
  live.prober = prober;
  createInterface({ input: prober.stdout! }).on('line', (line) => {
    try {
      const a = JSON.parse(line) as { kind: 'nodes' | 'tasks'; ms?: number; error?: string };
      if (a.ms === undefined) listErrors++;
      else (a.kind === 'nodes' ? listNodes : listTasks).push(a.ms);
    } catch {
      // not a line of the prober's
    }
  });
  const setListing = (on: boolean) => void prober.stdin!.write(on ? 'on\n' : 'off\n');
  // Niceness is per thread on Linux and children inherit it: set after the master and the prober
  // are spawned (they run at the priority the bench started with), on the thread that drives the fleet.
  if (o.fleetNice > 0) {
    setPriority(o.fleetNice);
    say(`the simulated fleet runs at nice ${o.fleetNice}; the master, the admin prober${o.loadCore ? ' and the core burner' : ''} at ${priorityAtStart}`);
  }
  try {
    await within('the master to answer', 30_000, (async () => {
      for (;;) {
        try {
          return await admin.listNodesPage({ limit: 1 });
        } catch {
          await sleep(200);
        }
      }
    })());
    const t0 = meter.sample();

    // 1. Enrollment: one token with N uses; 64 registrations in flight, then subscribe and report.
    const token = (await admin.createToken({ uses: n, ttlMs: 3_600_000 })).token;
    const enrollStart = performance.now();
    await within('enrollment', budget.enroll, pool(n, 64, async (i) => {
      const node = fleet.nodes[i]!;
      await node.register(token);
      node.start();
    }));
    // Past the budget the run goes on with the nodes the master has online (a saturated master may never list them all).
    const enrollDeadline = Date.now() + budget.enroll;
    let online = 0;
    while (online < n && Date.now() < enrollDeadline) {
      online = await within('listing every node', budget.list, admin.listNodes({ limit: 0 })).then((l) => l.filter((x) => x.online).length, () => online);
      if (online < n) await sleep(1000);
    }
    if (online < n) say(`only ${online} of ${n} nodes listed online within the enrolment budget (${budget.enroll / 1000} s); going on`);
    const enrollMs = performance.now() - enrollStart;
    const slots = fleet.slots;
    say(`enrolled ${n} nodes in ${(enrollMs / 1000).toFixed(1)} s over ${fleet.channels} HTTP/2 connections (${o.perChannel} nodes per connection; each node its own credential), ${slots} task slots`);
    setListing(true);

    // 2. Q tasks that need a GPU no node has: they stay queued.
    phase = 'submit';
    const submitStart = performance.now();
    // Past its budget the phase stops submitting and the run goes on with the queue it has.
    const submitDeadline = Date.now() + budget.submit;
    let queued = 0;
    await Promise.all(Array.from({ length: 16 }, async () => {
      while (queued < o.queued && Date.now() < submitDeadline) {
        const i = queued++;
        await within('a queued submit', 60_000, admin.submit({ image: 'bench/never-fits', command: ['true'], env: new Map([['BENCH_QUEUED', String(i)]]), limits: NEVER_FITS }));
      }
    }));
    const submitMs = performance.now() - submitStart;
    say(`queued ${queued} GPU tasks in ${(submitMs / 1000).toFixed(1)} s${queued < o.queued ? ` (of ${o.queued}: the phase's ${budget.submit / 1000} s budget ran out)` : ''}`);

    // 3. Idle: nothing to place, the queue full, the nodes reporting; list sampling paused so the CPU is the reports'.
    setListing(false);
    phase = 'idle';
    await sleep(2000);
    const idleFrom = meter.sample();
    const reportsFrom = fleet.reportsSent();
    const idleMs = o.idleIntervals * o.reportIntervalMs;
    await sleep(idleMs);
    const idleTo = meter.sample();
    const reports = fleet.reportsSent() - reportsFrom;
    const idle = { seconds: idleMs / 1000, reports, cpuMsPerReport: reports ? (idleTo.cpuMs - idleFrom.cpuMs) / reports : undefined, cpuPercent: cpuPercent(idleFrom, idleTo) };
    say(`idle ${idle.seconds} s: ${reports} reports, master CPU ${idle.cpuPercent.toFixed(1)} %, ${idle.cpuMsPerReport?.toFixed(2) ?? '-'} CPU ms per report`);
    setListing(true);

    // 4. Probes: submit -> the node receives the assign, spaced out.
    phase = 'probes';
    const probeSubmitted = new Map<string, number>();
    for (let i = 0; i < o.probes; i++) {
      const at = Date.now();
      const id = await within('a probe submit', 60_000, admin.submit({ image: 'bench/probe', command: ['true'], env: new Map([[RUN_MS_ENV, '1000']]), limits: FITS }));
      probeSubmitted.set(id, at);
      await sleep(500);
    }
    const probeDeadline = Date.now() + budget.probe;
    while ([...probeSubmitted.keys()].some((id) => !assignedAt.has(id)) && Date.now() < probeDeadline) await sleep(200);
    const placement = [...probeSubmitted].filter(([id]) => assignedAt.has(id)).map(([id, at]) => assignedAt.get(id)! - at);
    const probesLost = probeSubmitted.size - placement.length;
    say(`probes: ${placement.length}/${probeSubmitted.size} placed`);

    // 5. Throughput: keep about as many 1-5 s tasks open as there are slots, for the phase's length.
    phase = 'throughput';
    const assignedBefore = assignedAt.size;
    const tpFrom = meter.sample();
    const tpStart = Date.now();
    const tpEnd = tpStart + o.throughputS * 1000;
    const open = new Set<string>();
    let submitted = 0;
    await Promise.all(Array.from({ length: 16 }, async () => {
      while (Date.now() < tpEnd) {
        for (const id of open) if (completedAt.has(id)) open.delete(id);
        if (open.size >= slots) {
          await sleep(100);
          continue;
        }
        try {
          const id = await within('a throughput submit', 30_000, admin.submit({ image: 'bench/work', command: ['true'], env: new Map([[RUN_MS_ENV, String(1000 + Math.floor(Math.random() * 4000))]]), limits: FITS }));
          open.add(id);
          submitted++;
        } catch {
          hooks.failed('throughput submit failed');
        }
      }
    }));
    const tpTo = meter.sample();
    const completed = [...completedAt.values()].filter((at) => at >= tpStart && at <= tpEnd).length;
    const placed = assignedAt.size - assignedBefore;
    const throughput = { seconds: o.throughputS, submitted, completed, perSecond: completed / o.throughputS, cpuMsPerPlacement: placed ? (tpTo.cpuMs - tpFrom.cpuMs) / placed : undefined };
    say(`throughput ${o.throughputS} s: ${submitted} submitted, ${placed} placed, ${completed} completed (${throughput.perSecond.toFixed(1)}/s)`);

    // 6. Nodes the master lists offline that kept reporting (a report within the last interval).
    phase = 'end';
    setListing(false);
    const now = Date.now();
    const reporting = new Set(fleet.nodes.filter((x) => now - x.lastReportAt < o.reportIntervalMs * 1.5).map((x) => x.nodeId));
    const listed = await within('listing every node', budget.list, admin.listNodes({ limit: 0 })).catch((err: unknown) => {
      say(`the final ListNodes failed, nodes wrongly offline unknown: ${err instanceof Error ? err.message : String(err)}`);
      return undefined;
    });
    const wronglyOffline = listed?.filter((x) => !x.online && reporting.has(x.nodeId)).length;
    const end = meter.sample();
    peakRss = Math.max(peakRss, end.peakRssBytes);
    // The WAL is reused, never cut while the master runs: its size now is the largest it reached.
    const walBytes = master.walBytes();
    say(`master.db-wal: ${(walBytes / 2 ** 20).toFixed(1)} MiB (its largest in this run)`);
    return {
      nodes: n, queued, queuedAsked: o.queued, reportIntervalMs: o.reportIntervalMs, nodesPerChannel: o.perChannel, loadCore: o.loadCore,
      nodesUp: fleet.nodes.filter((x) => x.nodeId).length, enrollMs, submitMs,
      placementMs: spread(placement), probesLost, throughput, idle,
      master: { cpuPercent: cpuPercent(t0, end), maxRssBytes: peakRss, walBytes },
      uploadMs: spread(uploads), listNodesMs: spread(listNodes), listTasksMs: spread(listTasks), listErrors,
      wronglyOffline, nodeErrors,
      eventLoopStalls: stallSummary(loopMax),
      rpcThreadStalls: rpcMax.length ? stallSummary(rpcMax) : 'no RPC threads',
    };
  } catch (err) {
    throw new Error(`${n} nodes: ${err instanceof Error ? err.message : String(err)}\nmaster output (tail):\n${master.output.slice(-4000)}`);
  } finally {
    clearInterval(meterTimer);
    clearInterval(loopTimer);
    prober.kill('SIGKILL');
    live.prober = undefined;
    fleet.close();
    admin.close();
    await master.stop();
    live.master = undefined;
    // Back to the start's priority, so the next run's master is not spawned niced.
    if (o.fleetNice > 0) setPriority(priorityAtStart);
  }
}

async function main(): Promise<void> {
  const o = options(process.argv.slice(2));
  say(`# HiveMind bench:scale, ${new Date().toISOString()}, node ${process.version}, ${availableParallelism()} cores${o.loadCore ? ', one core kept busy by another process' : ''}, reports ${o.reportStream ? 'on a Report stream per node' : 'as SendReport calls'}, master RPC threads ${o.rpcThreads ?? 'default'}`);
  say('simulated nodes speak the real protocol from this one process; no containers run (a task is a timed answer with a real result upload)');
  if (o.loadCore) live.burner = spawn(process.execPath, ['-e', 'for(;;){}'], { stdio: 'ignore' });
  const results: ScaleResult[] = [];
  try {
    for (const n of o.nodes) {
      try {
        results.push(await runOne(o, n));
      } catch (err) {
        console.error(err instanceof Error ? err.message : String(err));
        process.exitCode = 1;
      }
    }
  } finally {
    live.burner?.kill('SIGKILL');
    live.burner = undefined;
  }
  if (results.length === 0) return;
  say(`\n${markdownTable(results)}\n\n${costTable(results)}`);
  for (const r of results) {
    const errs = Object.entries(r.nodeErrors).map(([k, v]) => `${k}: ${v}`).join(', ');
    say(`${r.nodes} nodes: ${r.listErrors} admin list calls failed; node-side errors: ${errs || 'none'}; event-loop stalls: ${r.eventLoopStalls}; RPC threads: ${r.rpcThreadStalls}`);
  }
  mkdirSync(dirname(o.out), { recursive: true });
  writeFileSync(o.out, JSON.stringify({ at: new Date().toISOString(), node: process.version, cores: availableParallelism(), results }, null, 2) + '\n');
  say(`\nJSON: ${o.out}`);
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});

/** "longest L ms; K of N 2-s windows had a block over 100 ms (submit: …, idle: …)", per phase. */
function stallSummary(windows: { phase: string; ms: number }[]): string {
  if (windows.length === 0) return 'not measured: no /metrics scrape answered';
  const one = (w: { ms: number }[]) => `longest ${Math.max(...w.map((x) => x.ms)).toFixed(0)} ms; ${w.filter((x) => x.ms > 100).length} of ${w.length} 2-s windows had a block over 100 ms`;
  const phases = [...new Set(windows.map((w) => w.phase))];
  return `${one(windows)} (${phases.map((p) => `${p}: ${one(windows.filter((w) => w.phase === p)).replace(' 2-s windows had a block', '')}`).join('; ')})`;
}
