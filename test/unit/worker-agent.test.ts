// Worker agent behaviour with hand-written fakes of the master connection, the executor and
// the probe (the store is a real SQLite file in a temp dir).
import { test, type TestContext } from 'node:test';
import { FakeExecChannel, FakeExecProcess } from '../helpers/fake-exec.js';
import type { ExecProcess } from '../../src/runtime/exec-process.js';
import { setTimeout as sleep } from 'node:timers/promises';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Metadata, status } from '@grpc/grpc-js';
import net from 'node:net';
import { PassThrough, type Duplex } from 'node:stream';
import { ManualClock } from '../../src/common/clock.js';
import { ConfigError } from '../../src/common/errors.js';
import { createLogger, silentLogger, type Logger } from '../../src/common/logger.js';
import { DataCache } from '../../src/worker/data-cache/data-cache.js';
import { HttpDataSource } from '../../src/worker/data-cache/http-data-source.js';
import { taskDataSource } from '../../src/worker/data-cache/task-data-source.js';
import { DataKind, Isolation, LimitKind, OutcomeKind, TaskState, type DataMount, type LogChunk, type ReplicaStatus, type ResourceReport, type TaskUsage } from '../../src/protocol/gen/hivemind/v1/common.js';
import { formatPipeHello } from '../../src/protocol/gateway-pipe.js';
import type {
  NodeCommand,
  RegisterRequest,
  RegisterResponse,
  SubscribeRequest,
  TaskAssignment,
  TaskUpdate,
  TaskUpdateAck,
  UploadResultResponse,
} from '../../src/protocol/gen/hivemind/v1/node.js';
import { InputChecksumError, type ExecChannel, type LogSink, type MasterConnection, type ReportSink, type SubscriptionHandle } from '../../src/worker/master-connection.js';
import type { HostFacts, HostSample, ResourceProbe } from '../../src/worker/resources/resource-probe.js';
import { WorkerStore } from '../../src/worker/store/worker-store.js';
import { recordHostile } from '../helpers/fault-ledger.js';
import type { ExecRequest, ExecutionResult, ReplicaView, TaskExecution, TaskExecutor } from '../../src/worker/contracts.js';
import { Worker, type WorkerDeps } from '../../src/worker/worker.js';
import type { WorkerOptions } from '../../src/worker/worker-options.js';
import type { LifecycleState } from '../../src/worker/lifecycle.js';

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;

function unavailable(): Error {
  return Object.assign(new Error('14 UNAVAILABLE: master is down'), { code: status.UNAVAILABLE, details: 'master is down' });
}

