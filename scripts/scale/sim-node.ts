// Simulated nodes for bench:scale: each speaks the real NodeService protocol as the worker does
// (Register with an enrollment token, then its node credential in every call's metadata; one
// long Report stream written every interval; a Subscribe stream of commands; TaskUpdates with the
// free capacity as of sending; PushLogs; GetUploadOffset + UploadResult). A task is not run: the
// node waits the time the task's BENCH_RUN_MS says and uploads a small real result.
// Many nodes share one client (one HTTP/2 connection): a node is its credential, not its socket.
import { createHash, randomInt } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { credentials, type ClientWritableStream, type Metadata } from '@grpc/grpc-js';
import { bearerMetadata } from '../../src/protocol/auth-metadata.js';
import { channelOptions } from '../../src/protocol/transport.js';
import { LogStream, OutcomeKind, TaskState, type Capacity, type ResourceReport, type TaskOutcome } from '../../src/protocol/gen/hivemind/v1/common.js';
import { NodeServiceClient, type NodeCommand, type TaskAssignment, type TaskUpdate } from '../../src/protocol/gen/hivemind/v1/node.js';
import { CHUNK_SIZE } from '../../src/protocol/transport.js';

/** The env key of a bench task that tells a simulated node how long "running" it takes. */
export const RUN_MS_ENV = 'BENCH_RUN_MS';

const CPUS = 2;
const MEMORY = 4 * 1024 ** 3;
const CALL_MS = 60_000;
/** One small gzip per process: every task uploads the same bytes (size and sha256 known once). */
const RESULT = gzipSync(Buffer.from('hivemind bench:scale result\n'.repeat(32)));
const RESULT_SHA = createHash('sha256').update(RESULT).digest('hex');

export interface FleetHooks {
  /** A node received an assign command (wall clock ms). */
  assigned(taskId: string, atMs: number): void;
  /** A node's SUCCEEDED update was acknowledged. */
  completed(taskId: string): void;
  /** GetUploadOffset + UploadResult took this long. */
  uploaded(ms: number): void;
  /** A call failed or a stream broke; `kind` groups them in the output. */
  failed(kind: string): void;
}

export class SimNode {
  nodeId = '';
  private md: Metadata | undefined;
  private reportStream: ClientWritableStream<ResourceReport> | undefined;
  private sub: ReturnType<NodeServiceClient['subscribe']> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private readonly running = new Map<string, { cpus: number; memoryBytes: number }>();
  private seq = 0;
  private closed = false;
  reportsSent = 0;
  /** Wall clock of the last report written on a healthy stream (0: none yet). */
  lastReportAt = 0;

  constructor(
    private readonly client: NodeServiceClient,
    readonly name: string,
    private readonly slots: number,
    private readonly reportIntervalMs: number,
    private readonly hooks: FleetHooks,
    /** Reports on a Report stream held open (nodes before SendReport), not as SendReport calls. */
    private readonly reportOnStream = false,
  ) {}

  register(token: string): Promise<void> {
    const facts = { hostname: this.name, os: 'linux', osRelease: 'bench', arch: 'x64', cpuCores: CPUS, cpuModel: 'simulated', memoryBytes: MEMORY, diskBytes: 0, gpus: [], dockerVersion: '27.0', labels: new Map<string, string>(), workerVersion: 'bench-scale', allowsEgress: false, maxTasks: this.slots, isolations: [], engine: '', unenforcedLimits: [] };
    return new Promise((resolve, reject) =>
      this.client.register({ name: this.name, facts }, bearerMetadata(token), { deadline: Date.now() + CALL_MS }, (err, res) => {
        if (err) return reject(err);
        this.nodeId = res.nodeId;
        this.md = bearerMetadata(res.nodeCredential);
        resolve();
      }),
    );
  }