async function waitFor(what: string, pred: () => boolean, timeoutMs = 4000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

// ------------------------------------------------------------------ fake master

class FakeMaster {
  up = true;
  /** Every UpdateTask the master received and applied, in order. */
  updates: TaskUpdate[] = [];
  /** Updates received again with an already-applied seq (must stay empty). */
  duplicates: TaskUpdate[] = [];
  /** A timeline of calls, to check ordering between kinds of calls. */
  timeline: string[] = [];
  registers: { bearer: string; req: RegisterRequest }[] = [];
  subscribes: SubscribeRequest[] = [];
  reports: ResourceReport[] = [];
  logs: LogChunk[] = [];
  uploads = new Map<string, Buffer>();
  inputs = new Map<string, Buffer>();
  /** Data sets the master serves, by "sha256:…". */
  dataSets = new Map<string, Buffer>();
  acceptBearers = new Set(['enroll-token', 'cred-1']);
  /** The report interval the master asks for at registration (0: none). */
  reportIntervalMs = 0;
  ackFor: (u: TaskUpdate) => Partial<TaskUpdateAck> = () => ({});
  /** When set, every result upload fails with this error (the master refusing it). */
  refuseUploads: Error | undefined;
  uploadCalls = 0;
  /** The ExecSession streams nodes opened, in order. */
  execChannels: FakeExecChannel[] = [];
  private subs = new Set<{ push(cmd: NodeCommand): void; end(err?: Error): void }>();

  readonly factory = (address: string): MasterConnection => {
    assert.equal(address, '127.0.0.1:7999');
    return new FakeConnection(this);
  };

  send(cmd: NodeCommand): void {
    assert.ok(this.subs.size > 0, 'no subscriber to send a command to');
    for (const s of this.subs) s.push(cmd);
  }
  assign(a: Partial<TaskAssignment> & { taskId: string }): void {
    this.send({ command: { $case: 'assign', value: { attempt: 1, spec: spec(), inputSize: 0, inputSha256: '', ...a } } });
  }
  cancel(taskId: string, attempt = 1): void {
    this.send({ command: { $case: 'cancel', value: { taskId, attempt, reason: 'user asked' } } });
  }
  get subscribers(): number {
    return this.subs.size;
  }
  /** Ends every command stream with `err` (as the master does when it removes the node). */
  endAll(err: Error): (() => void)[] {
    return [...this.subs].map((s) => () => s.end(err));
  }
  down(): void {
    this.up = false;
    for (const s of [...this.subs]) s.end(unavailable());
  }
  restore(): void {
    this.up = true;
  }
  check(): void {
    if (!this.up) throw unavailable();
  }
  updatesOf(taskId: string): TaskUpdate[] {
    return this.updates.filter((u) => u.taskId === taskId);
  }
  statesOf(taskId: string): string[] {
    return this.updatesOf(taskId).map((u) => TaskState[u.state]!.replace('TASK_STATE_', ''));
  }
  addSub(s: { push(cmd: NodeCommand): void; end(err?: Error): void }): () => void {
    this.subs.add(s);
    return () => this.subs.delete(s);
  }
}

class FakeConnection implements MasterConnection {
  private closed = false;
  private cleanups: (() => void)[] = [];
  constructor(private readonly m: FakeMaster) {}

  private check(): void {
    if (this.closed) throw Object.assign(new Error('1 CANCELLED: connection closed'), { code: status.CANCELLED });
    this.m.check();
  }

  async register(req: RegisterRequest, bearer: string): Promise<RegisterResponse> {
    this.check();
    this.m.registers.push({ bearer, req });
    this.m.timeline.push('register');
    if (!this.m.acceptBearers.has(bearer)) throw Object.assign(new Error('16 UNAUTHENTICATED: unknown token'), { code: status.UNAUTHENTICATED, details: 'unknown token' });
    return { nodeId: 'node-1', nodeCredential: 'cred-1', reportIntervalMs: this.m.reportIntervalMs, masterVersion: 'test' };
  }

  openReportStream(): ReportSink {
    this.check();
    return { send: (r) => this.m.up && !this.closed && this.m.reports.push(r), close: () => undefined };
  }

  subscribe(req: SubscribeRequest, onCommand: (c: NodeCommand) => void): SubscriptionHandle {
    this.check();
    this.m.subscribes.push(req);
    this.m.timeline.push('subscribe');
    let resolve!: (e: Error | undefined) => void;
    const closed = new Promise<Error | undefined>((r) => (resolve = r));
    const remove = this.m.addSub({ push: onCommand, end: (err) => (remove(), resolve(err)) });
    this.cleanups.push(() => (remove(), resolve(Object.assign(new Error('cancelled'), { code: status.CANCELLED }))));
    return { closed, close: () => (remove(), resolve(undefined)) };
  }

  async updateTask(u: TaskUpdate): Promise<TaskUpdateAck> {
    await Promise.resolve();
    this.check();
    const seen = this.m.updates.some((x) => x.taskId === u.taskId && x.attempt === u.attempt && x.seq >= u.seq);
    if (seen) this.m.duplicates.push(u);
    else {
      this.m.updates.push(u);
      this.m.timeline.push(`update:${u.taskId}:${TaskState[u.state]!.replace('TASK_STATE_', '')}`);
    }
    return { applied: !seen, superseded: false, cancelRequested: false, ...this.m.ackFor(u) };
  }

  async *downloadData(taskId: string, _attempt: number, sha256: string, offset: number, signal: AbortSignal): AsyncGenerator<{ offset: number; data: Uint8Array }> {
    this.check();
    signal.throwIfAborted();
    const data = this.m.dataSets.get(sha256);
    if (!data) throw new Error(`task ${taskId} mounts no data set ${sha256} from the master`);
    this.m.timeline.push(`data:${taskId}:${offset}`);
    if (offset < data.length) yield { offset, data: data.subarray(offset) };
  }

  async downloadInput(taskId: string, _attempt: number, destFile: string, expectedSha256: string, signal: AbortSignal): Promise<number> {
    this.check();
    signal.throwIfAborted();
    const data = this.m.inputs.get(taskId) ?? Buffer.alloc(0);
    await writeFile(destFile, data);
    const sha = createHash('sha256').update(data).digest('hex');
    if (sha !== expectedSha256) throw new InputChecksumError(taskId, expectedSha256, sha);
    this.m.timeline.push(`download:${taskId}`);
    return data.length;
  }

  async uploadResult(taskId: string, _attempt: number, file: string, sha256: string, signal: AbortSignal): Promise<UploadResultResponse> {
    this.check();
    signal.throwIfAborted();
    this.m.uploadCalls++;
    if (this.m.refuseUploads) throw this.m.refuseUploads;
    const data = await readFile(file);
    this.check();
    assert.equal(createHash('sha256').update(data).digest('hex'), sha256);
    this.m.uploads.set(taskId, data);
    this.m.timeline.push(`upload:${taskId}`);
    return { size: data.length, sha256 };
  }

  execSession(): ExecChannel {
    this.check();
    const ch = new FakeExecChannel();
    this.m.execChannels.push(ch);
    return ch;
  }

  pushLogs(): LogSink {
    this.check();
    return {
      write: (c) => (this.m.up ? (this.m.logs.push(c), true) : false),
      get ready() {
        return true;
      },
      broken: false,
      end: async () => undefined,
    };
  }

  close(): void {
    this.closed = true;
    for (const c of this.cleanups) c();
  }
}

// ------------------------------------------------------------------ fake executor / probe

interface Run {
  exec: TaskExecution;
  done: boolean;
  finish(exitCode?: number): void;
}

class FakeExecutor implements TaskExecutor {
  runs = new Map<string, Run>();
  constructor(private readonly spoolDir: () => string) {}

  /** Attempts whose container "an earlier process started" (probe answers 'started'). */
  started = new Set<string>();
  async probe(taskId: string, attempt: number): Promise<'started' | 'not-started'> {
    return this.started.has(`${taskId}#${attempt}`) ? 'started' : 'not-started';
  }

  /** Tasks whose runs end with containers or volumes left behind (Docker was away). */
  leftoverTasks = new Set<string>();
  /** The keep lists reclaim() was called with. */
  reclaims: string[][] = [];
  async reclaim(keep: readonly string[]): Promise<{ containers: string[]; volumes: string[] }> {
    this.reclaims.push([...keep]);
    return { containers: [], volumes: [] };
  }
  async usage(): Promise<TaskUsage[]> {
    return [...this.runs.values()].filter((r) => !r.done).map((r) => ({ taskId: r.exec.taskId, cpuPercent: 50, memoryBytes: 10 * MiB }));
  }

  /** What servicesSupported() answers. */
  servicesSupport: { ok: boolean; reason?: string } = { ok: true };
  async servicesSupported(): Promise<{ ok: boolean; reason?: string }> {
    return this.servicesSupport;
  }
  /** connect() calls, as "taskId#attempt". */
  connects: string[] = [];
  /** A replica's port: an echo (what is written comes back). */
  async connect(taskId: string, attempt: number): Promise<Duplex> {
    this.connects.push(`${taskId}#${attempt}`);
    return new PassThrough();
  }

  /** Commands exec() started, by task id. */
  execs: { taskId: string; request: ExecRequest; proc: FakeExecProcess }[] = [];
  async exec(taskId: string, _attempt: number, request: ExecRequest): Promise<ExecProcess> {
    const proc = new FakeExecProcess();
    this.execs.push({ taskId, request, proc });
    return proc;
  }

  execute(exec: TaskExecution): Promise<ExecutionResult> {
    return new Promise((resolve, reject) => {
      exec.onPhase('pulling');
      exec.onPhase('running');
      exec.onLog('stdout', Buffer.from(`hello from ${exec.taskId}\n`), 1n);
      const result = async (exitCode: number): Promise<ExecutionResult> => {
        const file = path.join(this.spoolDir(), `${exec.taskId}-${exec.attempt}.result.tar.gz`);
        const data = Buffer.from(`result of ${exec.taskId}`);
        await writeFile(file, data);
        return {
          outcome: { kind: OutcomeKind.OUTCOME_KIND_EXITED, exitCode, message: '', durationMs: 42 },
          result: { path: file, size: data.length, sha256: createHash('sha256').update(data).digest('hex') },
          logTail: `hello from ${exec.taskId}\n`,
          ...(this.leftoverTasks.has(exec.taskId) ? { leftovers: true as const } : {}),
        };
      };
      const run: Run = {
        exec,
        done: false,
        finish: (code = 0) => {
          run.done = true;
          void result(code).then(resolve, reject);
        },
      };
      exec.signal.addEventListener('abort', () => {
        run.done = true;
        const kind = exec.signal.reason === 'shutdown' ? OutcomeKind.OUTCOME_KIND_SHUTDOWN : OutcomeKind.OUTCOME_KIND_CANCELLED;
        resolve({ outcome: { kind, exitCode: 137, message: `killed: ${exec.signal.reason}`, durationMs: 7 }, logTail: '' });
      });
      this.runs.set(exec.taskId, run);
    });
  }
}

const facts: HostFacts = {
  hostname: 'test-host',
  os: 'linux',
  osRelease: 'Test OS 1',
  arch: 'x64',
  cpuCores: 4,
  cpuModel: 'Fake CPU',
  memoryBytes: 8 * GiB,
  diskBytes: 100 * GiB,
  gpus: [],
  dockerVersion: '20.10.0',
};

class FakeProbe implements ResourceProbe {
  dockerOk = true;
  constructor(private readonly clock: ManualClock) {}
  async facts(): Promise<HostFacts> {
    return facts;
  }
  async sample(): Promise<HostSample> {
    return {
      atMs: this.clock.now(),
      cpuPercent: 10,
      memoryUsedBytes: GiB,
      memoryTotalBytes: 8 * GiB,
      diskUsedBytes: 1,
      diskTotalBytes: 2,
      netRxBytesPerSec: 0,
      netTxBytesPerSec: 0,
      gpus: [],
      docker: this.dockerOk ? { ok: true, version: '20.10.0' } : { ok: false, version: '', message: 'Cannot connect to the Docker daemon' },
    };
  }
}

function dataMount(over: Partial<DataMount> = {}): DataMount {
  return { sha256: `sha256:${'e'.repeat(64)}`, path: '/models', size: 10, kind: DataKind.DATA_KIND_DIR, url: '', ...over };
}

function spec(memoryBytes = 256 * MiB, cpus = 1) {
  return { image: 'busybox', command: ['true'], env: new Map(), limits: { cpus, memoryBytes, pids: 64, gpus: 0, timeoutMs: 60_000 }, network: 0, maxOutputBytes: 0, data: [] as DataMount[] };
}

// ------------------------------------------------------------------ harness

interface Harness {
  master: FakeMaster;
  executor: FakeExecutor;
  probe: FakeProbe;
  worker: Worker;
  dataDir: string;
  states: LifecycleState[];
}

async function makeWorker(t: TestContext, opts: Partial<WorkerOptions> = {}, shared?: { master: FakeMaster; dataDir: string }, logger: Logger = silentLogger(), more: Partial<WorkerDeps> = {}): Promise<Harness> {
  const dataDir = shared?.dataDir ?? (await mkdtemp(path.join(os.tmpdir(), 'hm-worker-')));
  if (!shared) t.after(() => rm(dataDir, { recursive: true, force: true }));
  const master = shared?.master ?? new FakeMaster();
  const clock = new ManualClock();
  const executor = new FakeExecutor(() => path.join(dataDir, 'spool'));
  const probe = new FakeProbe(clock);
  const deps: WorkerDeps = {
    connectionFactory: master.factory,
    executor,
    store: WorkerStore.open(path.join(dataDir, 'worker.db')),
    probe,
    clock,
    logger,
    ...more,
  };
  const worker = await Worker.create(
    {
      masterAddress: '127.0.0.1:7999',
      enrollmentToken: 'enroll-token',
      dataDir,
      maxTasks: 2,
      reportIntervalMs: 30,
      memoryReserveBytes: GiB,
      drainTimeoutMs: 5_000,
      backoff: { initialMs: 10, maxMs: 40, factor: 2 },
      logFlushMs: 5,
      // A free port: workers of parallel tests never share the default one.
      gatewayPort: 0,
      ...opts,
    },
    deps,
  );
  const states: LifecycleState[] = [];
  worker.on('state-changed', (c) => states.push(c.to));
  t.after(() => worker.close());
  return { master, executor, probe, worker, dataDir, states };
}

// ------------------------------------------------------------------ tests

test('a task runs: updates in order, result uploaded before the terminal update, logs forwarded', async (t) => {
  const h = await makeWorker(t);
  await h.worker.start();
  assert.equal(h.worker.state, 'connected');
  assert.deepEqual(h.states, ['registering', 'connected']);
  assert.equal(h.master.registers[0]!.bearer, 'enroll-token');
  assert.equal(h.master.registers[0]!.req.facts!.maxTasks, 2);
  const identity = JSON.parse(await readFile(path.join(h.dataDir, 'identity.json'), 'utf8')) as { nodeId: string; credential: string };
  assert.deepEqual([identity.nodeId, identity.credential], ['node-1', 'cred-1']);

  h.master.assign({ taskId: 't1' });
  await waitFor('task started', () => h.executor.runs.has('t1'));
  const run = h.executor.runs.get('t1')!;
  assert.deepEqual(run.exec.gpuIndexes, []);
  run.finish(0);
  await waitFor('terminal update', () => h.master.statesOf('t1').includes('SUCCEEDED'));

  assert.deepEqual(h.master.statesOf('t1'), ['ACCEPTED', 'PULLING', 'RUNNING', 'UPLOADING', 'SUCCEEDED']);
  assert.deepEqual(h.master.updatesOf('t1').map((u) => u.seq), [1, 2, 3, 4, 5]);
  const tl = h.master.timeline;
  assert.ok(tl.indexOf('upload:t1') < tl.indexOf('update:t1:SUCCEEDED'), `upload must precede the terminal update: ${tl.join(' ')}`);
  const last = h.master.updatesOf('t1').at(-1)!;
  assert.equal(last.outcome?.kind, OutcomeKind.OUTCOME_KIND_EXITED);
  assert.equal(last.outcome?.resultSha256, createHash('sha256').update('result of t1').digest('hex'));
  assert.equal(h.master.uploads.get('t1')?.toString(), 'result of t1');
  await waitFor('log chunk', () => h.master.logs.length > 0);
  assert.equal(Buffer.from(h.master.logs[0]!.data).toString(), 'hello from t1\n');
  await waitFor('reports', () => h.master.reports.length >= 2);
  assert.equal(h.master.reports.at(-1)!.lifecycleState, 'connected');
  await waitFor('spool cleaned', () => !existsSync(path.join(h.dataDir, 'spool', 't1-1.result.tar.gz')));
  await waitFor('task slot freed', () => h.worker.runningTasks().length === 0);
  assert.equal(h.master.duplicates.length, 0);
});

test('a result the master refuses for its size fails the task OUTPUT_REJECTED at once, without retrying', async (t) => {
  const h = await makeWorker(t);
  await h.worker.start();
  const md = new Metadata();
  md.set('x-hivemind-error', 'RESULT_TOO_LARGE');
  const details = 'result of task t1: total_size 200000000 bytes is over the 103563354-byte limit';
  h.master.refuseUploads = Object.assign(new Error(`3 INVALID_ARGUMENT: ${details}`), { code: status.INVALID_ARGUMENT, details, metadata: md });
  h.master.assign({ taskId: 't1' });
  await waitFor('task started', () => h.executor.runs.has('t1'));
  h.executor.runs.get('t1')!.finish(0);
  await waitFor('terminal update', () => h.master.statesOf('t1').includes('FAILED'));
  assert.deepEqual(h.master.statesOf('t1'), ['ACCEPTED', 'PULLING', 'RUNNING', 'UPLOADING', 'FAILED']);
  const last = h.master.updatesOf('t1').at(-1)!;
  assert.equal(last.outcome?.kind, OutcomeKind.OUTCOME_KIND_OUTPUT_REJECTED);
  assert.match(last.message, /^output rejected by the master: result of task t1: total_size 200000000 bytes is over/);
  assert.equal(h.master.uploadCalls, 1, 'a refusal for size is final: no retry');
});

test('an input archive is downloaded into the spool, verified and given to the executor', async (t) => {
  const h = await makeWorker(t);
  await h.worker.start();
  const input = Buffer.from('input archive bytes');
  h.master.inputs.set('in1', input);
  h.master.assign({ taskId: 'in1', inputSize: input.length, inputSha256: createHash('sha256').update(input).digest('hex') });
  await waitFor('task started', () => h.executor.runs.has('in1'));
  const file = h.executor.runs.get('in1')!.exec.inputFile!;
  assert.equal(path.dirname(file), path.join(h.dataDir, 'spool'));
  assert.deepEqual(await readFile(file), input);
  h.executor.runs.get('in1')!.finish(0);
  await waitFor('done', () => h.master.statesOf('in1').includes('SUCCEEDED'));
  await waitFor('input removed', () => !existsSync(file));

  // A corrupt input (sha mismatch twice) fails the task as INPUT_REJECTED without running it.
  h.master.inputs.set('bad', Buffer.from('tampered'));
  h.master.assign({ taskId: 'bad', inputSize: 8, inputSha256: 'f'.repeat(64) });
  await waitFor('failed', () => h.master.statesOf('bad').includes('FAILED'));
  assert.equal(h.executor.runs.has('bad'), false);
  assert.equal(h.master.updatesOf('bad').at(-1)!.outcome?.kind, OutcomeKind.OUTCOME_KIND_INPUT_REJECTED);
});

test('an assignment no node may run (from an old or hostile master) is REJECTED with the rule it breaks: not run, not an internal error, not logged as an error', async (t) => {
  const lines: { level: number; msg: string }[] = [];
  const sink = new PassThrough();
  sink.on('data', (b: Buffer) => {
    for (const l of b.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(l) as { level: number; msg: string });
  });
  const h = await makeWorker(t, {}, undefined, createLogger({ level: 'debug', destination: sink }));
  await h.worker.start();
  const cases: [string, ReturnType<typeof spec>, RegExp][] = [
    ['nul-image', { ...spec(), image: 'busybox\0' }, /^invalid task spec: spec\.image "busybox\\u0000" contains a control character/],
    ['tiny-cpus', spec(256 * MiB, 1e-9), /^invalid task spec: spec\.limits\.cpus is 1e-9, under the minimum of 0\.01/],
    ['milli-cpus', spec(256 * MiB, 0.001), /^invalid task spec: spec\.limits\.cpus is 0\.001, under the minimum of 0\.01/],
    ['big-arg', { ...spec(), command: ['sh', '-c', 'x'.repeat(200 * 1024)] }, /^invalid task spec: spec\.command\[2\] is 204800 bytes, over the maximum of 131071/],
    ['data-digest', { ...spec(), data: [dataMount({ sha256: 'sha256:../../etc/passwd' })] }, /^invalid task spec: spec\.data\[0\]\.sha256 "sha256:\.\.\/\.\.\/etc\/passwd"/],
    ['data-path', { ...spec(), data: [dataMount({ path: '/data/../etc' })] }, /^invalid task spec: spec\.data\[0\]\.path "\/data\/\.\.\/etc"/],
    // a valid mount, but this worker has no data cache: the master must place it elsewhere
    ['data-no-cache', { ...spec(), data: [dataMount()] }, /^this node runs without a data cache: it cannot run tasks that mount data sets$/],
  ];
  for (const [taskId, s, re] of cases) {
    h.master.assign({ taskId, spec: s });
    await waitFor(`${taskId} rejected`, () => h.master.statesOf(taskId).includes('REJECTED')).catch(() => undefined);
    const refused = h.master.statesOf(taskId).join() === 'REJECTED' && !h.executor.runs.has(taskId);
    recordHostile(`node: assignment with an invalid spec (${taskId})`, !refused);
    assert.deepEqual(h.master.statesOf(taskId), ['REJECTED']);
    assert.match(h.master.updatesOf(taskId)[0]!.message, re);
    assert.equal(h.executor.runs.has(taskId), false);
  }
  // The node keeps serving: a valid task runs.
  h.master.assign({ taskId: 'fine' });
  await waitFor('fine runs', () => h.executor.runs.has('fine'));
  assert.deepEqual(lines.filter((l) => l.level >= 50).map((l) => l.msg), []);
});

test('isolation: the node announces what it offers and refuses a task needing another, before any work', async (t) => {
  const h = await makeWorker(t, { isolations: [Isolation.ISOLATION_GVISOR] });
  await h.worker.start();
  assert.deepEqual(h.master.registers[0]!.req.facts!.isolations, [Isolation.ISOLATION_GVISOR]);
  h.master.assign({ taskId: 'r', spec: { ...spec(), isolation: Isolation.ISOLATION_RUNC } });
  await waitFor('r rejected', () => h.master.statesOf('r').includes('REJECTED'));
  assert.equal(h.master.updatesOf('r')[0]!.message, 'this node does not offer runc isolation (it offers gvisor)');
  assert.equal(h.executor.runs.has('r'), false);
  h.master.assign({ taskId: 'g', spec: { ...spec(), isolation: Isolation.ISOLATION_GVISOR } });
  h.master.assign({ taskId: 'any', spec: spec() });
  await waitFor('both run', () => h.executor.runs.has('g') && h.executor.runs.has('any'));
});

test('isolation: a node offering runc only (the default) refuses a gVisor task', async (t) => {
  const h = await makeWorker(t);
  await h.worker.start();
  assert.deepEqual(h.master.registers[0]!.req.facts!.isolations, [Isolation.ISOLATION_RUNC]);
  h.master.assign({ taskId: 'g', spec: { ...spec(), isolation: Isolation.ISOLATION_GVISOR } });
  await waitFor('g rejected', () => h.master.statesOf('g').includes('REJECTED'));
  assert.equal(h.master.updatesOf('g')[0]!.message, 'this node does not offer gvisor isolation (it offers runc)');
});

test('engine limits: a rootless node announces its engine and what it cannot enforce, and refuses a task setting such a limit (a stale or hostile master) instead of running it unbounded', async (t) => {
  const h = await makeWorker(t, { engine: 'podman-rootless', unenforcedLimits: [LimitKind.LIMIT_KIND_CPUS, LimitKind.LIMIT_KIND_MEMORY, LimitKind.LIMIT_KIND_PIDS] });
  await h.worker.start();
  const facts = h.master.registers[0]!.req.facts!;
  assert.equal(facts.engine, 'podman-rootless');
  assert.deepEqual(facts.unenforcedLimits, [LimitKind.LIMIT_KIND_CPUS, LimitKind.LIMIT_KIND_MEMORY, LimitKind.LIMIT_KIND_PIDS]);
  const cases: [string, ReturnType<typeof spec>, RegExp][] = [
    ['mem', { ...spec(), limits: { cpus: 0, memoryBytes: 64 * MiB, pids: 0, gpus: 0, timeoutMs: 60_000 } }, /^this node's engine \(podman-rootless\) cannot enforce the task's memory \(--memory\) limit; it would run unbounded, so it is refused$/],
    ['all', spec(), /cannot enforce the task's cpus \(--cpus\), memory \(--memory\) and pids \(--pids\) limits/],
  ];
  for (const [taskId, s, re] of cases) {
    h.master.assign({ taskId, spec: s });
    await waitFor(`${taskId} rejected`, () => h.master.statesOf(taskId).includes('REJECTED')).catch(() => undefined);
    const refused = h.master.statesOf(taskId).join() === 'REJECTED' && !h.executor.runs.has(taskId);
    recordHostile(`node: assignment with limits its engine cannot enforce (${taskId})`, !refused);
    assert.deepEqual(h.master.statesOf(taskId), ['REJECTED']);
    assert.match(h.master.updatesOf(taskId)[0]!.message, re);
    assert.equal(h.executor.runs.has(taskId), false);
  }
  // A task setting no limit asked for no bound: it runs.
  h.master.assign({ taskId: 'free', spec: { ...spec(), limits: { cpus: 0, memoryBytes: 0, pids: 0, gpus: 0, timeoutMs: 60_000 } } });
  await waitFor('free runs', () => h.executor.runs.has('free'));
});

test('engine limits: a node on Docker (the default) says so and takes limited tasks', async (t) => {
  const h = await makeWorker(t);
  await h.worker.start();
  assert.equal(h.master.registers[0]!.req.facts!.engine, 'docker');
  assert.deepEqual(h.master.registers[0]!.req.facts!.unenforcedLimits, []);
  h.master.assign({ taskId: 'lim', spec: spec() });
  await waitFor('lim runs', () => h.executor.runs.has('lim'));
});

test('a full node rejects with a reason the master can show', async (t) => {
  const h = await makeWorker(t, { maxTasks: 1, drainTimeoutMs: 50 });
  await h.worker.start();
  h.master.assign({ taskId: 'big', spec: spec(16 * GiB) });
  await waitFor('rejected', () => h.master.statesOf('big').includes('REJECTED'));
  assert.equal(h.master.updatesOf('big')[0]!.message, 'needs 16384 MiB memory, node offers at most 7168 MiB');

  h.master.assign({ taskId: 'a' });
  await waitFor('a runs', () => h.executor.runs.has('a'));
  h.master.assign({ taskId: 'b' });
  await waitFor('b rejected', () => h.master.statesOf('b').includes('REJECTED'));
  assert.equal(h.master.updatesOf('b')[0]!.message, 'all 1 task slots are busy');
  assert.equal(h.executor.runs.has('b'), false);

  // A resent assignment of a running task is not run twice.
  h.master.assign({ taskId: 'a' });
  await new Promise((r) => setTimeout(r, 30));
  assert.deepEqual(h.master.statesOf('a').filter((s) => s === 'ACCEPTED'), ['ACCEPTED']);
});

test('a cancel command aborts the task with reason "cancelled"', async (t) => {
  const h = await makeWorker(t);
  await h.worker.start();
  h.master.assign({ taskId: 'c1' });
  await waitFor('running', () => h.executor.runs.has('c1'));
  h.master.cancel('c1');
  await waitFor('cancelled', () => h.master.statesOf('c1').includes('CANCELLED'));
  assert.equal(h.executor.runs.get('c1')!.exec.signal.reason, 'cancelled');
  const last = h.master.updatesOf('c1').at(-1)!;
  assert.equal(last.state, TaskState.TASK_STATE_CANCELLED);
  assert.equal(last.outcome?.kind, OutcomeKind.OUTCOME_KIND_CANCELLED);
  assert.equal(h.master.uploads.has('c1'), false);
});

test('pause refuses new tasks and tells the master at once; running ones go on; resume takes work again', async (t) => {
  const h = await makeWorker(t, { reportIntervalMs: 60_000 });
  await h.worker.start();
  h.master.assign({ taskId: 'r1' });
  await waitFor('r1 runs', () => h.executor.runs.has('r1'));
  const reportsBefore = h.master.reports.length;
  const changes: boolean[] = [];
  h.worker.on('accepting-changed', (a) => changes.push(a));
  h.worker.pause();
  assert.equal(h.worker.accepting, false);
  await waitFor('a report right away saying it does not accept', () => h.master.reports.slice(reportsBefore).some((r) => !r.accepting));
  h.master.assign({ taskId: 'p1' });
  await waitFor('p1 rejected', () => h.master.statesOf('p1').includes('REJECTED'));
  assert.equal(h.master.updatesOf('p1')[0]!.message, 'node is paused by its operator');
  assert.equal(h.executor.runs.get('r1')!.exec.signal.aborted, false, 'the running task goes on');
  h.worker.resume();
  await waitFor('a report saying it accepts again', () => h.master.reports.at(-1)!.accepting);
  h.master.assign({ taskId: 'p2' });
  await waitFor('p2 runs', () => h.executor.runs.has('p2'));
  assert.deepEqual(changes, [false, true]);
});

test('cancelTask() from the node itself cancels a running task; unknown ids are reported as such', async (t) => {
  const h = await makeWorker(t);
  await h.worker.start();
  h.master.assign({ taskId: 'k1' });
  await waitFor('running', () => h.executor.runs.has('k1'));
  assert.equal(h.worker.cancelTask('nope'), false);
  assert.equal(h.worker.cancelTask('k1'), true);
  await waitFor('cancelled', () => h.master.statesOf('k1').includes('CANCELLED'));
  assert.equal(h.executor.runs.get('k1')!.exec.signal.reason, 'cancelled');
});

test('each report scores the interval it closes and keeps a running total', async (t) => {
  const h = await makeWorker(t);
  const points: { score: number; total: number }[] = [];
  h.worker.on('contribution', (p) => points.push(p));
  await h.worker.start();
  await waitFor('three contribution points', () => points.length >= 3);
  for (let i = 1; i < points.length; i++) assert.ok(Math.abs(points[i]!.total - (points[i - 1]!.total + points[i]!.score)) < 1e-9);
  assert.ok(points.every((p) => p.score >= 8), 'the base score is at least 10 x 0.8');
});

test('removed by the operator: running tasks are cancelled, no reconnect, the data dir refuses to start again', async (t) => {
  const h = await makeWorker(t);
  await h.worker.start();
  h.master.assign({ taskId: 'r1' });
  await waitFor('r1 runs', () => h.executor.runs.has('r1'));
  const removed: string[] = [];
  h.worker.on('removed', (why) => removed.push(why));
  const subscribesBefore = h.master.subscribes.length;
  const md = new Metadata();
  md.set('x-hivemind-error', 'NODE_REMOVED');
  const err = Object.assign(new Error('7 PERMISSION_DENIED: node node-1 was removed'), { code: status.PERMISSION_DENIED, details: 'node node-1 was removed', metadata: md });
  for (const end of h.master.endAll(err)) end();
  await waitFor('the removed event', () => removed.length === 1);
  assert.equal(removed[0], 'node node-1 was removed');
  await waitFor('r1 cancelled', () => h.executor.runs.get('r1')!.exec.signal.aborted);
  assert.equal(h.executor.runs.get('r1')!.exec.signal.reason, 'shutdown');
  await new Promise((r) => setTimeout(r, 150)); // several backoff periods
  assert.equal(h.master.subscribes.length, subscribesBefore, 'it does not reconnect');
  await h.worker.close();
  await assert.rejects(
    makeWorker(t, {}, { master: h.master, dataDir: h.dataDir }),
    (e: unknown) => e instanceof ConfigError && /was removed from master/.test(e.message) && /fresh --data-dir/.test(e.message),
  );
});

test('leftovers: after registering, the worker reclaims what no task owns and clears debris from its spool', async (t) => {
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'hm-worker-'));
  t.after(() => rm(dataDir, { recursive: true, force: true }));
  const { mkdir } = await import('node:fs/promises');
  await mkdir(path.join(dataDir, 'spool'), { recursive: true });
  await writeFile(path.join(dataDir, 'spool', 'old-task-1.tar.gz'), 'debris of a killed run');
  await writeFile(path.join(dataDir, 'spool', 'old-task-1.input.tar.gz'), 'debris');
  const h = await makeWorker(t, { reclaimIntervalMs: 50 }, { master: new FakeMaster(), dataDir });
  await h.worker.start();
  await waitFor('a reclaim', () => h.executor.reclaims.length >= 1);
  await waitFor('the spool emptied', () => !existsSync(path.join(dataDir, 'spool', 'old-task-1.tar.gz')) && !existsSync(path.join(dataDir, 'spool', 'old-task-1.input.tar.gz')));
  h.master.assign({ taskId: 'keepme' });
  await waitFor('keepme runs', () => h.executor.runs.has('keepme'));
  await waitFor('a periodic reclaim that keeps the running task', () => h.executor.reclaims.some((k) => k.includes('keepme')));
});