  free(): Capacity {
    let cpus = CPUS;
    let memoryBytes = MEMORY;
    for (const r of this.running.values()) {
      cpus -= r.cpus;
      memoryBytes -= r.memoryBytes;
    }
    return { cpus: Math.max(cpus, 0), memoryBytes: Math.max(memoryBytes, 0), gpuIndexes: [], taskSlots: Math.max(this.slots - this.running.size, 0) };
  }

  /** Subscribes, reports at once, then every interval from a random phase (as a fleet started at different times). */
  start(): void {
    this.report();
    this.subscribe();
    const first = randomInt(Math.max(this.reportIntervalMs, 1));
    this.timer = setTimeout(() => {
      this.report();
      this.timer = setInterval(() => this.report(), this.reportIntervalMs);
    }, first);
  }

  /** The master sends nothing on a quiet subscription: the bench checks the fleet online through ListNodes. */
  private subscribe(): void {
    const sub = this.client.subscribe({ running: [...this.running.keys()].map((taskId) => ({ taskId, attempt: 0 })), free: this.free(), accepting: true, exec: false }, this.md!);
    this.sub = sub;
    sub.on('data', (c: NodeCommand) => {
      if (c.command?.$case === 'assign') this.onAssign(c.command.value);
    });
    sub.on('error', (err: Error & { code?: number }) => {
      if (this.closed) return;
      this.hooks.failed(`subscribe ended (code ${err.code ?? '?'})`);
      setTimeout(() => !this.closed && this.subscribe(), 2000 + randomInt(3000)).unref();
    });
  }

  private report(): void {
    if (this.closed || !this.md) return;
    const r: ResourceReport = {
      seq: ++this.seq, atMs: Date.now(), cpuPercent: 5, memoryUsedBytes: 512 * 1024 ** 2, memoryTotalBytes: MEMORY, diskUsedBytes: 0, diskTotalBytes: 0,
      netRxBytesPerSec: 0, netTxBytesPerSec: 0, gpus: [], dockerOk: true, dockerMessage: '', tasks: [], free: this.free(), lifecycleState: 'connected', accepting: true,
    };
    if (this.reportOnStream) {
      if (!this.reportStream?.writable) {
        const stream = this.client.report(this.md, (err) => {
          if (err && !this.closed) this.hooks.failed(`report stream ended (code ${err.code})`);
          if (this.reportStream === stream) this.reportStream = undefined;
        });
        this.reportStream = stream;
      }
      this.reportStream.write(r);
    } else {
      // As the worker does (src/worker/report-calls.ts): one call per report.
      this.client.sendReport(r, this.md, { deadline: Date.now() + 30_000 }, (err) => {
        if (err && !this.closed) this.hooks.failed(`report call failed (code ${err.code})`);
      });
    }
    this.reportsSent++;
    this.lastReportAt = Date.now();
  }

  private onAssign(a: TaskAssignment): void {
    this.hooks.assigned(a.taskId, Date.now());
    const limits = a.spec?.limits;
    this.running.set(a.taskId, { cpus: limits?.cpus ?? 0, memoryBytes: limits?.memoryBytes ?? 0 });
    this.runTask(a).catch((err: Error & { code?: number }) => {
      this.running.delete(a.taskId);
      if (!this.closed) this.hooks.failed(`task call failed (${err.code !== undefined ? `code ${err.code}` : err.message.slice(0, 60)})`);
    });
  }

  private async runTask(a: TaskAssignment): Promise<void> {
    const { taskId, attempt } = a;
    const runMs = Number(a.spec?.env.get(RUN_MS_ENV) ?? 1000);
    await this.update(taskId, attempt, TaskState.TASK_STATE_ACCEPTED);
    await this.update(taskId, attempt, TaskState.TASK_STATE_RUNNING);
    await this.pushLog(taskId, attempt, `bench task ${taskId} running ${runMs} ms\n`);
    await new Promise((r) => setTimeout(r, runMs));
    if (this.closed) return;
    await this.update(taskId, attempt, TaskState.TASK_STATE_UPLOADING);
    const t0 = performance.now();
    await this.upload(taskId, attempt);
    this.hooks.uploaded(performance.now() - t0);
    // As the worker: the slot is free in the numbers the terminal update carries.
    this.running.delete(taskId);
    const outcome: TaskOutcome = { kind: OutcomeKind.OUTCOME_KIND_EXITED, exitCode: 0, message: '', durationMs: runMs, resultSize: RESULT.length, resultSha256: RESULT_SHA };
    await this.update(taskId, attempt, TaskState.TASK_STATE_SUCCEEDED, outcome);
    this.hooks.completed(taskId);
  }