test('an ack saying the attempt is superseded stops the task', async (t) => {
  const h = await makeWorker(t);
  h.master.ackFor = (u) => ({ superseded: u.taskId === 's1' && u.state === TaskState.TASK_STATE_RUNNING });
  await h.worker.start();
  h.master.assign({ taskId: 's1' });
  await waitFor('stopped', () => h.master.statesOf('s1').includes('CANCELLED'));
  assert.equal(h.executor.runs.get('s1')!.exec.signal.reason, 'superseded');
});

test('losing the master never kills a running task; the outbox and the upload are delivered after reconnect, in order, once', async (t) => {
  const h = await makeWorker(t);
  await h.worker.start();
  h.master.assign({ taskId: 'd1' });
  await waitFor('running delivered', () => h.master.statesOf('d1').includes('RUNNING'));

  h.master.down();
  await waitFor('reconnecting', () => h.worker.state === 'reconnecting');
  const run = h.executor.runs.get('d1')!;
  // The task ends while the master is away: its updates wait in the outbox.
  run.finish(0);
  await new Promise((r) => setTimeout(r, 150));
  assert.equal(run.exec.signal.aborted, false, 'a master outage must not abort a task');
  assert.deepEqual(h.master.statesOf('d1'), ['ACCEPTED', 'PULLING', 'RUNNING']);
  assert.equal(h.master.uploads.has('d1'), false);
  assert.ok(h.states.includes('reconnecting'));

  const subscribesBefore = h.master.subscribes.length;
  h.master.restore();
  await waitFor('terminal update after reconnect', () => h.master.statesOf('d1').includes('SUCCEEDED'));
  await waitFor('connected again', () => h.worker.state === 'connected');

  assert.deepEqual(h.master.statesOf('d1'), ['ACCEPTED', 'PULLING', 'RUNNING', 'UPLOADING', 'SUCCEEDED']);
  assert.deepEqual(h.master.updatesOf('d1').map((u) => u.seq), [1, 2, 3, 4, 5]);
  assert.deepEqual(h.master.duplicates, []);
  const tl = h.master.timeline;
  const resubscribe = tl.indexOf('subscribe', tl.indexOf('update:d1:RUNNING') + 1);
  assert.ok(tl.indexOf('update:d1:UPLOADING') < resubscribe, `outbox flushed before subscribing: ${tl.join(' ')}`);
  assert.ok(tl.indexOf('upload:d1') < resubscribe, `pending upload resumed before subscribing: ${tl.join(' ')}`);
  assert.ok(h.master.subscribes.length > subscribesBefore);
  assert.equal(h.master.registers.at(-1)!.bearer, 'cred-1', 'a reconnect authenticates with the node credential');
  assert.equal(h.master.uploads.get('d1')?.toString(), 'result of d1');
});

test('drain rejects new work, waits for running tasks, then cancels the rest with SHUTDOWN', async (t) => {
  const h = await makeWorker(t, { drainTimeoutMs: 300 });
  await h.worker.start();
  h.master.assign({ taskId: 'quick' });
  h.master.assign({ taskId: 'slow' });
  await waitFor('both run', () => h.executor.runs.has('quick') && h.executor.runs.has('slow'));

  const drained = h.worker.drain();
  assert.equal(h.worker.state, 'draining');
  assert.equal(h.worker.accepting, false);
  h.master.assign({ taskId: 'late' });
  await waitFor('late rejected', () => h.master.statesOf('late').includes('REJECTED'));
  assert.equal(h.master.updatesOf('late')[0]!.message, 'node is draining');

  h.executor.runs.get('quick')!.finish(0);
  await waitFor('quick done', () => h.master.statesOf('quick').includes('SUCCEEDED'));
  assert.equal(h.executor.runs.get('slow')!.exec.signal.aborted, false, 'drain waits before cancelling');

  const started = Date.now();
  await drained;
  assert.ok(Date.now() - started >= 150, 'the slow task was given the drain timeout');
  assert.equal(h.executor.runs.get('slow')!.exec.signal.reason, 'shutdown');
  await waitFor('slow cancelled', () => h.master.statesOf('slow').includes('CANCELLED'));
  assert.equal(h.master.updatesOf('slow').at(-1)!.outcome?.kind, OutcomeKind.OUTCOME_KIND_SHUTDOWN);
  assert.equal(h.executor.runs.get('quick')!.exec.signal.aborted, false);

  await h.worker.close();
  await h.worker.close(); // idempotent
  assert.equal(h.worker.state, 'stopped');
  assert.deepEqual(h.states.slice(-2), ['draining', 'stopped']);
});