  private update(taskId: string, attempt: number, state: TaskState, outcome?: TaskOutcome): Promise<void> {
    const u: TaskUpdate = { taskId, attempt, seq: ++this.seq, state, message: '', atMs: Date.now(), outcome, pull: undefined, free: this.free(), accepting: true, data: undefined, replica: undefined, progress: undefined };
    return new Promise((resolve, reject) => this.client.updateTask(u, this.md!, { deadline: Date.now() + CALL_MS }, (e) => (e ? reject(e) : resolve())));
  }

  private pushLog(taskId: string, attempt: number, line: string): Promise<void> {
    return new Promise((resolve, reject) => {
      const call = this.client.pushLogs(this.md!, { deadline: Date.now() + CALL_MS }, (e) => (e ? reject(e) : resolve()));
      call.write({ taskId, attempt, stream: LogStream.LOG_STREAM_STDOUT, data: Buffer.from(line), atMs: Date.now() });
      call.end();
    });
  }

  private async upload(taskId: string, attempt: number): Promise<void> {
    await new Promise<void>((resolve, reject) => this.client.getUploadOffset({ taskId, attempt }, this.md!, { deadline: Date.now() + CALL_MS }, (e) => (e ? reject(e) : resolve())));
    await new Promise<void>((resolve, reject) => {
      const call = this.client.uploadResult(this.md!, { deadline: Date.now() + CALL_MS }, (e) => (e ? reject(e) : resolve()));
      call.write({ part: { $case: 'header', value: { taskId, attempt, offset: 0, totalSize: RESULT.length } } });
      for (let i = 0; i < RESULT.length; i += CHUNK_SIZE) call.write({ part: { $case: 'chunk', value: RESULT.subarray(i, i + CHUNK_SIZE) } });
      call.write({ part: { $case: 'trailer', value: { size: RESULT.length, sha256: RESULT_SHA } } });
      call.end();
    });
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.reportStream?.end();
    this.sub?.cancel();
  }
}

/** N simulated nodes over ceil(N / perChannel) HTTP/2 connections. */
export class SimFleet {
  private constructor(
    readonly nodes: SimNode[],
    private readonly clients: NodeServiceClient[],
  ) {}

  static create(address: string, n: number, opts: { perChannel: number; reportIntervalMs: number; hooks: FleetHooks; reportOnStream?: boolean }): SimFleet {
    const clients: NodeServiceClient[] = [];
    const nodes: SimNode[] = [];
    for (let i = 0; i < n; i++) {
      if (i % opts.perChannel === 0) {
        // A distinct option per client, or grpc-js would pool them all onto one subchannel.
        clients.push(new NodeServiceClient(address, credentials.createInsecure(), { ...channelOptions, 'bench.channel': clients.length }));
      }
      nodes.push(new SimNode(clients[clients.length - 1]!, `sim-${String(i).padStart(5, '0')}`, 1 + (i % 2), opts.reportIntervalMs, opts.hooks, opts.reportOnStream));
    }
    return new SimFleet(nodes, clients);
  }

  get channels(): number {
    return this.clients.length;
  }

  get slots(): number {
    return this.nodes.reduce((s, n) => s + n.free().taskSlots, 0);
  }

  reportsSent(): number {
    return this.nodes.reduce((s, n) => s + n.reportsSent, 0);
  }

  close(): void {
    for (const n of this.nodes) n.close();
    for (const c of this.clients) c.close();
  }
}