test('a restart reuses identity.json and refreshes facts with the credential', async (t) => {
  const first = await makeWorker(t);
  await first.worker.start();
  await first.worker.close();
  const second = await makeWorker(t, { enrollmentToken: undefined }, { master: first.master, dataDir: first.dataDir });
  await second.worker.start();
  assert.deepEqual(first.master.registers.map((r) => r.bearer), ['enroll-token', 'cred-1']);
  assert.equal(second.worker.nodeId, 'node-1');
});

test('updates produced while the master was away are delivered on the next start', async (t) => {
  const first = await makeWorker(t, { drainTimeoutMs: 100 });
  await first.worker.start();
  first.master.assign({ taskId: 'r1' });
  await waitFor('running', () => first.master.statesOf('r1').includes('RUNNING'));
  first.master.down();
  await waitFor('reconnecting', () => first.worker.state === 'reconnecting');
  // The task exits while the master is away and waits to upload; close() then cancels it
  // after the drain timeout. UPLOADING and CANCELLED stay in the outbox of the SQLite file.
  first.executor.runs.get('r1')!.finish(3);
  await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual(first.master.statesOf('r1'), ['ACCEPTED', 'PULLING', 'RUNNING']);
  await first.worker.close();
  assert.deepEqual(first.master.statesOf('r1'), ['ACCEPTED', 'PULLING', 'RUNNING']);

  first.master.restore();
  const second = await makeWorker(t, { enrollmentToken: undefined }, { master: first.master, dataDir: first.dataDir });
  await second.worker.start();
  await waitFor('the end reaches the master', () => first.master.statesOf('r1').includes('CANCELLED'));
  assert.deepEqual(first.master.statesOf('r1'), ['ACCEPTED', 'PULLING', 'RUNNING', 'UPLOADING', 'CANCELLED']);
  assert.deepEqual(first.master.updatesOf('r1').map((u) => u.seq), [1, 2, 3, 4, 5]);
  assert.deepEqual(first.master.duplicates, []);
});

test('a worker killed mid-task takes the task up again on restart: a started container is reattached, an unstarted attempt runs again', async (t) => {
  const first = await makeWorker(t);
  await first.worker.start();
  first.master.assign({ taskId: 'k1' });
  first.master.assign({ taskId: 'k2' });
  await waitFor('both running', () => first.master.statesOf('k1').includes('RUNNING') && first.master.statesOf('k2').includes('RUNNING'));
  // kill -9: nothing of the first process runs its shutdown; only the SQLite file survives.
  first.master.down();
  await waitFor('reconnecting', () => first.worker.state === 'reconnecting');
  first.master.restore();

  const second = await makeWorker(t, { enrollmentToken: undefined }, { master: first.master, dataDir: first.dataDir });
  second.executor.started.add('k1#1'); // k1's container survived; k2's never started
  await second.worker.start();
  await waitFor('both taken up', () => second.executor.runs.has('k1') && second.executor.runs.has('k2'));
  assert.equal(second.executor.runs.get('k1')!.exec.recovery, 'reattach');
  assert.equal(second.executor.runs.get('k2')!.exec.recovery, 'restart');
  // The master hears they still run here: the subscription lists them.
  await waitFor('subscribed with both', () => first.master.subscribes.at(-1)?.running.map((r) => r.taskId).sort().join() === 'k1,k2');
  second.executor.runs.get('k1')!.finish(0);
  second.executor.runs.get('k2')!.finish(0);
  await waitFor('both delivered', () => ['k1', 'k2'].every((id) => first.master.statesOf(id).includes('SUCCEEDED')));
  for (const id of ['k1', 'k2']) {
    assert.equal(first.master.uploads.get(id)?.toString(), `result of ${id}`);
    assert.equal(first.master.statesOf(id).filter((s) => s === 'ACCEPTED').length, 1, 'accepted once');
  }
  assert.deepEqual(first.master.duplicates, []);
  await second.worker.close();
  await first.worker.close();
});

test('a refused enrollment token fails start() with the master\'s reason', async (t) => {
  const h = await makeWorker(t, { enrollmentToken: 'wrong' });
  await assert.rejects(h.worker.start(), /UNAUTHENTICATED/);
});

test('a master unreachable at start: start() returns, the worker keeps trying and connects later', async (t) => {
  const master = new FakeMaster();
  master.up = false;
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'hm-worker-'));
  t.after(() => rm(dataDir, { recursive: true, force: true }));
  const h = await makeWorker(t, {}, { master, dataDir });
  await h.worker.start();
  assert.equal(h.worker.state, 'reconnecting');
  master.restore();
  await waitFor('connected', () => h.worker.state === 'connected');
  assert.equal(master.subscribers, 1);
});

test('close() keeps reporting while it drains: the master must not declare the node lost', async (t) => {
  const h = await makeWorker(t, { drainTimeoutMs: 5_000 });
  await h.worker.start();
  h.master.assign({ taskId: 'long' });
  await waitFor('running', () => h.executor.runs.has('long'));
  const closed = h.worker.close();
  await waitFor('draining', () => h.worker.state === 'draining');
  const before = h.master.reports.length;
  // several report intervals (30 ms) pass while the task still runs
  await new Promise((r) => setTimeout(r, 200));
  assert.ok(h.master.reports.length >= before + 3, `reports went on during the drain (${h.master.reports.length - before} sent)`);
  assert.equal(h.master.reports.at(-1)!.lifecycleState, 'draining');
  assert.equal(h.master.reports.at(-1)!.accepting, false);
  assert.deepEqual(h.master.reports.at(-1)!.tasks, [{ taskId: 'long', cpuPercent: 50, memoryBytes: 10 * MiB }], 'the running task reports its own usage');
  h.executor.runs.get('long')!.finish(0);
  await closed;
  assert.deepEqual(h.master.statesOf('long').slice(-1), ['SUCCEEDED']);
});

test('the report interval follows the master unless configured, and is never longer than the master\'s', async (t) => {
  const reportsIn400ms = async (reportIntervalMs: number | undefined, masterIntervalMs: number) => {
    const h = await makeWorker(t, { reportIntervalMs });
    h.master.reportIntervalMs = masterIntervalMs;
    await h.worker.start();
    await waitFor('registered', () => h.master.registers.length > 0);
    const before = h.master.reports.length;
    await new Promise((r) => setTimeout(r, 400));
    const n = h.master.reports.length - before;
    await h.worker.close();
    return n;
  };
  const follows = await reportsIn400ms(undefined, 20);
  assert.ok(follows >= 8, `not configured: the master's 20 ms (about 20 reports in 400 ms), got ${follows}`);
  const capped = await reportsIn400ms(60_000, 20);
  assert.ok(capped >= 8, `configured 60 s, longer than the master's 20 ms: the master's wins, or the node would be marked offline; got ${capped}`);
  const own = await reportsIn400ms(20, 60_000);
  assert.ok(own >= 8, `configured shorter than the master's: its own 20 ms, got ${own}`);
});

test('what a task left behind while Docker was away is reclaimed at the first report that finds Docker answering', async (t) => {
  const h = await makeWorker(t);
  await h.worker.start();
  await waitFor('the reclaim after registering', () => h.executor.reclaims.length >= 1);
  h.executor.leftoverTasks.add('lt');
  h.probe.dockerOk = false;
  h.master.assign({ taskId: 'lt' });
  await waitFor('lt runs', () => h.executor.runs.has('lt'));
  h.executor.runs.get('lt')!.finish(0);
  await waitFor('lt succeeded', () => h.master.statesOf('lt').includes('SUCCEEDED'));
  const before = h.executor.reclaims.length;
  await new Promise((r) => setTimeout(r, 200)); // several 30 ms reports with Docker away
  assert.equal(h.executor.reclaims.length, before, 'no reclaim while Docker does not answer');
  h.probe.dockerOk = true;
  await waitFor('a reclaim once Docker answers', () => h.executor.reclaims.length > before);
  assert.ok(!h.executor.reclaims.at(-1)!.includes('lt'), 'the finished task is not kept');
  const after = h.executor.reclaims.length;
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(h.executor.reclaims.length, after, 'one reclaim was enough: no more until the periodic one');
});

const MODEL = Buffer.from('model weights');
const MODEL_HEX = createHash('sha256').update(MODEL).digest('hex');

/** A worker with a real data cache in its data dir, fetching from the fake master. */
async function workerWithCache(t: TestContext, master: FakeMaster, dataDir: string, opts: Partial<WorkerOptions> = {}): Promise<{ h: Harness; cache: DataCache }> {
  master.dataSets.set(`sha256:${MODEL_HEX}`, MODEL);
  let h: Harness | undefined;
  const cache = await DataCache.open({
    dir: path.join(dataDir, 'cache'),
    budgetBytes: MiB,
    source: taskDataSource({ withMaster: (signal, what, fn) => h!.worker.withMaster(signal, what, fn), http: new HttpDataSource(), logger: silentLogger() }),
    clock: new ManualClock(),
    logger: silentLogger(),
    unpack: async () => undefined,
    hashEntry: async () => MODEL_HEX,
  });
  t.after(() => cache.close());
  h = await makeWorker(t, opts, { master, dataDir }, silentLogger(), { dataCache: cache });
  return { h, cache };
}

test('a task mounting a data set: fetched from the master through the cache, bound for the executor, reported held, dropped when the master says so', async (t) => {
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'hm-wcache-'));
  t.after(() => rm(dataDir, { recursive: true, force: true }));
  const { h, cache } = await workerWithCache(t, new FakeMaster(), dataDir);
  const bytes = MODEL;
  const hex = MODEL_HEX;
  const cacheDir = path.join(dataDir, 'cache');
  await h.worker.start();
  const data = [{ sha256: `sha256:${hex}`, path: '/data/w.bin', size: bytes.length, kind: DataKind.DATA_KIND_FILE, url: '' }];
  h.master.assign({ taskId: 'd1', spec: { ...spec(), data } });
  await waitFor('task started', () => h.executor.runs.has('d1'));
  assert.deepEqual(h.executor.runs.get('d1')!.exec.dataMounts, [{ hostPath: path.join(cacheDir, 'entries', hex), containerPath: '/data/w.bin' }]);
  assert.ok(h.master.timeline.includes('data:d1:0'), 'fetched from the master for this task');
  assert.deepEqual(h.master.updatesOf('d1').find((u) => u.data)?.data, { receivedBytes: bytes.length, totalBytes: bytes.length });
  assert.equal(cache.list()[0]!.leases, 1, 'held while the task runs');
  h.executor.runs.get('d1')!.finish(0);
  await waitFor('terminal update', () => h.master.statesOf('d1').includes('SUCCEEDED'));
  assert.equal(cache.list()[0]!.leases, 0, 'released when the attempt ended');
  await waitFor('a report listing it', () => h.master.reports.some((r) => r.cache?.held.some((e) => e.sha256 === `sha256:${hex}`)));
  const last = h.master.reports.at(-1)!.cache!;
  assert.equal(last.budgetBytes, MiB);
  assert.equal(last.freeBytes + last.evictableBytes, MiB, 'free and evictable add up: the entry is unused');
  h.master.send({ command: { $case: 'dropData', value: { sha256: [`sha256:${hex}`, 'sha256:not-a-digest'] } } });
  await waitFor('dropped', () => cache.list().length === 0);
});

test('after a restart, a reattached task holds its data set again before the worker subscribes', async (t) => {
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'hm-wcache-'));
  t.after(() => rm(dataDir, { recursive: true, force: true }));
  const master = new FakeMaster();
  const first = await workerWithCache(t, master, dataDir);
  await first.h.worker.start();
  const data = [{ sha256: `sha256:${MODEL_HEX}`, path: '/data/w.bin', size: MODEL.length, kind: DataKind.DATA_KIND_FILE, url: '' }];
  master.assign({ taskId: 'r1', spec: { ...spec(), data } });
  await waitFor('running', () => master.statesOf('r1').includes('RUNNING'));
  // kill -9: the first process's leases die with it (the next open clears them)
  master.down();
  await waitFor('reconnecting', () => first.h.worker.state === 'reconnecting');
  first.cache.close();
  master.restore();
  const second = await workerWithCache(t, master, dataDir, { enrollmentToken: undefined });
  assert.equal(second.cache.list()[0]!.leases, 0, 'a fresh start holds nothing');
  second.h.executor.started.add('r1#1');
  let leasesAtSubscribe: number | undefined;
  const subscribe = master.subscribes.push.bind(master.subscribes);
  master.subscribes.push = (...req) => {
    leasesAtSubscribe ??= second.cache.list()[0]!.leases;
    return subscribe(...req);
  };
  await second.h.worker.start();
  await waitFor('reattached', () => second.h.executor.runs.has('r1'));
  assert.equal(second.h.executor.runs.get('r1')!.exec.recovery, 'reattach');
  assert.equal(leasesAtSubscribe, 1, 'leased again before the master could send new work');
  assert.deepEqual(second.h.executor.runs.get('r1')!.exec.dataMounts, [{ hostPath: path.join(dataDir, 'cache', 'entries', MODEL_HEX), containerPath: '/data/w.bin' }]);
  assert.equal(master.timeline.filter((e) => e.startsWith('data:r1')).length, 1, 'not fetched again');
  assert.equal(master.statesOf('r1').filter((st) => st === 'ACCEPTED').length, 2, 'the first run\'s acceptance and its progress, none after the restart (the task was RUNNING)');
  await second.h.worker.close();
  await first.h.worker.close();
});

// ------------------------------------------------------------------ service replicas

/** A replica's spec as the master sends it: a role, and no timeout (replicas run until stopped). */
function replicaSpec() {
  const base = spec();
  return { ...base, limits: { ...base.limits, timeoutMs: 0 }, service: { service: 'web', replica: 2, port: 8080, healthPath: '/healthz', graceMs: 1_000 } };
}

function replicaStatus(over: Partial<ReplicaStatus> = {}): ReplicaStatus {
  return { healthy: false, restarts: 0, lastExit: '', lastExitAtMs: 0, healthMessage: '', restartAtMs: 0, running: true, ...over };
}

/** Through the node's gateway pipe on loopback: the answer line and what came back after it. */
function pipeCall(port: number, key: string, taskId: string, payload: string): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    let got = '';
    const timer = setTimeout(() => s.destroy(), 3_000);
    s.on('error', () => undefined);
    s.on('data', (c: Buffer) => {
      got += c.toString();
      if (got.startsWith('OK\n') && got.length >= 3 + payload.length) s.destroy();
    });
    s.on('close', () => {
      clearTimeout(timer);
      resolve(got);
    });
    s.on('connect', () => s.write(formatPipeHello({ key, taskId, attempt: 1 }) + payload));
  });
}

test('a service replica: the pipe is offered at Subscribe and reaches it, statuses are coalesced, no upload, CANCELLED when cancelled', async (t) => {
  const h = await makeWorker(t);
  const views: ReplicaView[] = [];
  h.worker.on('replica-status', (v) => views.push(v));
  await h.worker.start();
  const gateway = h.master.subscribes[0]!.gateway;
  assert.ok(gateway && gateway.port > 0, 'the subscription offers the gateway pipe');
  assert.match(gateway.key, /^[0-9a-f]{64}$/);
  assert.equal(h.worker.gateway?.port, gateway.port);

  h.master.assign({ taskId: 'r1', spec: replicaSpec() });
  await waitFor('replica started', () => h.executor.runs.has('r1'));
  const exec = h.executor.runs.get('r1')!.exec;
  assert.ok(exec.onReplica, 'a replica execution gets onReplica');
  const replicaUpdates = () => h.master.updatesOf('r1').filter((u) => u.replica);

  exec.onReplica(replicaStatus({ healthMessage: 'connection refused' }));
  await waitFor('first status at once', () => replicaUpdates().length === 1);
  // Same health, same restarts: coalesced into one update a second later, the latest.
  for (let i = 1; i <= 5; i++) exec.onReplica(replicaStatus({ healthMessage: `refused ${i}` }));
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(replicaUpdates().length, 1, 'not sent at once');
  await waitFor('the latest, after the interval', () => replicaUpdates().length === 2, 3_000);
  assert.equal(replicaUpdates()[1]!.replica!.healthMessage, 'refused 5');
  // A change of health or a restart goes at once.
  exec.onReplica(replicaStatus({ healthy: true }));
  await waitFor('healthy at once', () => replicaUpdates().length === 3);
  exec.onReplica(replicaStatus({ healthy: true, restarts: 1, lastExit: 'exited with code 3' }));
  await waitFor('restart at once', () => replicaUpdates().length === 4);
  assert.ok(replicaUpdates().every((u) => u.state === TaskState.TASK_STATE_RUNNING));
  assert.equal(views.length, 8, 'listeners hear every status');
  assert.deepEqual(h.worker.replicas().map((r) => [r.taskId, r.service, r.index, r.status?.restarts]), [['r1', 'web', 2, 1]]);

  // The master's gateway reaches the replica through the pipe; another attempt is not running here.
  assert.equal(await pipeCall(gateway.port, gateway.key, 'r1', 'ping'), 'OK\nping');
  assert.equal(await pipeCall(gateway.port, gateway.key, 'r9', 'ping'), 'ERR replica r9#1 is not running on this node\n');
  assert.deepEqual(h.executor.connects, ['r1#1']);

  h.master.send({ command: { $case: 'cancel', value: { taskId: 'r1', attempt: 1, reason: 'scaled down' } } });
  await waitFor('cancelled', () => h.master.statesOf('r1').includes('CANCELLED'));
  assert.ok(!h.master.statesOf('r1').includes('UPLOADING'));
  assert.equal(h.master.uploadCalls, 0, 'a replica uploads no result');
  assert.equal(h.master.updatesOf('r1').at(-1)!.outcome?.kind, OutcomeKind.OUTCOME_KIND_CANCELLED);
  // A status the executor sent while stopping does not follow the terminal update.
  exec.onReplica(replicaStatus());
  await new Promise((r) => setTimeout(r, 1_200));
  assert.equal(h.master.updatesOf('r1').at(-1)!.state, TaskState.TASK_STATE_CANCELLED);
  assert.deepEqual(h.worker.replicas(), []);
});

test('--no-services: no gateway pipe at Subscribe, replica assignments refused; batch tasks run as ever', async (t) => {
  const h = await makeWorker(t, { services: false });
  await h.worker.start();
  assert.equal(h.master.subscribes[0]!.gateway, undefined);
  assert.equal(h.worker.gateway, undefined);
  h.master.assign({ taskId: 'r1', spec: replicaSpec() });
  await waitFor('rejected', () => h.master.statesOf('r1').includes('REJECTED'));
  assert.equal(h.master.updatesOf('r1')[0]!.message, 'this node does not host services');
  assert.ok(!h.executor.runs.has('r1'));
  h.master.assign({ taskId: 't1' });
  await waitFor('batch task runs', () => h.executor.runs.has('t1'));
  h.executor.runs.get('t1')!.finish(0);
  await waitFor('batch task delivered', () => h.master.statesOf('t1').includes('SUCCEEDED'));
});

test('a host the runtime cannot run services on, or a gateway port in use: no pipe, replicas refused with the reason', async (t) => {
  const h = await makeWorker(t);
  h.executor.servicesSupport = { ok: false, reason: 'nsenter is not installed' };
  await h.worker.start();
  assert.equal(h.master.subscribes[0]!.gateway, undefined);
  h.master.assign({ taskId: 'r1', spec: replicaSpec() });
  await waitFor('rejected', () => h.master.statesOf('r1').includes('REJECTED'));
  assert.equal(h.master.updatesOf('r1')[0]!.message, 'this node does not host services: nsenter is not installed');

  const blocker = net.createServer();
  await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
  t.after(() => new Promise((r) => blocker.close(r)));
  const busy = (blocker.address() as net.AddressInfo).port;
  const h2 = await makeWorker(t, { gatewayPort: busy });
  await h2.worker.start();
  assert.equal(h2.worker.state, 'connected', 'the node runs on without services');
  assert.equal(h2.master.subscribes[0]!.gateway, undefined);
  h2.master.assign({ taskId: 'r2', spec: replicaSpec() });
  await waitFor('rejected', () => h2.master.statesOf('r2').includes('REJECTED'));
  assert.match(h2.master.updatesOf('r2')[0]!.message, new RegExp(`^this node does not host services: cannot listen for the gateway pipe on 127\\.0\\.0\\.1:${busy}: the port is in use`));
});

test('drain keeps a service replica running for its handover: the master cancels it, the batch task finishes, no SHUTDOWN', async (t) => {
  const h = await makeWorker(t, { handoverWaitMs: 60_000 });
  await h.worker.start();
  h.master.assign({ taskId: 'r1', spec: replicaSpec() });
  h.master.assign({ taskId: 't1' });
  await waitFor('both started', () => h.executor.runs.has('r1') && h.executor.runs.has('t1'));
  const reportsBefore = h.master.reports.length;
  const draining = h.worker.drain();
  await waitFor('the master hears at once that the node does not accept', () => h.master.reports.slice(reportsBefore).some((r) => !r.accepting));
  h.executor.runs.get('t1')!.finish(0);
  await waitFor('batch task delivered', () => h.master.statesOf('t1').includes('SUCCEEDED'));
  await sleep(100);
  assert.equal(h.executor.runs.get('r1')!.exec.signal.aborted, false, 'the replica serves on after the batch task, until handed over');
  assert.ok(h.worker.gateway !== undefined, 'its gateway pipe still listens');
  h.master.cancel('r1');
  await draining;
  assert.equal(h.executor.runs.get('r1')!.exec.signal.reason, 'cancelled');
  assert.equal(h.master.updatesOf('r1').at(-1)!.state, TaskState.TASK_STATE_CANCELLED);
});

test('drain stops a replica nobody took over once the handover wait has passed and no batch task is left (SHUTDOWN), closing the pipe first', async (t) => {
  const h = await makeWorker(t, { handoverWaitMs: 200 });
  await h.worker.start();
  h.master.assign({ taskId: 'r1', spec: replicaSpec() });
  await waitFor('started', () => h.executor.runs.has('r1'));
  const started = Date.now();
  await h.worker.drain();
  const waited = Date.now() - started;
  assert.ok(waited >= 180 && waited < 4_000, `the replica was stopped after the handover wait, not the drain timeout (${waited} ms)`);
  assert.equal(h.worker.gateway, undefined, 'the gateway pipe closed before the replica was stopped');
  await waitFor('replica stopped', () => h.master.statesOf('r1').includes('CANCELLED'));
  const last = h.master.updatesOf('r1').at(-1)!;
  assert.equal(last.outcome?.kind, OutcomeKind.OUTCOME_KIND_SHUTDOWN);
  assert.equal(last.message, 'the node is shutting down: the replica was stopped');
});

test('drain: a replica outlives the handover wait while a batch task runs, and is stopped with it at the drain timeout', async (t) => {
  const h = await makeWorker(t, { handoverWaitMs: 50, drainTimeoutMs: 400 });
  await h.worker.start();
  h.master.assign({ taskId: 'r1', spec: replicaSpec() });
  h.master.assign({ taskId: 't1' });
  await waitFor('both started', () => h.executor.runs.has('r1') && h.executor.runs.has('t1'));
  const draining = h.worker.drain();
  await sleep(200);
  assert.equal(h.executor.runs.get('r1')!.exec.signal.aborted, false, 'a batch task is left: the replica goes on');
  await draining;
  assert.equal(h.executor.runs.get('r1')!.exec.signal.reason, 'shutdown');
  assert.equal(h.executor.runs.get('t1')!.exec.signal.reason, 'shutdown');
});

// ------------------------------------------------------------------ exec

function execOpen(taskId: string, sessionId = 'e'.repeat(32)): NodeCommand {
  return { command: { $case: 'exec', value: { sessionId, taskId, attempt: 1, start: { target: '', command: ['sh', '-c', 'echo hi'], tty: false, stdin: false, size: undefined } } } };
}

test('exec into a running task: offered at Subscribe, relayed over its own stream, recorded in the history, counted', async (t) => {
  const h = await makeWorker(t);
  await h.worker.start();
  assert.equal(h.master.subscribes[0]!.exec, true);
  h.master.assign({ taskId: 't1' });
  await waitFor('task started', () => h.executor.runs.has('t1'));
  h.master.send(execOpen('t1'));
  await waitFor('the command', () => h.executor.execs.length === 1);
  const ch = h.master.execChannels[0]!;
  assert.equal(ch.attached(), 'e'.repeat(32));
  h.executor.execs[0]!.proc.say('stdout', 'hi\n');
  h.executor.execs[0]!.proc.finish(0);
  await ch.closed;
  assert.equal(ch.text('stdout'), 'hi\n');
  assert.deepEqual(ch.exit(), { code: 0, error: '' });
  assert.deepEqual(h.worker.execCounters, { started: 1, refused: 0, active: 0 });
  const store = WorkerStore.open(path.join(h.dataDir, 'worker.db'));
  t.after(() => store.close());
  const [row] = store.execSessions('t1', 1);
  assert.deepEqual(row, { sessionId: 'e'.repeat(32), taskId: 't1', attempt: 1, command: ['sh', '-c', 'echo hi'], tty: false, startedAt: row!.startedAt, endedAt: row!.endedAt, exitCode: 0, error: '' });
  h.executor.runs.get('t1')!.finish(0);
});

test('exec sessions end with their task (cancelled): the command is killed, the exit says the task ended', async (t) => {
  const h = await makeWorker(t);
  await h.worker.start();
  h.master.assign({ taskId: 't1' });
  await waitFor('task started', () => h.executor.runs.has('t1'));
  h.master.send(execOpen('t1'));
  await waitFor('the command', () => h.executor.execs.length === 1);
  h.master.cancel('t1');
  const ch = h.master.execChannels[0]!;
  await ch.closed;
  assert.ok(h.executor.execs[0]!.proc.killed);
  assert.deepEqual(ch.exit(), { code: 137, error: 'the task ended' });
});

test('--no-exec: Subscribe says exec: false and every exec is refused, saying why; nothing runs', async (t) => {
  const h = await makeWorker(t, { exec: false });
  await h.worker.start();
  assert.equal(h.master.subscribes[0]!.exec, false);
  h.master.assign({ taskId: 't1' });
  await waitFor('task started', () => h.executor.runs.has('t1'));
  h.master.send(execOpen('t1'));
  await waitFor('the stream', () => h.master.execChannels.length === 1);
  const ch = h.master.execChannels[0]!;
  await ch.closed;
  assert.deepEqual(ch.exit(), { code: 126, error: "this node's operator does not allow exec (--no-exec)" });
  assert.equal(h.executor.execs.length, 0);
  assert.deepEqual(h.worker.execCounters, { started: 0, refused: 1, active: 0 });
  h.executor.runs.get('t1')!.finish(0);
});
