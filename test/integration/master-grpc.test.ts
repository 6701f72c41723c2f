// A real Master on 127.0.0.1:0 with a temp data dir, driven by a scripted fake worker built on
// NodeServiceClient and by AdminClient: the protocol end to end, over real gRPC and SQLite.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as netConnect } from 'node:net';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Client as GrpcClient, Metadata as MetadataClass, credentials, status, type ClientReadableStream, type ClientWritableStream, type Metadata, type ServiceError } from '@grpc/grpc-js';
import { AdminClient, MasterCallError } from '../../src/client/admin-client.js';
import { recordHostile } from '../helpers/fault-ledger.js';
import { Master, type MasterOptions } from '../../src/master/master.js';
import { resultArchiveBound } from '../../src/protocol/result-bound.js';
import { MAX_REPORT_BYTES } from '../../src/protocol/node-limits.js';
import { bearerMetadata } from '../../src/protocol/auth-metadata.js';
import {
  LogChunk as LogChunkCodec, LogStream, type LogChunk, OutcomeKind, TaskState, type Capacity, type DataChunk, type ResourceReport,
} from '../../src/protocol/gen/hivemind/v1/common.js';
import {
  NodeServiceClient, SubscribeRequest, type NodeCommand, type RegisterResponse, type ReportAck, type TaskUpdate, type TaskUpdateAck,
  type LogOffsetResponse, type UploadOffsetResponse, type UploadResultRequest, type UploadResultResponse,
} from '../../src/protocol/gen/hivemind/v1/node.js';
import { AdminServiceClient, FetchResultRequest, StreamLogsRequest, TaskInfo as TaskInfoCodec, type TaskInfo } from '../../src/protocol/gen/hivemind/v1/admin.js';
import type { Isolation, LimitKind } from '../../src/protocol/gen/hivemind/v1/common.js';
import Database from 'better-sqlite3';
import { PgDriver } from '../../src/master/sql/pg-driver.js';
import { SqliteDriver } from '../../src/master/sql/sqlite-driver.js';
import type { SqlDriver, StoreLocation } from '../../src/master/sql/sql-driver.js';
import { masterStoreOption } from '../helpers/test-store.js';
import type { ReadStream } from 'node:fs';
import { connect as http2Connect, type ClientHttp2Session, type ClientHttp2Stream } from 'node:http2';
import { BlobStore } from '../../src/master/blob-store.js';

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

interface Harness {
  master: Master;
  admin: AdminClient;
  dir: string;
  address: string;
  adminToken: string;
  /** PostgreSQL's when the suite runs against it (HIVEMIND_TEST_STORE=postgres); else master.db in dir. */
  store: StoreLocation | undefined;
}

async function startMaster(t: TestContext, opts: Partial<MasterOptions> = {}, dir?: string): Promise<Harness> {
  const dataDir = dir ?? (await mkdtemp(join(tmpdir(), 'hm-master-')));
  const store = opts.store ?? masterStoreOption().store;
  const master = await Master.create({ listenAddress: '127.0.0.1:0', gatewayListen: '127.0.0.1:0', dataDir, shutdownGraceMs: 200, ...opts, ...(store ? { store } : {}) });
  const address = await master.start();
  const adminToken = (await readFile(master.adminTokenPath, 'utf8')).trim();
  const admin = AdminClient.connect(address, adminToken);
  t.after(async () => {
    admin.close();
    await master.close();
    if (!dir) await rm(dataDir, { recursive: true, force: true });
  });
  return { master, admin, dir: dataDir, address, adminToken, store };
}

const FREE: Capacity = { cpus: 4, memoryBytes: 8 * 1024 ** 3, gpuIndexes: [], taskSlots: 2 };

/** A scripted worker: each protocol call as a promise, the command stream as a queue. */
class FakeWorker {
  readonly client: NodeServiceClient;
  nodeId = '';
  credential = '';
  private md: Metadata | undefined;
  private reportCall: ClientWritableStream<ResourceReport> | undefined;
  private seq = 0;
  private sub: ClientReadableStream<NodeCommand> | undefined;
  private commands: NodeCommand[] = [];
  private waiters: (() => void)[] = [];

  constructor(address: string) {
    this.client = new NodeServiceClient(address, credentials.createInsecure());
  }

  register(secret: string, name = 'fake-1'): Promise<RegisterResponse> {
    return new Promise((resolve, reject) => {
      this.client.register({ name, facts: { hostname: 'fake-host', os: 'linux', osRelease: '', arch: 'x64', cpuCores: 4, cpuModel: 'fake', memoryBytes: 8 * 1024 ** 3, diskBytes: 0, gpus: [], dockerVersion: '20.10', labels: new Map(), workerVersion: 'test', allowsEgress: false, maxTasks: 2, isolations: [], engine: '', unenforcedLimits: [] } },
        bearerMetadata(secret), (err, res) => {
          if (err) return reject(err);
          this.nodeId = res.nodeId;
          this.credential = res.nodeCredential;
          this.md = bearerMetadata(res.nodeCredential);
          resolve(res);
        });
    });
  }

  report(free: Capacity = FREE): void {
    this.reportCall ??= this.client.report(this.md!, () => undefined);
    this.reportCall.write({
      seq: ++this.seq, atMs: Date.now(), cpuPercent: 1, memoryUsedBytes: 0, memoryTotalBytes: 0, diskUsedBytes: 0, diskTotalBytes: 0,
      netRxBytesPerSec: 0, netTxBytesPerSec: 0, gpus: [], dockerOk: true, dockerMessage: '', tasks: [], free, lifecycleState: 'connected', accepting: true,
    });
  }

  /** One report as a SendReport call (what workers send to a master that has it). */
  sendReport(over: Partial<ResourceReport> = {}, md: Metadata = this.md!): Promise<ReportAck> {
    const r: ResourceReport = {
      seq: ++this.seq, atMs: Date.now(), cpuPercent: 1, memoryUsedBytes: 0, memoryTotalBytes: 0, diskUsedBytes: 0, diskTotalBytes: 0,
      netRxBytesPerSec: 0, netTxBytesPerSec: 0, gpus: [], dockerOk: true, dockerMessage: '', tasks: [], free: FREE, lifecycleState: 'connected', accepting: true, ...over,
    };
    return new Promise((resolve, reject) => this.client.sendReport(r, md, (e, res) => (e ? reject(e) : resolve(res))));
  }

  subscribe(running: { taskId: string; attempt: number }[] = [], free: Capacity = FREE): void {
    this.sub?.cancel();
    this.sub = this.client.subscribe({ running, free, accepting: true, exec: false }, this.md!);
    this.sub.on('data', (c: NodeCommand) => {
      this.commands.push(c);
      this.waiters.splice(0).forEach((w) => w());
    });
    this.sub.on('error', () => undefined);
  }

  async nextCommand(timeoutMs = 5000): Promise<NodeCommand> {
    const deadline = Date.now() + timeoutMs;
    while (this.commands.length === 0) {
      if (Date.now() > deadline) throw new Error('no command from the master');
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 50);
      });
    }
    return this.commands.shift()!;
  }

  update(u: Partial<TaskUpdate> & Pick<TaskUpdate, 'taskId' | 'attempt' | 'seq' | 'state'>): Promise<TaskUpdateAck> {
    return new Promise((resolve, reject) =>
      this.client.updateTask({ message: '', atMs: Date.now(), outcome: undefined, pull: undefined, accepting: true, ...u }, this.md!, (e, r) => (e ? reject(e) : resolve(r))));
  }

  async download(taskId: string, attempt: number, offset = 0): Promise<Buffer> {
    const parts: Buffer[] = [];
    for await (const c of this.client.downloadInput({ taskId, attempt, offset }, this.md!)) parts.push((c as DataChunk).data);
    return Buffer.concat(parts);
  }

  uploadOffset(taskId: string, attempt: number): Promise<UploadOffsetResponse> {
    return new Promise((resolve, reject) => this.client.getUploadOffset({ taskId, attempt }, this.md!, (e, r) => (e ? reject(e) : resolve(r))));
  }

  upload(msgs: UploadResultRequest[]): Promise<UploadResultResponse> {
    return new Promise((resolve, reject) => {
      const call = this.client.uploadResult(this.md!, (e, r) => (e ? reject(e) : resolve(r)));
      for (const m of msgs) call.write(m);
      call.end();
    });
  }

  pushLogs(taskId: string, attempt: number, lines: string[]): Promise<number> {
    return new Promise((resolve, reject) => {
      const call = this.client.pushLogs(this.md!, (e, r) => (e ? reject(e) : resolve(r.chunks)));
      for (const l of lines) call.write({ taskId, attempt, stream: LogStream.LOG_STREAM_STDOUT, data: Buffer.from(l), atMs: Date.now() });
      call.end();
    });
  }

  /** Pushes chunks as given (offsets and all); resolves with the master's count, rejects on its error. */
  pushChunks(chunks: LogChunk[]): Promise<number> {
    return new Promise((resolve, reject) => {
      const call = this.client.pushLogs(this.md!, (e, r) => (e ? reject(e) : resolve(r.chunks)));
      for (const c of chunks) call.write(c);
      call.end();
    });
  }

  logOffset(taskId: string, attempt: number): Promise<LogOffsetResponse> {
    return new Promise((resolve, reject) => this.client.getLogOffset({ taskId, attempt }, this.md!, (e, r) => (e ? reject(e) : resolve(r))));
  }

  close(): void {
    this.sub?.cancel();
    this.reportCall?.end();
    this.client.close();
  }
}

async function worker(t: TestContext, h: Harness, name = 'fake-1'): Promise<FakeWorker> {
  const w = new FakeWorker(h.address);
  t.after(() => w.close());
  const { token } = await h.admin.createToken();
  await w.register(token, name);
  return w;
}

async function waitFor<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** A master, a fake node reporting and subscribed, and a busybox task assigned to it (attempt 1). */
async function assignedTask(t: TestContext, opts: Partial<MasterOptions> = {}): Promise<{ h: Harness; w: FakeWorker; taskId: string }> {
  const h = await startMaster(t, opts);
  const w = await worker(t, h);
  w.report();
  w.subscribe();
  const taskId = await h.admin.submit({ image: 'busybox' });
  await assignmentOf(w);
  return { h, w, taskId };
}

/**
 * A raw HTTP/2 call of a server-streaming admin method whose reader never reads (paused): past
 * the default 64 KiB window nothing leaves the master, so whatever else it prepares stays in it.
 */
function pausedAdminStream(session: ClientHttp2Session, adminToken: string, method: string, request: Uint8Array): ClientHttp2Stream {
  const frame = Buffer.alloc(5 + request.length);
  frame.writeUInt32BE(request.length, 1);
  Buffer.from(request).copy(frame, 5);
  const s = session.request({ ':method': 'POST', ':path': `/hivemind.v1.AdminService/${method}`, 'content-type': 'application/grpc', te: 'trailers', authorization: `Bearer ${adminToken}` });
  s.on('error', () => undefined);
  s.end(frame);
  s.pause();
  return s;
}

async function assignmentOf(w: FakeWorker) {
  const cmd = await w.nextCommand();
  assert.equal(cmd.command?.$case, 'assign', `expected an assignment, got ${JSON.stringify(cmd)}`);
  return cmd.command.value;
}

const grpcCode = (err: unknown) => (err as Partial<ServiceError>).code;

test('SendReport: a report as a call of its own counts like one on the stream and gets the same checks (credential, bounds, rate)', async (t) => {
  const h = await startMaster(t, { reportIntervalMs: 60_000 });
  const w = new FakeWorker(h.address);
  t.after(() => w.close());
  await w.register((await h.admin.createToken({})).token);
  const ack = await w.sendReport({ cpuPercent: 37 });
  assert.ok(ack.lastSeq > 0, 'acknowledged with the report\'s seq');
  const [node] = await h.admin.listNodes();
  assert.equal(node!.online, true);
  const bad = await w.sendReport({ cpuPercent: 250 }).then(() => undefined, (e: unknown) => e);
  recordHostile('SendReport: cpu_percent 250', grpcCode(bad) !== status.INVALID_ARGUMENT);
  assert.equal(grpcCode(bad), status.INVALID_ARGUMENT);
  assert.match((bad as ServiceError).details, /cpu_percent/);
  const stranger = await w.sendReport({}, bearerMetadata('hmn1.not-a-real-credential')).then(() => undefined, (e: unknown) => e);
  recordHostile('SendReport: an unknown node credential', grpcCode(stranger) !== status.UNAUTHENTICATED);
  assert.equal(grpcCode(stranger), status.UNAUTHENTICATED);
  // The Report stream's rate: at a 60 s interval, 600 a minute; a flood past it is refused.
  let refused: unknown;
  for (let i = 0; i < 700 && !refused; i++) refused = await w.sendReport().then(() => undefined, (e: unknown) => e);
  recordHostile('SendReport: a flood of 700 reports in a minute', grpcCode(refused) !== status.RESOURCE_EXHAUSTED);
  assert.equal(grpcCode(refused), status.RESOURCE_EXHAUSTED);
});

test('registration: wrong or spent tokens are refused; a credential refreshes the same node', async (t) => {
  const h = await startMaster(t);
  const w = new FakeWorker(h.address);
  t.after(() => w.close());
  await assert.rejects(w.register('hm1.not-a-real-token'), (e) => grpcCode(e) === status.UNAUTHENTICATED && /unknown token/.test((e as ServiceError).details));
  const { token, uses } = await h.admin.createToken({ uses: 1 });
  assert.equal(uses, 1);
  const first = await w.register(token);
  assert.ok(first.nodeId && first.nodeCredential.length > 20);
  await assert.rejects(w.register(token), (e) => grpcCode(e) === status.UNAUTHENTICATED && /used up/.test((e as ServiceError).details));
  const again = await w.register(first.nodeCredential, 'renamed');
  assert.equal(again.nodeId, first.nodeId);
  const nodes = await h.admin.listNodes();
  assert.equal(nodes.length, 1);
  assert.equal(nodes[0]!.name, 'renamed');
  // The admin API is closed to anyone without the admin token.
  const intruder = AdminClient.connect(h.address, 'hma1.wrong');
  t.after(() => intruder.close());
  await assert.rejects(intruder.listTasks(), (e) => e instanceof MasterCallError && e.status === status.UNAUTHENTICATED);
  // Plain credentials are never stored.
  const db = h.store ? Buffer.from(storedText(t, h)) : await readFile(join(h.dir, 'master.db'));
  assert.equal(db.includes(Buffer.from(first.nodeCredential)), false);
  assert.equal(db.includes(Buffer.from(token)), false);
});

test('a task flows from submit to a fetched result: input, idempotent updates, logs, resumable upload', async (t) => {
  const h = await startMaster(t);
  const input = randomBytes(600 * 1024); // spans several chunks
  const inputFile = join(h.dir, 'input.tar.gz');
  await writeFile(inputFile, input);

  const taskId = await h.admin.submit({ image: 'busybox', command: ['sh', '-c', 'echo hi'] }, { inputFile });
  let info = await h.admin.getTask(taskId);
  assert.equal(info.state, TaskState.TASK_STATE_QUEUED);
  assert.equal(info.inputSize, input.length);
  await waitFor('queue reason', async () => ((await h.admin.getTask(taskId)).queueReason === 'no online node' ? true : undefined));

  const watched: TaskInfo[] = [];
  const watching = (async () => {
    for await (const ti of h.admin.watchTask(taskId)) watched.push(ti);
  })();
  const logText: string[] = [];
  const following = (async () => {
    for await (const c of h.admin.streamLogs(taskId, { follow: true })) logText.push(c.data.toString());
  })();

  const w = await worker(t, h);
  w.report();
  w.subscribe();
  const a = await assignmentOf(w);
  assert.equal(a.taskId, taskId);
  assert.equal(a.attempt, 1);
  assert.equal(a.inputSha256, sha256(input));
  assert.deepEqual(a.spec?.command, ['sh', '-c', 'echo hi']);

  const got = await w.download(taskId, 1);
  assert.equal(sha256(got), sha256(input));
  const tail = await w.download(taskId, 1, input.length - 10);
  assert.deepEqual(tail, input.subarray(input.length - 10));

  assert.deepEqual(await w.update({ taskId, attempt: 1, seq: 1, state: TaskState.TASK_STATE_ACCEPTED }), { applied: true, superseded: false, cancelRequested: false });
  assert.deepEqual(await w.update({ taskId, attempt: 1, seq: 2, state: TaskState.TASK_STATE_RUNNING }), { applied: true, superseded: false, cancelRequested: false });
  // A resend after a reconnect is acknowledged but not applied twice.
  assert.deepEqual(await w.update({ taskId, attempt: 1, seq: 2, state: TaskState.TASK_STATE_RUNNING }), { applied: false, superseded: false, cancelRequested: false });
  assert.equal((await w.update({ taskId, attempt: 1, seq: 1, state: TaskState.TASK_STATE_ACCEPTED })).applied, false);
  info = await h.admin.getTask(taskId);
  assert.equal(info.state, TaskState.TASK_STATE_RUNNING);
  assert.equal(info.events.filter((e) => e.state === TaskState.TASK_STATE_RUNNING).length, 1);
  assert.ok(info.startedAtMs > 0);

  assert.equal(await w.pushLogs(taskId, 1, ['hello ', 'world\n']), 2);

  const result = randomBytes(700 * 1024);
  const half = 300 * 1024;
  const outcome = { kind: OutcomeKind.OUTCOME_KIND_EXITED, exitCode: 0, message: '', durationMs: 5, resultSize: result.length, resultSha256: sha256(result) };
  // The terminal update must not come before the result is stored.
  await assert.rejects(w.update({ taskId, attempt: 1, seq: 3, state: TaskState.TASK_STATE_SUCCEEDED, outcome }), (e) => grpcCode(e) === status.FAILED_PRECONDITION);

  // Session 1 breaks off after the first half (no trailer): the master keeps what it got.
  await assert.rejects(w.upload([
    { part: { $case: 'header', value: { taskId, attempt: 1, offset: 0, totalSize: result.length } } },
    { part: { $case: 'chunk', value: result.subarray(0, half) } },
  ]), (e) => grpcCode(e) === status.INVALID_ARGUMENT);
  assert.deepEqual(await w.uploadOffset(taskId, 1), { offset: half, complete: false, sha256: '' });
  // A session that does not start at the held offset is refused.
  await assert.rejects(w.upload([{ part: { $case: 'header', value: { taskId, attempt: 1, offset: 0, totalSize: result.length } } }]), (e) => grpcCode(e) === status.FAILED_PRECONDITION);
  // Session 2 resumes from the offset.
  const done = await w.upload([
    { part: { $case: 'header', value: { taskId, attempt: 1, offset: half, totalSize: result.length } } },
    { part: { $case: 'chunk', value: result.subarray(half, half + 200 * 1024) } },
    { part: { $case: 'chunk', value: result.subarray(half + 200 * 1024) } },
    { part: { $case: 'trailer', value: { size: result.length, sha256: sha256(result) } } },
  ]);
  assert.deepEqual(done, { size: result.length, sha256: sha256(result) });
  assert.deepEqual(await w.uploadOffset(taskId, 1), { offset: result.length, complete: true, sha256: sha256(result) });

  assert.equal((await w.update({ taskId, attempt: 1, seq: 3, state: TaskState.TASK_STATE_SUCCEEDED, outcome })).applied, true);
  assert.equal((await w.update({ taskId, attempt: 1, seq: 3, state: TaskState.TASK_STATE_SUCCEEDED, outcome })).applied, false);

  await watching;
  await following;
  assert.equal(watched.at(-1)!.state, TaskState.TASK_STATE_SUCCEEDED);
  assert.ok(watched.some((x) => x.state === TaskState.TASK_STATE_RUNNING));
  assert.equal(logText.join(''), 'hello world\n');
  const replay: string[] = [];
  for await (const c of h.admin.streamLogs(taskId)) replay.push(c.data.toString());
  assert.equal(replay.join(''), 'hello world\n');

  // Fetch: an earlier interrupted download left a partial; the fetch resumes from it.
  const dest = join(h.dir, 'out.tar.gz');
  await writeFile(`${dest}.partial`, result.subarray(0, 100_000));
  const fetched = await h.admin.fetchResult(taskId, dest);
  assert.equal(fetched.resumedFrom, 100_000);
  assert.equal(fetched.sha256, sha256(result));
  assert.equal(sha256(await readFile(dest)), sha256(result));
  await assert.rejects(stat(`${dest}.partial`), { code: 'ENOENT' });
  // A destination in a directory that does not exist is a clear error (it was an unhandled stream error).
  await assert.rejects(h.admin.fetchResult(taskId, join(h.dir, 'no-such-dir', 'out.tar.gz')), /cannot write .*no-such-dir.*: its directory does not exist/);
});

test('an upload whose sha256 does not match is discarded with a clear error', async (t) => {
  const h = await startMaster(t);
  const w = await worker(t, h);
  w.report();
  w.subscribe();
  const taskId = await h.admin.submit({ image: 'busybox' });
  const a = await assignmentOf(w);
  assert.equal(a.inputSize, 0);
  await w.update({ taskId, attempt: 1, seq: 1, state: TaskState.TASK_STATE_UPLOADING });
  const data = Buffer.from('not what the trailer says');
  await assert.rejects(w.upload([
    { part: { $case: 'header', value: { taskId, attempt: 1, offset: 0, totalSize: data.length } } },
    { part: { $case: 'chunk', value: data } },
    { part: { $case: 'trailer', value: { size: data.length, sha256: sha256(Buffer.from('other')) } } },
  ]), (e) => grpcCode(e) === status.INVALID_ARGUMENT && /sha256 mismatch/.test((e as ServiceError).details));
  assert.equal((await w.uploadOffset(taskId, 1)).offset, 0);
});

const CHUNK = 256 * 1024;
/** An upload session: header, `data` in 256 KiB chunks, trailer (size and sha256 of `data` unless given). */
function uploadMsgs(taskId: string, attempt: number, data: Buffer, o: { offset?: number; totalSize?: number; trailer?: { size: number; sha256: string } } = {}): UploadResultRequest[] {
  const msgs: UploadResultRequest[] = [{ part: { $case: 'header', value: { taskId, attempt, offset: o.offset ?? 0, totalSize: o.totalSize ?? data.length } } }];
  for (let at = 0; at < data.length; at += CHUNK) msgs.push({ part: { $case: 'chunk', value: data.subarray(at, at + CHUNK) } });
  msgs.push({ part: { $case: 'trailer', value: o.trailer ?? { size: data.length, sha256: sha256(data) } } });
  return msgs;
}
const hivemindCode = (e: unknown) => (e as ServiceError).metadata?.get('x-hivemind-error')[0];
const EXIT_0 = { kind: OutcomeKind.OUTCOME_KIND_EXITED, exitCode: 0, message: '', durationMs: 5, resultSize: 0, resultSha256: '' };

test('a result upload past its declared size or the task\'s output cap is refused while streaming, and nothing of it is kept', async (t) => {
  const h = await startMaster(t);
  const w = await worker(t, h);
  w.report();
  w.subscribe();
  const MiB = 1024 * 1024;
  const taskId = await h.admin.submit({ image: 'busybox', maxOutputBytes: MiB });
  await assignmentOf(w);
  await w.update({ taskId, attempt: 1, seq: 1, state: TaskState.TASK_STATE_UPLOADING });
  const nothingKept = async () => {
    assert.deepEqual(await readdir(join(h.dir, 'results')), [], 'no partial or result file is left');
    assert.deepEqual(await w.uploadOffset(taskId, 1), { offset: 0, complete: false, sha256: '' });
  };

  // 64 MiB sent under a header that declared 10 bytes (the trailer owns up to the real size).
  const big = randomBytes(64 * MiB);
  const overDeclared = await w.upload(uploadMsgs(taskId, 1, big, { totalSize: 10 })).then(() => undefined, (e: unknown) => e);
  recordHostile('result upload: 64 MiB under a declared total_size of 10', overDeclared === undefined);
  assert.equal(grpcCode(overDeclared), status.INVALID_ARGUMENT);
  assert.equal(hivemindCode(overDeclared), 'RESULT_TOO_LARGE');
  assert.match((overDeclared as ServiceError).details, /received \d+ bytes, more than the 10 bytes the header declared \(total_size\)/);
  await nothingKept();

  // An honest declaration over the task's bound is refused at the header, before any byte lands.
  const bound = resultArchiveBound(MiB);
  const overCap = await w.upload([{ part: { $case: 'header', value: { taskId, attempt: 1, offset: 0, totalSize: bound + 1 } } }, { part: { $case: 'chunk', value: big.subarray(0, CHUNK) } }])
    .then(() => undefined, (e: unknown) => e);
  recordHostile('result upload: total_size over the task\'s max_output_bytes bound', overCap === undefined);
  assert.equal(grpcCode(overCap), status.INVALID_ARGUMENT);
  assert.equal(hivemindCode(overCap), 'RESULT_TOO_LARGE');
  assert.match((overCap as ServiceError).details, new RegExp(`total_size ${bound + 1} bytes is over the ${bound}-byte limit for a compressed result \\(the task's max_output_bytes of 1\\.0 MiB`));
  await nothingKept();

  // A partial held from an earlier session does not survive a session that breaks the rules.
  const result = randomBytes(300 * 1024);
  await assert.rejects(w.upload(uploadMsgs(taskId, 1, result).slice(0, 2)), (e) => grpcCode(e) === status.INVALID_ARGUMENT);
  assert.equal((await w.uploadOffset(taskId, 1)).offset, CHUNK);
  const resumedOver = await w.upload(uploadMsgs(taskId, 1, result.subarray(CHUNK), { offset: CHUNK, totalSize: CHUNK + 10 })).then(() => undefined, (e: unknown) => e);
  recordHostile('result upload: a resumed session past its declared total_size', resumedOver === undefined);
  assert.equal(hivemindCode(resumedOver), 'RESULT_TOO_LARGE');
  await nothingKept();

  // The honest upload of the same task still goes through and the task succeeds.
  assert.deepEqual(await w.upload(uploadMsgs(taskId, 1, result)), { size: result.length, sha256: sha256(result) });
  assert.equal((await w.update({ taskId, attempt: 1, seq: 2, state: TaskState.TASK_STATE_SUCCEEDED, outcome: EXIT_0 })).applied, true);
  const info = await h.admin.getTask(taskId);
  assert.equal(info.state, TaskState.TASK_STATE_SUCCEEDED);
  assert.equal(info.outcome?.resultSha256, sha256(result), 'the outcome names the stored result');
});

test('SUCCEEDED without a stored result is refused: the task stays where it was', async (t) => {
  const { h, w, taskId } = await assignedTask(t);
  await w.update({ taskId, attempt: 1, seq: 1, state: TaskState.TASK_STATE_RUNNING });
  const claimed = await w.update({ taskId, attempt: 1, seq: 2, state: TaskState.TASK_STATE_SUCCEEDED, outcome: EXIT_0 }).then((ack) => ack, (e: unknown) => e as ServiceError);
  const applied = 'applied' in claimed && claimed.applied;
  recordHostile('task update: SUCCEEDED with no result uploaded', applied);
  assert.equal(grpcCode(claimed), status.FAILED_PRECONDITION);
  assert.match((claimed as ServiceError).details, /SUCCEEDED means a verified result is stored, and none is: upload the result \(UploadResult\) before the terminal update/);
  assert.equal((await h.admin.getTask(taskId)).state, TaskState.TASK_STATE_RUNNING);
  // The node may still end it honestly.
  assert.equal((await w.update({ taskId, attempt: 1, seq: 3, state: TaskState.TASK_STATE_FAILED, outcome: { ...EXIT_0, kind: OutcomeKind.OUTCOME_KIND_OUTPUT_REJECTED, message: 'no output' } })).applied, true);
  assert.equal((await h.admin.getTask(taskId)).state, TaskState.TASK_STATE_FAILED);
});

test('a result uploaded after the task ended is refused and never served', async (t) => {
  const { h, w, taskId } = await assignedTask(t);
  await w.update({ taskId, attempt: 1, seq: 1, state: TaskState.TASK_STATE_RUNNING });
  await w.update({ taskId, attempt: 1, seq: 2, state: TaskState.TASK_STATE_FAILED, outcome: { ...EXIT_0, exitCode: 1, message: 'exited with code 1' } });
  const late = randomBytes(10_000);
  const offset = await w.uploadOffset(taskId, 1).then(() => undefined, (e: unknown) => e);
  const upload = await w.upload(uploadMsgs(taskId, 1, late)).then(() => undefined, (e: unknown) => e);
  recordHostile('result upload: after the task FAILED', upload === undefined);
  for (const e of [offset, upload]) {
    assert.equal(grpcCode(e), status.FAILED_PRECONDITION);
    assert.match((e as ServiceError).details, /is already FAILED; a result uploaded after the terminal state is not accepted/);
  }
  assert.deepEqual(await readdir(join(h.dir, 'results')), []);
  await assert.rejects(h.admin.fetchResult(taskId, join(h.dir, 'late.tar.gz')), /the task has no result \(state FAILED\)/);
});

test('task states only move forward: a backwards update with a higher seq is not applied', async (t) => {
  const { h, w, taskId } = await assignedTask(t);
  await w.update({ taskId, attempt: 1, seq: 1, state: TaskState.TASK_STATE_ACCEPTED });
  await w.update({ taskId, attempt: 1, seq: 2, state: TaskState.TASK_STATE_RUNNING });
  const back = await w.update({ taskId, attempt: 1, seq: 3, state: TaskState.TASK_STATE_ACCEPTED });
  const rejectLate = await w.update({ taskId, attempt: 1, seq: 4, state: TaskState.TASK_STATE_REJECTED, message: 'changed my mind' });
  let info = await h.admin.getTask(taskId);
  recordHostile('task update: RUNNING → ACCEPTED with a higher seq', back.applied || info.state !== TaskState.TASK_STATE_RUNNING);
  recordHostile('task update: REJECTED after RUNNING (requeue of started work)', rejectLate.applied || info.attempt !== 1);
  assert.deepEqual(back, { applied: false, superseded: false, cancelRequested: false });
  assert.deepEqual(rejectLate, { applied: false, superseded: false, cancelRequested: false });
  assert.equal(info.state, TaskState.TASK_STATE_RUNNING);
  assert.equal(info.nodeId, w.nodeId);
  assert.deepEqual(info.events.map((e) => e.state), [TaskState.TASK_STATE_QUEUED, TaskState.TASK_STATE_ASSIGNED, TaskState.TASK_STATE_ACCEPTED, TaskState.TASK_STATE_RUNNING]);
  // Forward again: the worker's flow goes on (a repeated state is a harmless tick).
  assert.equal((await w.update({ taskId, attempt: 1, seq: 5, state: TaskState.TASK_STATE_RUNNING })).applied, true);
  assert.equal((await w.update({ taskId, attempt: 1, seq: 6, state: TaskState.TASK_STATE_UPLOADING })).applied, true);
  info = await h.admin.getTask(taskId);
  assert.equal(info.state, TaskState.TASK_STATE_UPLOADING);
});

test('submit validation names the problem', async (t) => {
  const h = await startMaster(t);
  const bad = async (spec: Parameters<AdminClient['submit']>[0], re: RegExp) => {
    const accepted = await h.admin.submit(spec).then(() => true, () => false);
    recordHostile(`task spec: ${re.source}`, accepted);
    await assert.rejects(h.admin.submit(spec), (e) => e instanceof MasterCallError && e.status === status.INVALID_ARGUMENT && re.test(e.message));
  };
  const limits = { cpus: 0, memoryBytes: 0, pids: 0, gpus: 0, timeoutMs: 0 };
  await bad({ image: '' }, /image is empty/);
  await bad({ image: 'busybox', limits: { ...limits, cpus: -1 } }, /limits\.cpus/);
  await bad({ image: 'busybox', limits: { ...limits, cpus: 1e9 } }, /limits\.cpus is 1000000000, over the maximum/);
  await bad({ image: 'busybox', limits: { ...limits, memoryBytes: 1024 } }, /limits\.memory_bytes is 1\.0 KiB, under the minimum of 6\.0 MiB/);
  await bad({ image: 'busybox', limits: { ...limits, memoryBytes: 2 ** 50 } }, /limits\.memory_bytes is .* over the maximum/);
  await bad({ image: 'busybox', limits: { ...limits, pids: 2 ** 31 } }, /limits\.pids is 2147483648, over the maximum/);
  await bad({ image: 'busybox', limits: { ...limits, gpus: 1000 } }, /limits\.gpus is 1000, over the maximum of 64/);
  await bad({ image: 'busybox', limits: { ...limits, timeoutMs: 365 * 24 * 3600 * 1000 } }, /limits\.timeout_ms is 31536000000, over the maximum/);
  await bad({ image: 'busybox', command: [''] }, /spec\.command\[0\] is empty/);
  await bad({ image: 'busybox', command: ['sh', 'a\0b'] }, /contains a NUL byte/);
  await bad({ image: 'bad image name' }, /spec\.image "bad image name" contains whitespace/);
  await bad({ image: 'busybox', env: new Map([['BAD-NAME', 'x']]) }, /not a valid variable name/);
  await bad({ image: 'busybox', env: new Map([['1X', 'x']]) }, /not a valid variable name/);
  await bad({ image: 'busybox', env: new Map([['HIVEMIND_TASK', 'x']]) }, /reserved/);
  // What every node refused (INTERNAL_ERROR, START_FAILED) is refused at submission, by the same rules.
  await bad({ image: 'busybox\0' }, /spec\.image "busybox\\u0000" contains a control character/);
  await bad({ image: 'BusyBox' }, /spec\.image "BusyBox" is not a valid image reference \(the repository path must be lowercase\)/);
  await bad({ image: 'busybox', limits: { ...limits, cpus: 1e-9 } }, /spec\.limits\.cpus is 1e-9, under the minimum of 0\.01/);
  await bad({ image: 'busybox', limits: { ...limits, cpus: 0.001 } }, /spec\.limits\.cpus is 0\.001, under the minimum of 0\.01/);
  await bad({ image: 'busybox', command: ['sh', '-c', 'x'.repeat(200 * 1024)] }, /spec\.command\[2\] is 204800 bytes, over the maximum of 131071 per argument/);
  const chunk = 'x'.repeat(100 * 1024);
  await bad({ image: 'busybox', command: ['sh', chunk, chunk, chunk] }, /the task spec is 300\.\d KiB encoded, over the maximum of 256\.0 KiB/);
  await bad({ image: 'busybox', env: new Map([['A', chunk], ['B', chunk], ['C', chunk]]) }, /the task spec is 300\.\d KiB encoded, over the maximum of 256\.0 KiB/);
  // A corrupted input (trailer sha256 wrong) never becomes a task.
  const raw = new AdminServiceClient(h.address, credentials.createInsecure());
  t.after(() => raw.close());
  const err = await new Promise<ServiceError | null>((resolve) => {
    const call = raw.submitTask(bearerMetadata(h.adminToken), (e) => resolve(e));
    call.write({ part: { $case: 'header', value: { spec: { image: 'busybox', command: [], env: new Map(), network: 0, maxOutputBytes: 0, data: [] }, hasInput: true, maxAttempts: 0 } } });
    call.write({ part: { $case: 'chunk', value: Buffer.from('abc') } });
    call.write({ part: { $case: 'trailer', value: { size: 3, sha256: sha256(Buffer.from('abd')) } } });
    call.end();
  });
  assert.equal(err?.code, status.INVALID_ARGUMENT);
  assert.match(err!.details, /sha256 mismatch/);
  assert.equal((await h.admin.listTasks()).length, 0);
  assert.deepEqual(await readdir(join(h.dir, 'inputs')), []);
});

test('cancel: a queued task at once, a running one through the node', async (t) => {
  const h = await startMaster(t);
  const queued = await h.admin.submit({ image: 'busybox' });
  const c1 = await h.admin.cancelTask(queued, 'changed my mind');
  assert.equal(c1.state, TaskState.TASK_STATE_CANCELLED);
  assert.equal(c1.outcome?.kind, OutcomeKind.OUTCOME_KIND_CANCELLED);
  assert.equal(c1.outcome?.message, 'changed my mind');

  const w = await worker(t, h);
  w.report();
  w.subscribe();
  const running = await h.admin.submit({ image: 'busybox' });
  await assignmentOf(w);
  await w.update({ taskId: running, attempt: 1, seq: 1, state: TaskState.TASK_STATE_RUNNING });
  const c2 = await h.admin.cancelTask(running);
  assert.equal(c2.state, TaskState.TASK_STATE_RUNNING);
  assert.equal(c2.cancelRequested, true);
  const cmd = await w.nextCommand();
  assert.equal(cmd.command?.$case, 'cancel');
  assert.equal(cmd.command.value.taskId, running);
  assert.equal(cmd.command.value.attempt, 1);
  const ack = await w.update({ taskId: running, attempt: 1, seq: 2, state: TaskState.TASK_STATE_RUNNING });
  assert.equal(ack.cancelRequested, true);
  await w.update({ taskId: running, attempt: 1, seq: 3, state: TaskState.TASK_STATE_CANCELLED, outcome: { kind: OutcomeKind.OUTCOME_KIND_CANCELLED, exitCode: 137, message: 'cancelled', durationMs: 1, resultSize: 0, resultSha256: '' } });
  assert.equal((await h.admin.getTask(running)).state, TaskState.TASK_STATE_CANCELLED);
});

test('capacity carried by task updates places the next task at once, without waiting for a report', async (t) => {
  const h = await startMaster(t);
  const w = await worker(t, h);
  const one: Capacity = { ...FREE, taskSlots: 1 };
  const none: Capacity = { ...FREE, taskSlots: 0 };
  w.report(one);
  w.subscribe([], one);
  const first = await h.admin.submit({ image: 'busybox' });
  const second = await h.admin.submit({ image: 'busybox' });
  assert.equal((await assignmentOf(w)).taskId, first);
  await w.update({ taskId: first, attempt: 1, seq: 1, state: TaskState.TASK_STATE_ACCEPTED, free: none, accepting: true });
  await w.update({ taskId: first, attempt: 1, seq: 2, state: TaskState.TASK_STATE_RUNNING, free: none, accepting: true });
  assert.match((await h.admin.getTask(second)).queueReason, /task limit/);
  // The container exited: the slot is free while the result uploads. No report is ever sent again.
  await w.update({ taskId: first, attempt: 1, seq: 3, state: TaskState.TASK_STATE_UPLOADING, free: one, accepting: true });
  const next = await assignmentOf(w);
  assert.equal(next.taskId, second);
});

test('a rejected task is requeued with the node excluded and the reason visible', async (t) => {
  const h = await startMaster(t);
  const w = await worker(t, h, 'picky');
  w.report();
  w.subscribe();
  const taskId = await h.admin.submit({ image: 'busybox' });
  await assignmentOf(w);
  await w.update({ taskId, attempt: 1, seq: 1, state: TaskState.TASK_STATE_REJECTED, message: 'image not allowed' });
  const info = await waitFor('requeue', async () => {
    const i = await h.admin.getTask(taskId);
    return i.state === TaskState.TASK_STATE_QUEUED && /rejected by every accepting node \(picky\)/.test(i.queueReason) ? i : undefined;
  });
  assert.equal(info.attempt, 1);
  assert.ok(info.events.some((e) => e.state === TaskState.TASK_STATE_REJECTED && e.message === 'image not allowed'));
  // A second node gets it; the first node's late update is superseded.
  const w2 = await worker(t, h, 'other');
  w2.report();
  w2.subscribe();
  const a = await assignmentOf(w2);
  assert.equal(a.taskId, taskId);
  assert.equal((await w.update({ taskId, attempt: 1, seq: 2, state: TaskState.TASK_STATE_RUNNING })).superseded, true);
});

test('a node that stops reporting loses its task: requeued as attempt 2, the old attempt superseded', async (t) => {
  const { h, w, taskId } = await assignedTask(t, { reportIntervalMs: 300, maxAttempts: 2 });
  await w.update({ taskId, attempt: 1, seq: 1, state: TaskState.TASK_STATE_RUNNING });
  // No more reports: offline after 3 x 300 ms (wide enough for a loaded CI machine).
  // Requeued first with the loss as its reason, then the scheduler's pass says why it waits.
  const requeued = await waitFor('requeue', async () => {
    const i = await h.admin.getTask(taskId);
    return i.attempt === 2 && i.queueReason === 'no online node' ? i : undefined;
  });
  assert.equal(requeued.state, TaskState.TASK_STATE_QUEUED);
  assert.equal(requeued.queueReason, 'no online node');
  assert.ok(requeued.events.some((e) => e.attempt === 1 && /node .* went offline/.test(e.message)), 'the history says why attempt 1 was lost');
  assert.equal((await h.admin.listNodes())[0]!.online, false);
  const told = await w.nextCommand();
  assert.ok(told.command?.$case === 'cancel' && told.command.value.attempt === 1, 'the old command stream is told to stop attempt 1 at once');
  const ack = await w.update({ taskId, attempt: 1, seq: 2, state: TaskState.TASK_STATE_UPLOADING });
  assert.deepEqual(ack, { applied: false, superseded: true, cancelRequested: false });
  await assert.rejects(w.uploadOffset(taskId, 1), (e) => grpcCode(e) === status.FAILED_PRECONDITION && /superseded/.test((e as ServiceError).details));

  // The node comes back, gets attempt 2 and is lost again: max_attempts (2) reached -> NODE_LOST.
  w.report();
  w.subscribe([{ taskId, attempt: 1 }]);
  const cmds = [await w.nextCommand(), await w.nextCommand()];
  const cancel = cmds.find((c) => c.command?.$case === 'cancel');
  const assign = cmds.find((c) => c.command?.$case === 'assign');
  assert.ok(cancel && cancel.command?.$case === 'cancel' && cancel.command.value.attempt === 1, 'the stale attempt is cancelled on resubscribe');
  assert.ok(assign && assign.command?.$case === 'assign' && assign.command.value.attempt === 2);
  const failed = await waitFor('failure', async () => {
    const i = await h.admin.getTask(taskId);
    return i.state === TaskState.TASK_STATE_FAILED ? i : undefined;
  });
  assert.equal(failed.outcome?.kind, OutcomeKind.OUTCOME_KIND_NODE_LOST);
  assert.match(failed.outcome!.message, /gave up after 2 of 2 attempts/);
});

test('a node that comes back from a freeze on its old streams is told at once to stop the attempt it lost', async (t) => {
  // A frozen worker (SIGSTOP, a VM paused) resumes with its gRPC streams intact: it reports again
  // but does not resubscribe, so no reconcile tells it that its attempt was given up meanwhile.
  const h = await startMaster(t, { reportIntervalMs: 300, nodeTimeoutMs: 600, maxAttempts: 2 });
  const a = await worker(t, h, 'frozen');
  const b = await worker(t, h, 'spare');
  a.report();
  a.subscribe();
  const taskId = await h.admin.submit({ image: 'busybox' });
  assert.equal((await assignmentOf(a)).attempt, 1);
  await a.update({ taskId, attempt: 1, seq: 1, state: TaskState.TASK_STATE_RUNNING });
  // A falls silent; B arrives and keeps reporting.
  b.subscribe();
  const beat = setInterval(() => b.report(), 100);
  t.after(() => clearInterval(beat));
  assert.equal((await assignmentOf(b)).attempt, 2, 'requeued to B after the 600 ms node timeout');
  // A resumes: its reports go on the same stream, and its command stream carries the news.
  a.report();
  const cmd = await a.nextCommand(3000);
  assert.equal(cmd.command?.$case, 'cancel', JSON.stringify(cmd));
  assert.equal(cmd.command.value.taskId, taskId);
  assert.equal(cmd.command.value.attempt, 1);
  assert.match(cmd.command.value.reason, /^attempt 1 was given up: node frozen \(\w+\) went offline \(no report for 600 ms\)$/);
  // Whatever A still sends for attempt 1 is superseded; B's attempt 2 is untouched.
  assert.deepEqual(await a.update({ taskId, attempt: 1, seq: 2, state: TaskState.TASK_STATE_CANCELLED }), { applied: false, superseded: true, cancelRequested: false });
  const info = await h.admin.getTask(taskId);
  assert.equal(info.attempt, 2);
  assert.equal(info.state, TaskState.TASK_STATE_ASSIGNED);
});

test('the node timeout may not be shorter than the report interval', async () => {
  await assert.rejects(
    Master.create({ listenAddress: '127.0.0.1:0', gatewayListen: '127.0.0.1:0', dataDir: join(tmpdir(), 'hm-never-created'), reportIntervalMs: 1000, nodeTimeoutMs: 999 }),
    /master: nodeTimeoutMs \(999\) must be at least reportIntervalMs \(1000\)/,
  );
});

test('resubscribing without a running task gives it up; an unanswered assignment is resent', async (t) => {
  const h = await startMaster(t);
  const w = await worker(t, h);
  w.report();
  w.subscribe();
  const t1 = await h.admin.submit({ image: 'busybox' });
  await assignmentOf(w);
  const t2 = await h.admin.submit({ image: 'busybox' });
  await assignmentOf(w);
  await w.update({ taskId: t1, attempt: 1, seq: 1, state: TaskState.TASK_STATE_RUNNING });
  w.subscribe([]); // the worker restarted and lost t1; it never saw t2's assignment
  const cmd = await w.nextCommand();
  assert.equal(cmd.command?.$case, 'assign');
  assert.equal(cmd.command.value.taskId, t2);
  const i1 = await waitFor('t1 given up', async () => {
    const i = await h.admin.getTask(t1);
    return i.attempt === 2 ? i : undefined;
  });
  assert.ok(i1.events.some((e) => e.attempt === 1 && /no longer holds attempt 1/.test(e.message)));
});

test('a restarted master keeps tasks, nodes and its admin token', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'hm-master-restart-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const storeOpt = masterStoreOption();
  const first = await Master.create({ listenAddress: '127.0.0.1:0', gatewayListen: '127.0.0.1:0', dataDir: dir, shutdownGraceMs: 100, ...storeOpt });
  const addr1 = await first.start();
  const token = (await readFile(first.adminTokenPath, 'utf8')).trim();
  const admin1 = AdminClient.connect(addr1, token);
  // __proto__ is a valid variable name: it survives the wire and the master's store.
  const taskId = await admin1.submit({ image: 'busybox', env: new Map([['A', '1'], ['__proto__', 'p'], ['constructor', 'c']]) });
  assert.deepEqual([...(await admin1.getTask(taskId)).spec!.env], [['A', '1'], ['__proto__', 'p'], ['constructor', 'c']]);
  const w = new FakeWorker(addr1);
  const reg = await w.register((await admin1.createToken()).token, 'survivor');
  w.close();
  admin1.close();
  await first.close();
  await first.close(); // idempotent

  const h = await startMaster(t, storeOpt, dir);
  assert.equal(h.adminToken, token);
  const task = await h.admin.getTask(taskId);
  assert.equal(task.state, TaskState.TASK_STATE_QUEUED);
  const env = [...task.spec!.env];
  recordHostile('master: env named __proto__ kept across the store', env.length !== 3);
  assert.deepEqual(env, [['A', '1'], ['__proto__', 'p'], ['constructor', 'c']]);
  const nodes = await h.admin.listNodes();
  assert.deepEqual(nodes.map((n) => [n.nodeId, n.name]), [[reg.nodeId, 'survivor']]);
  const w2 = new FakeWorker(h.address);
  t.after(() => w2.close());
  assert.equal((await w2.register(reg.nodeCredential)).nodeId, reg.nodeId);
  w2.report();
  w2.subscribe();
  assert.equal((await assignmentOf(w2)).taskId, taskId);
});

test('hostile protocol input: garbage bytes, malformed and oversized messages, unknown enum values and wrong credentials are refused; the master keeps serving', async (t) => {
  const h = await startMaster(t);
  const w = await worker(t, h);
  w.subscribe();
  const [host, port] = [h.address.split(':')[0]!, Number(h.address.split(':')[1])];
  const stillServing = async (what: string) => {
    assert.ok((await h.admin.listNodes()).length >= 1, `the master answers after ${what}`);
  };
  const refused = async (name: string, call: () => Promise<unknown>, check: (e: unknown) => boolean) => {
    const outcome = await call().then(() => 'accepted', (e: unknown) => (check(e) ? 'refused' : `refused unclearly: ${String((e as ServiceError).details ?? e)}`));
    recordHostile(`protocol: ${name}`, outcome === 'accepted');
    assert.equal(outcome, 'refused', name);
    await stillServing(name);
  };

  // Raw bytes that are not HTTP/2 at all, and an HTTP/1.1 request: the connection is closed.
  for (const [name, bytes] of [['random bytes', randomBytes(64 * 1024)], ['an HTTP/1.1 request', Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n')]] as const) {
    const closed = await new Promise<boolean>((resolve) => {
      const sock = netConnect(port, host, () => sock.write(bytes));
      sock.on('error', () => undefined);
      sock.on('close', () => resolve(true));
      sock.resume(); // read what the server answers, so that its close is seen
      setTimeout(() => { sock.destroy(); resolve(false); }, 10_000);
    });
    recordHostile(`protocol: ${name} on the gRPC port`, !closed);
    assert.ok(closed, `the master closes a connection that sends ${name}`);
    await stillServing(name);
  }

  // Well-framed gRPC calls whose payload is not the message the method takes.
  const raw = new GrpcClient(h.address, credentials.createInsecure());
  t.after(() => raw.close());
  const rawCall = (method: string, payload: Buffer, md: Metadata) => new Promise<Buffer>((resolve, reject) =>
    raw.makeUnaryRequest(`/hivemind.v1.NodeService/${method}`, (b: Buffer) => b, (b: Buffer) => b, payload, md, { deadline: Date.now() + 10_000 }, (e, r) => (e ? reject(e) : resolve(r!))));
  const cred = bearerMetadata(w.credential);
  await refused('a payload that is not protobuf', () => rawCall('UpdateTask', Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]), cred),
    (e) => grpcCode(e) === status.INTERNAL || grpcCode(e) === status.INVALID_ARGUMENT);
  await refused('a message over the 4 MiB receive limit', () => rawCall('UpdateTask', Buffer.alloc(5 * 1024 * 1024, 0x0a), cred),
    (e) => grpcCode(e) === status.RESOURCE_EXHAUSTED);

  // A valid assignment, then updates with values the protocol does not have.
  const taskId = await h.admin.submit({ image: 'busybox' });
  const assigned = await assignmentOf(w);
  assert.equal(assigned.taskId, taskId);
  await refused('an unknown task state (99)', () => w.update({ taskId, attempt: 1, seq: 1, state: 99 as TaskState }),
    (e) => grpcCode(e) === status.INVALID_ARGUMENT && /cannot set task state/.test((e as ServiceError).details));
  await refused('a state a node may not set (QUEUED)', () => w.update({ taskId, attempt: 1, seq: 2, state: TaskState.TASK_STATE_QUEUED }),
    (e) => grpcCode(e) === status.INVALID_ARGUMENT);
  await refused('an update for a task that does not exist', () => w.update({ taskId: 'no-such-task', attempt: 1, seq: 1, state: TaskState.TASK_STATE_RUNNING }),
    (e) => grpcCode(e) === status.NOT_FOUND);
  assert.equal((await h.admin.getTask(taskId)).state, TaskState.TASK_STATE_ASSIGNED, 'none of that changed the task');

  // Credentials: none, garbage, another kind's (the admin token), a node's on the admin service.
  const stranger = new NodeServiceClient(h.address, credentials.createInsecure());
  t.after(() => stranger.close());
  const strangerUpdate = (md: Metadata) => new Promise((resolve, reject) =>
    stranger.updateTask({ taskId, attempt: 1, seq: 5, state: TaskState.TASK_STATE_RUNNING, message: '', atMs: Date.now(), outcome: undefined, pull: undefined, accepting: true }, md, (e, r) => (e ? reject(e) : resolve(r))));
  await refused('no credential', () => strangerUpdate(new MetadataClass()), (e) => grpcCode(e) === status.UNAUTHENTICATED);
  await refused('a garbage credential', () => strangerUpdate(bearerMetadata('hmn1.' + randomBytes(24).toString('base64url'))), (e) => grpcCode(e) === status.UNAUTHENTICATED);
  await refused('the admin token as a node credential', () => strangerUpdate(bearerMetadata(h.adminToken)), (e) => grpcCode(e) === status.UNAUTHENTICATED);
  const nodeAsAdmin = AdminClient.connect(h.address, w.credential);
  t.after(() => nodeAsAdmin.close());
  await refused('a node credential on the admin service', () => nodeAsAdmin.listTasks(), (e) => e instanceof MasterCallError && e.status === status.UNAUTHENTICATED);
  assert.equal((await h.admin.getTask(taskId)).state, TaskState.TASK_STATE_ASSIGNED);

  // After all of it the real worker's update still goes through.
  assert.equal((await w.update({ taskId, attempt: 1, seq: 3, state: TaskState.TASK_STATE_RUNNING })).applied, true);
});

/** Opens the master's own database beside it (WAL), or its PostgreSQL schema: to plant rows larger than submission allows today. */
function masterDb(t: TestContext, h: Harness): SqlDriver {
  if (h.store?.kind === 'postgres') {
    const pg = PgDriver.open(h.store.url);
    t.after(() => pg.close());
    return pg;
  }
  const db = new Database(join(h.dir, 'master.db'));
  db.pragma('busy_timeout = 5000');
  const driver = new SqliteDriver(db);
  t.after(() => driver.close());
  return driver;
}

/** Every row of the tables that hold secrets' hashes, as text (what the database file is for SQLite). */
function storedText(t: TestContext, h: Harness): string {
  const db = masterDb(t, h);
  return ['nodes', 'enrollment_tokens', 'tasks', 'task_events'].map((table) => (db.prepare(`SELECT string_agg(r::text, ' ') AS s FROM ${table} r`).get() as { s: string | null }).s ?? '').join(' ');
}

test('listings come in pages under the message cap: many large tasks, huge specs and node facts all list; GetTask has the whole spec', async (t) => {
  const h = await startMaster(t);
  // 80 tasks with a 60 kB argument each: 4.8 MB of tasks, over the 4 MiB a single answer may hold.
  const arg = 'x'.repeat(60_000);
  const ids: string[] = [];
  for (let i = 0; i < 80; i++) ids.push(await h.admin.submit({ image: 'busybox', command: ['echo', arg], limits: { cpus: 0, memoryBytes: 0, pids: 0, gpus: 1, timeoutMs: 0 } }));
  // Two older rows with a 2.3 MB argument (as stored before submissions were capped).
  const db = masterDb(t, h);
  const huge = 'y'.repeat(2_300_000);
  for (const id of ids.slice(0, 2)) {
    const spec = JSON.parse((db.prepare('SELECT spec FROM tasks WHERE id = ?').get(id) as { spec: string }).spec) as { command: string[] };
    spec.command = ['echo', huge];
    db.prepare('UPDATE tasks SET spec = ? WHERE id = ?').run(JSON.stringify(spec), id);
  }

  const all = await h.admin.listTasks({ limit: 0 }).then((l) => l, (e: unknown) => e);
  recordHostile('listing: 80 tasks of 64 KiB and two of 2.3 MB in one ListTasks', !Array.isArray(all));
  assert.ok(Array.isArray(all), `listTasks failed: ${String(all)}`);
  assert.deepEqual(all.map((x) => x.taskId), [...ids].reverse(), 'every task once, newest first');
  const big = all.find((x) => x.taskId === ids[0])!;
  assert.equal(big.truncated, true);
  assert.ok(big.spec!.command[1]!.length < 1000 && /…\(2300000 bytes\)$/.test(big.spec!.command[1]!), 'a huge argument is cut and says how big it was');
  // One page never nears the message cap, whatever the limit asked.
  const page = await h.admin.listTasksPage({ limit: 1000 });
  assert.ok(page.tasks.length < 80 && page.nextPageToken, 'a page is cut by bytes and says where to go on');
  assert.ok(TaskInfoCodec.encode({ ...page.tasks[0]!, events: [] }).finish().length < 70 * 1024);
  assert.ok(page.tasks.reduce((n, x) => n + TaskInfoCodec.encode(x).finish().length, 0) <= 1024 * 1024);
  const five = await h.admin.listTasks({ limit: 5 });
  assert.deepEqual(five.map((x) => x.taskId), [...ids].reverse().slice(0, 5));
  // The whole spec is one GetTask away.
  const full = await h.admin.getTask(ids[0]!);
  assert.equal(full.spec!.command[1], huge);
  assert.equal(full.truncated, false);

  // Nodes whose facts are huge (3 MB of labels each) still list, summarised.
  const w1 = await worker(t, h, 'big-1');
  const w2 = await worker(t, h, 'big-2');
  for (const w of [w1, w2]) {
    const facts = JSON.parse((db.prepare('SELECT facts FROM nodes WHERE id = ?').get(w.nodeId) as { facts: string }).facts) as { labels: Record<string, string> };
    facts.labels ??= {};
    for (let i = 0; i < 3; i++) facts.labels[`l${i}`] = 'z'.repeat(1_000_000);
    db.prepare('UPDATE nodes SET facts = ? WHERE id = ?').run(JSON.stringify(facts), w.nodeId);
  }
  const nodes = await h.admin.listNodes().then((l) => l, (e: unknown) => e);
  recordHostile('listing: two nodes with 3 MB of labels each in one ListNodes', !Array.isArray(nodes));
  assert.ok(Array.isArray(nodes), `listNodes failed: ${String(nodes)}`);
  assert.deepEqual(nodes.map((n) => n.name), ['big-1', 'big-2']);
  assert.ok(nodes.every((n) => n.truncated && n.facts!.labels.get('l0')!.endsWith('…(1000000 bytes)')));
  const onePerPage = await h.admin.listNodesPage({ limit: 1 });
  assert.equal(onePerPage.nodes.length, 1);
  assert.deepEqual((await h.admin.listNodesPage({ limit: 1, pageToken: onePerPage.nextPageToken })).nodes.map((n) => n.name), ['big-2']);
});

test('ListNodes names the live tasks of each node on the page (not the queued or finished ones), whatever the page size', async (t) => {
  const h = await startMaster(t);
  const w1 = await worker(t, h, 'n1');
  const w2 = await worker(t, h, 'n2');
  await worker(t, h, 'n3');
  w1.report();
  w1.subscribe();
  const first = await h.admin.submit({ image: 'busybox' });
  await assignmentOf(w1);
  const second = await h.admin.submit({ image: 'busybox' });
  await assignmentOf(w1);
  // w1's two slots are taken: the next one goes to w2, and one more waits for a GPU nobody has.
  w2.report();
  w2.subscribe();
  const third = await h.admin.submit({ image: 'busybox' });
  await assignmentOf(w2);
  await h.admin.submit({ image: 'busybox', limits: { cpus: 0, memoryBytes: 0, pids: 0, gpus: 1, timeoutMs: 0 } });
  await w1.update({ taskId: first, attempt: 1, seq: 1, state: TaskState.TASK_STATE_RUNNING });
  await w1.update({ taskId: second, attempt: 1, seq: 1, state: TaskState.TASK_STATE_FAILED, outcome: { ...EXIT_0, exitCode: 1 } });
  const want = { n1: [first], n2: [third], n3: [] as string[] };
  const whole = await h.admin.listNodes();
  assert.deepEqual(Object.fromEntries(whole.map((n) => [n.name, n.taskIds])), want);
  // One node per page: each page asks for its own node's tasks only.
  const paged: Record<string, string[]> = {};
  let token = '';
  do {
    const page = await h.admin.listNodesPage({ limit: 1, pageToken: token });
    for (const n of page.nodes) paged[n.name] = n.taskIds;
    token = page.nextPageToken;
  } while (token);
  assert.deepEqual(paged, want);
});

test('listing filters are bounded: a million repeated states, unknown states and forged page tokens are refused with INVALID_ARGUMENT', async (t) => {
  const h = await startMaster(t);
  const id = await h.admin.submit({ image: 'busybox', limits: { cpus: 0, memoryBytes: 0, pids: 0, gpus: 1, timeoutMs: 0 } });
  const refused = async (name: string, call: () => Promise<unknown>, re: RegExp) => {
    const outcome = await call().then(() => 'accepted', (e: unknown) => (e instanceof MasterCallError && e.status === status.INVALID_ARGUMENT && re.test(e.message) ? 'refused' : `refused unclearly: ${String(e)}`));
    recordHostile(`listing: ${name}`, outcome === 'accepted');
    assert.equal(outcome, 'refused', name);
  };
  await refused('1,000,000 repeated states', () => h.admin.listTasks({ states: new Array<TaskState>(1_000_000).fill(TaskState.TASK_STATE_QUEUED) }), /states lists 1000000 entries; at most \d+/);
  await refused('an unknown state (99)', () => h.admin.listTasksPage({ states: [99 as TaskState] }), /99 is not a task state/);
  await refused('the UNSPECIFIED state', () => h.admin.listTasksPage({ states: [TaskState.TASK_STATE_UNSPECIFIED] }), /0 is not a task state/);
  await refused('a forged page token', () => h.admin.listTasksPage({ pageToken: 'bm90LWEtdG9rZW4' }), /page_token .* is not a token this master returned/);
  await refused('a 100 kB page token', () => h.admin.listNodesPage({ pageToken: 'A'.repeat(100_000) }), /page_token "A{64}…\(100000 bytes\)"/);
  // A state repeated a few times is the same filter.
  assert.deepEqual((await h.admin.listTasksPage({ states: [TaskState.TASK_STATE_QUEUED, TaskState.TASK_STATE_QUEUED] })).tasks.map((x) => x.taskId), [id]);
  assert.deepEqual((await h.admin.listTasks({ states: [TaskState.TASK_STATE_RUNNING] })), []);
});

test('errors echo a caller\'s value cut short: a 100 kB id gets NOT_FOUND with a short message', async (t) => {
  const h = await startMaster(t);
  const longId = 'f'.repeat(100_000);
  const w = await worker(t, h);
  const cases: [string, () => Promise<unknown>, status][] = [
    ['get task', () => h.admin.getTask(longId), status.NOT_FOUND],
    ['cancel task', () => h.admin.cancelTask(longId), status.NOT_FOUND],
    ['watch task', async () => { for await (const _ of h.admin.watchTask(longId)) break; }, status.NOT_FOUND],
    ['stream logs', async () => { for await (const _ of h.admin.streamLogs(longId)) break; }, status.NOT_FOUND],
    ['remove node', () => h.admin.removeNode(longId), status.NOT_FOUND],
    ['revoke token', () => h.admin.revokeToken(longId), status.INVALID_ARGUMENT],
    // A node's update this large is refused unread for its size (short message, no echo at all).
    ['node update of an unknown task', () => w.update({ taskId: longId, attempt: 1, seq: 1, state: TaskState.TASK_STATE_RUNNING }), status.INVALID_ARGUMENT],
  ];
  for (const [name, call, want] of cases) {
    const err = await call().then(() => undefined, (e: unknown) => e as Partial<ServiceError> & { status?: status });
    const code = err?.status ?? err?.code;
    const details = String((err as { details?: string })?.details ?? (err as Error | undefined)?.message ?? '');
    const clear = code === want && details.length < 400 && (details.includes('…(100000 bytes)') || /it was not read$/.test(details));
    recordHostile(`echo: a 100 kB id in ${name}`, err === undefined);
    assert.ok(clear, `${name}: got ${code === undefined ? 'no error' : status[code]} "${details.slice(0, 300)}"`);
  }
  assert.ok((await h.admin.listNodes()).length === 1, 'the master keeps serving');
});

test('downloads whose readers stop reading hold little of the master: a few chunks read ahead per stream, and at most 64 such streams at once', async (t) => {
  const { h, w, taskId } = await assignedTask(t);
  const result = randomBytes(16 * 1024 * 1024);
  const chunks: UploadResultRequest[] = [{ part: { $case: 'header', value: { taskId, attempt: 1, offset: 0, totalSize: result.length } } }];
  for (let at = 0; at < result.length; at += 256 * 1024) chunks.push({ part: { $case: 'chunk', value: result.subarray(at, at + 256 * 1024) } });
  chunks.push({ part: { $case: 'trailer', value: { size: result.length, sha256: sha256(result) } } });
  await w.upload(chunks);
  const outcome = { kind: OutcomeKind.OUTCOME_KIND_EXITED, exitCode: 0, message: '', durationMs: 5, resultSize: result.length, resultSha256: sha256(result) };
  await w.update({ taskId, attempt: 1, seq: 1, state: TaskState.TASK_STATE_RUNNING });
  assert.equal((await w.update({ taskId, attempt: 1, seq: 2, state: TaskState.TASK_STATE_SUCCEEDED, outcome })).applied, true);

  // What the master reads from disk for a download and has not sent is held in its memory.
  const opened: ReadStream[] = [];
  const readResult = BlobStore.prototype.readResult;
  BlobStore.prototype.readResult = function (this: BlobStore, ...args: Parameters<BlobStore['readResult']>) {
    const s = readResult.apply(this, args);
    opened.push(s as ReadStream);
    return s;
  };
  t.after(() => { BlobStore.prototype.readResult = readResult; });
  // A client that stops reading at the HTTP/2 level: a paused stream, so no window update past
  // the default 64 KiB window; whatever else the master reads stays in the master.
  const session = http2Connect(`http://${h.address}`);
  session.on('error', () => undefined);
  const refusals: string[] = [];
  const stall = () => {
    const s = pausedAdminStream(session, h.adminToken, 'FetchResult', FetchResultRequest.encode({ taskId, offset: 0 }).finish());
    const onStatus = (hd: Record<string, unknown>) => {
      if (hd['grpc-status'] === String(status.RESOURCE_EXHAUSTED)) refusals.push(decodeURIComponent(String(hd['grpc-message'])));
    };
    s.on('response', onStatus);
    s.on('trailers', onStatus);
    return { cancel: () => s.close() };
  };
  const stalled = Array.from({ length: 20 }, stall);
  t.after(() => { for (const c of stalled) c.cancel(); session.close(); });
  await waitFor('20 downloads to open', async () => (opened.length === 20 ? true : undefined));
  const before = process.memoryUsage();
  await new Promise((r) => setTimeout(r, 1500));
  const readAhead = opened.map((s) => s.bytesRead);
  const worst = Math.max(...readAhead);
  t.diagnostic(`bytes read per stalled download: ${readAhead.join(', ')}; rss ${before.rss >> 20} → ${process.memoryUsage().rss >> 20} MiB`);
  recordHostile('streams: 20 result downloads whose reader never reads', worst > 2 * 1024 * 1024);
  assert.ok(worst <= 2 * 1024 * 1024, `a stalled download made the master read ${worst} bytes ahead (at most 2 MiB)`);

  // A reader that does read gets the whole result meanwhile.
  const dest = join(h.dir, 'out.tar.gz');
  assert.equal((await h.admin.fetchResult(taskId, dest)).sha256, sha256(result));

  // Past 64 open downloads the master refuses more, saying why, instead of holding more.
  for (let i = 0; i < 50; i++) stalled.push(stall());
  await waitFor('the downloads past 64 to be refused', async () => (refusals.length >= 6 ? true : undefined));
  recordHostile('streams: 70 result downloads open at once', opened.length > 64 + 1 ? opened.length - 65 : 0);
  assert.equal(refusals.length, 6);
  assert.match(refusals[0]!, /the most this master serves at once; retry when one ends/);
});

type SubscribeOutcome = { accepted: true } | { accepted: false; err: ServiceError };

/** Resolves with how a Subscribe went: refused (the status), or accepted (a command arrived, or no error within `quietMs`). */
function subscribeOutcome(call: ClientReadableStream<unknown>, quietMs: number): Promise<SubscribeOutcome> {
  return new Promise((resolve) => {
    const done = (r: SubscribeOutcome) => {
      clearTimeout(timer);
      call.removeAllListeners('data');
      if (r.accepted) call.cancel();
      resolve(r);
    };
    const timer = setTimeout(() => done({ accepted: true }), quietMs);
    call.on('data', () => done({ accepted: true }));
    call.on('error', (err: ServiceError) => done({ accepted: false, err }));
  });
}

function trySubscribe(client: NodeServiceClient, md: Metadata, running: { taskId: string; attempt: number }[], quietMs = 1500): Promise<SubscribeOutcome> {
  return subscribeOutcome(client.subscribe({ running, free: FREE, accepting: true, exec: false }, md), quietMs);
}

test('a Subscribe naming 250,000 unknown tasks (3.5 MB) is refused unread; admin calls answer meanwhile and nothing is queued', async (t) => {
  const h = await startMaster(t);
  const w = await worker(t, h);
  w.report();
  w.subscribe();
  const taskId = await h.admin.submit({ image: 'busybox' });
  assert.equal((await assignmentOf(w)).taskId, taskId);
  const before = await h.admin.listTasks();

  // The wire bytes are written directly (250,000 `running` entries of 14 bytes: an 8-character
  // id, attempt 1), then the known task, capacity and flag appended (protobuf merges the two), and
  // sent as they are: no test-side objects or garbage, so the figures below are the master's.
  const entries = 250_000;
  const listed = Buffer.alloc(entries * 14);
  for (let i = 0; i < entries; i++) {
    const at = i * 14;
    listed.set([0x0a, 12, 0x0a, 8], at);
    listed.write(i.toString(16).padStart(8, '0'), at + 4, 'latin1');
    listed.set([0x10, 1], at + 12);
  }
  const wire = Buffer.concat([listed, SubscribeRequest.encode({ running: [{ taskId, attempt: 1 }], free: FREE, accepting: true, exec: false }).finish()]);
  assert.equal(SubscribeRequest.decode(wire).running.length, entries + 1);
  const md = bearerMetadata(w.credential);
  const raw = new GrpcClient(h.address, credentials.createInsecure());
  t.after(() => raw.close());
  const rawSubscribe = () => subscribeOutcome(raw.makeServerStreamRequest('/hivemind.v1.NodeService/Subscribe', (b: Buffer) => b, (b: Buffer) => b, wire, md), 20_000);
  await new Promise((r) => setTimeout(r, 200));
  const loop = monitorEventLoopDelay({ resolution: 1 });
  const rssBefore = process.memoryUsage().rss;
  loop.enable();
  const adminMs: number[] = [];
  const outcomes = [];
  for (let i = 0; i < 3; i++) {
    const started = performance.now();
    const [outcome] = await Promise.all([
      rawSubscribe(),
      h.admin.listNodes().then(() => adminMs.push(performance.now() - started)),
    ]);
    outcomes.push(outcome);
  }
  loop.disable();
  const rssAfter = process.memoryUsage().rss;
  t.diagnostic(`event loop delay during 3 hostile Subscribes (${wire.length} bytes each): max ${(loop.max / 1e6).toFixed(1)} ms, p99 ${(loop.percentile(99) / 1e6).toFixed(1)} ms; ListNodes alongside answered in ${adminMs.map((ms) => ms.toFixed(0)).join(', ')} ms; master process RSS ${(rssBefore / 2 ** 20).toFixed(0)} -> ${(rssAfter / 2 ** 20).toFixed(0)} MiB`);
  const clear = outcomes.filter((o) => !o.accepted && o.err.code === status.RESOURCE_EXHAUSTED && /^Received message larger than max \(3500\d{3} vs 1048576\)$/.test(o.err.details)).length;
  recordHostile('node input: a Subscribe naming 250,000 unknown tasks (3.5 MB)', 3 - clear, 3);
  assert.equal(clear, 3, JSON.stringify(outcomes.map((o) => (o.accepted ? 'accepted' : `${status[o.err.code]} ${o.err.details}`))));
  assert.equal(adminMs.length, 3, 'the admin API answered alongside each');

  // Under the master's 1 MiB receive limit but over Subscribe's 64 KiB: refused undecoded, by size.
  const mid = await trySubscribe(w.client, md, Array.from({ length: 20_000 }, (_, i) => ({ taskId: `u${i}`, attempt: 1 })));
  recordHostile('node input: a Subscribe of 200 kB', mid.accepted);
  assert.ok(!mid.accepted && mid.err.code === status.INVALID_ARGUMENT && /^Subscribe: the message is \d+ bytes, over the limit of 65536 bytes; it was not read$/.test(mid.err.details), JSON.stringify(mid));

  // Within the size cap but more than a node with 2 slots can hold: refused by count.
  const many = Array.from({ length: 21 }, (_, i) => ({ taskId: `t${i}`, attempt: 1 }));
  const byCount = await trySubscribe(w.client, md, many);
  recordHostile('node input: a Subscribe listing 21 tasks from a node with 2 slots', byCount.accepted);
  assert.ok(!byCount.accepted && byCount.err.code === status.INVALID_ARGUMENT, JSON.stringify(byCount));
  assert.equal(byCount.err.details, 'running: 21 tasks listed, over the limit of 20 for a node with 2 task slots (facts.max_tasks); a node cannot hold more');

  // Nothing changed: the task is still assigned to the node, no cancel went anywhere, and the
  // node's own command stream is still the one the master talks to.
  assert.deepEqual(await h.admin.listTasks(), before);
  await assert.rejects(w.nextCommand(300), /no command/);
  await h.admin.cancelTask(taskId);
  const cmd = await w.nextCommand();
  assert.ok(cmd.command?.$case === 'cancel' && cmd.command.value.taskId === taskId, JSON.stringify(cmd));
});

test('a resubscribing node listing ids the master never issued gets no command for them; a stale attempt is still cancelled', async (t) => {
  const h = await startMaster(t);
  const w = await worker(t, h);
  w.report();
  const unknown = Array.from({ length: 19 }, (_, i) => ({ taskId: `never-issued-${i}`, attempt: 1 }));
  const taskId = await h.admin.submit({ image: 'busybox' });
  w.subscribe();
  assert.equal((await assignmentOf(w)).taskId, taskId);
  await h.admin.cancelTask(taskId);
  assert.equal((await w.nextCommand()).command?.$case, 'cancel');
  await w.update({ taskId, attempt: 1, seq: 1, state: TaskState.TASK_STATE_CANCELLED });
  const other = await h.admin.submit({ image: 'busybox' });
  assert.equal((await assignmentOf(w)).taskId, other);
  // 20 entries (the bound for 2 slots): 19 unknown, and the finished task's attempt 2 that never was.
  w.subscribe([...unknown, { taskId, attempt: 2 }, { taskId: other, attempt: 1 }].slice(-20));
  const cmd = await w.nextCommand();
  assert.ok(cmd.command?.$case === 'cancel' && cmd.command.value.taskId === taskId && cmd.command.value.attempt === 2, JSON.stringify(cmd));
  await assert.rejects(w.nextCommand(500), /no command/, 'the unknown ids cost no command');
  assert.equal((await h.admin.getTask(other)).state, TaskState.TASK_STATE_ASSIGNED);
});

test('one node cannot break `hivemind nodes`: oversized or out-of-bounds facts and reports are refused with the field and the limit', async (t) => {
  const h = await startMaster(t);
  const w = await worker(t, h, 'steady');
  w.report();
  const outcome = (p: Promise<unknown>) => p.then(() => undefined, (e: ServiceError) => e);
  const baseFacts = { hostname: 'h', os: 'linux', osRelease: '', arch: 'x64', cpuCores: 4, cpuModel: '', memoryBytes: 1, diskBytes: 0, gpus: [], dockerVersion: '', labels: new Map<string, string>(), workerVersion: 'test', allowsEgress: false, maxTasks: 2, isolations: [] as Isolation[], engine: '', unenforcedLimits: [] as LimitKind[] };
  const register = (md: Metadata, name: string, facts: typeof baseFacts | Record<string, unknown>) =>
    new Promise((resolve, reject) => w.client.register({ name, facts: { ...baseFacts, ...facts } as typeof baseFacts }, md, (e, r) => (e ? reject(e) : resolve(r))));
  const check = (name: string, err: ServiceError | undefined, code: status, re: RegExp) => {
    recordHostile(`node input: ${name}`, !(err && err.code === code && re.test(err.details)));
    assert.ok(err, `${name}: accepted`);
    assert.equal(err.code, code, `${name}: ${err.details}`);
    assert.match(err.details, re, name);
  };

  // The node: 1,200 labels of 2 kB (2.4 MB), then 200,000 GPU entries in a report.
  const hugeLabels = new Map(Array.from({ length: 1200 }, (_, i) => [`label-${i}`, 'v'.repeat(2048)] as [string, string]));
  const { token } = await h.admin.createToken();
  check('a Register with 1,200 labels of 2 kB', await outcome(register(bearerMetadata(token), 'hog', { labels: hugeLabels })),
    status.RESOURCE_EXHAUSTED, /^Received message larger than max \(\d+ vs 1048576\)$/);
  check('a Register with 300 labels of 1 kB', await outcome(register(bearerMetadata(token), 'hog', { labels: new Map(Array.from({ length: 300 }, (_, i) => [`label-${i}`, 'v'.repeat(1024)] as [string, string])) })),
    status.INVALID_ARGUMENT, /^Register: the message is \d+ bytes, over the limit of 131072 bytes; it was not read$/);
  check('a Register with 65 small labels', await outcome(register(bearerMetadata(token), 'hog', { labels: new Map(Array.from({ length: 65 }, (_, i) => [`l${i}`, 'v'] as [string, string])) })),
    status.INVALID_ARGUMENT, /^facts\.labels: 65 labels, over the limit of 64$/);
  check('a credential refresh renaming the node with terminal escapes', await outcome(register(bearerMetadata(w.credential), '\u001b[2J\u001b[Hpwned', {})),
    status.INVALID_ARGUMENT, /^name: .* contains control characters$/);
  const gpus = Array.from({ length: 200_000 }, (_, i) => ({ index: i % 8, utilizationPercent: 50, memoryUsedBytes: 0, memoryTotalBytes: 0, temperatureC: 0, powerW: 0 }));
  const reportOnce = (r: Partial<ResourceReport>) => new Promise<ServiceError | undefined>((resolve) => {
    const call = w.client.report(bearerMetadata(w.credential), (e) => resolve(e ?? undefined));
    call.write({ seq: 1, atMs: Date.now(), cpuPercent: 1, memoryUsedBytes: 0, memoryTotalBytes: 0, diskUsedBytes: 0, diskTotalBytes: 0, netRxBytesPerSec: 0, netTxBytesPerSec: 0, gpus: [], dockerOk: true, dockerMessage: '', tasks: [], free: FREE, lifecycleState: 'connected', accepting: true, ...r });
    call.end();
  });
  check('a report with 200,000 GPU entries', await reportOnce({ gpus }), status.RESOURCE_EXHAUSTED, /^Received message larger than max \(\d+ vs 1048576\)$/);
  // Over the report cap (room for a full data cache listing), under the 1 MiB receive cap.
  check('a report with 50,000 GPU entries', await reportOnce({ gpus: gpus.slice(0, 50_000) }), status.INVALID_ARGUMENT, new RegExp(`^Report: the message is \\d+ bytes, over the limit of ${MAX_REPORT_BYTES} bytes; it was not read$`));
  check('a report with 65 GPU entries', await reportOnce({ gpus: gpus.slice(0, 65) }), status.INVALID_ARGUMENT, /^gpus: 65 GPU entries, over the limit of 64$/);
  check('a report with a NaN CPU load', await reportOnce({ cpuPercent: Number.NaN }), status.INVALID_ARGUMENT, /^cpu_percent: NaN is not a finite number$/);

  // The operator still sees every node, with what was last accepted.
  const nodes = await h.admin.listNodes();
  assert.deepEqual(nodes.map((n) => n.name), ['steady']);
  assert.deepEqual(nodes[0]!.facts?.labels, new Map());
  assert.equal(nodes[0]!.lastReport?.gpus.length, 0);
  assert.equal(nodes[0]!.lastReport?.cpuPercent, 1);
});

test('a node repeating Register or Subscribe in a loop is refused past 30 a minute', async (t) => {
  const h = await startMaster(t);
  const w = await worker(t, h);
  const md = bearerMetadata(w.credential);
  const outcomes = await Promise.all(Array.from({ length: 32 }, () => trySubscribe(w.client, md, [], 1000)));
  const limited = outcomes.filter((o) => !o.accepted && o.err.code === status.RESOURCE_EXHAUSTED && /more than 30 Subscribe calls in 60 s; refused, retry in \d+ s$/.test(o.err.details)).length;
  recordHostile('node input: 32 Subscribes at once from one node', 2 - limited, 2);
  assert.equal(limited, 2, JSON.stringify(outcomes.map((o) => (o.accepted ? 'accepted' : o.err.details))));
  let registerErr: ServiceError | undefined;
  for (let i = 0; i < 31 && !registerErr; i++) {
    registerErr = await w.register(w.credential).then(() => undefined, (e: ServiceError) => e);
  }
  recordHostile('node input: 31 credential Registers from one node', !(registerErr?.code === status.RESOURCE_EXHAUSTED));
  assert.equal(registerErr?.code, status.RESOURCE_EXHAUSTED);
  assert.match(registerErr.details, /more than 30 Register calls in 60 s/);
  assert.ok((await h.admin.listNodes()).length === 1, 'the master keeps serving');
});

test('a log follower that stops reading holds a bounded backlog: live output past 1 MiB is skipped and the reader told how much', async (t) => {
  const { h, w, taskId } = await assignedTask(t);
  await w.update({ taskId, attempt: 1, seq: 1, state: TaskState.TASK_STATE_RUNNING });

  // A follower paused at the HTTP/2 level: nothing past the 64 KiB window leaves the master.
  const session = http2Connect(`http://${h.address}`);
  session.on('error', () => undefined);
  t.after(() => session.close());
  const s = pausedAdminStream(session, h.adminToken, 'StreamLogs', StreamLogsRequest.encode({ taskId, follow: true }).finish());
  const received: Buffer[] = [];
  s.on('data', (d: Buffer) => received.push(d));
  await new Promise((r) => setTimeout(r, 300));

  // The task floods: 16 MiB of output while the follower reads nothing.
  const line = 'x'.repeat(64 * 1024 - 1) + '\n';
  for (let i = 0; i < 4; i++) await w.pushLogs(taskId, 1, Array.from({ length: 64 }, () => line));
  await w.update({ taskId, attempt: 1, seq: 2, state: TaskState.TASK_STATE_FAILED, outcome: { kind: OutcomeKind.OUTCOME_KIND_EXITED, exitCode: 1, message: 'flooded', durationMs: 5, resultSize: 0, resultSha256: '' } });

  s.resume();
  await new Promise<void>((resolve) => s.on('close', () => resolve()));
  const body = Buffer.concat(received);
  let dataBytes = 0;
  const notes: string[] = [];
  for (let at = 0; at + 5 <= body.length;) {
    const len = body.readUInt32BE(at + 1);
    const c = LogChunkCodec.decode(body.subarray(at + 5, at + 5 + len));
    if (c.data.toString().includes('[hivemind:')) notes.push(c.data.toString());
    else dataBytes += c.data.length;
    at += 5 + len;
  }
  t.diagnostic(`follower received ${dataBytes} of ${16 * 1024 * 1024} bytes pushed; note: ${notes[0]?.trim()}`);
  recordHostile('streams: a log follower that stops reading while a task floods 16 MiB', dataBytes > 4 * 1024 * 1024);
  assert.ok(dataBytes <= 4 * 1024 * 1024, `a stalled follower was sent ${dataBytes} bytes: the master queued them all for it`);
  assert.equal(notes.length, 1, 'the follower is told once what it missed');
  assert.match(notes[0]!, /\[hivemind: \d+ bytes of live output skipped here: this reader fell behind/);
  // The stored log is whole: a new reader gets it.
  let stored = 0;
  for await (const c of h.admin.streamLogs(taskId)) stored += c.data.length;
  assert.ok(stored > 0);
});

test('a node flooding reports is cut off past ten a second: the stream ends RESOURCE_EXHAUSTED and the master keeps serving', async (t) => {
  const h = await startMaster(t);
  const w = await worker(t, h);
  const md = bearerMetadata(w.credential);
  const ended = new Promise<ServiceError | undefined>((resolve) => {
    const call = w.client.report(md, (e) => resolve(e ?? undefined));
    for (let seq = 1; seq <= 2000; seq++) {
      call.write({
        seq, atMs: Date.now(), cpuPercent: 1, memoryUsedBytes: 0, memoryTotalBytes: 0, diskUsedBytes: 0, diskTotalBytes: 0,
        netRxBytesPerSec: 0, netTxBytesPerSec: 0, gpus: [], dockerOk: true, dockerMessage: '', tasks: [], free: FREE, lifecycleState: 'connected', accepting: true,
      });
    }
    call.end();
  });
  const err = await ended;
  recordHostile('node input: 2,000 reports in one burst', !(err?.code === status.RESOURCE_EXHAUSTED));
  assert.equal(err?.code, status.RESOURCE_EXHAUSTED, 'the flood was taken whole');
  assert.match(err.details, /more than 600 Report message calls in 60 s/);
  const nodes = await h.admin.listNodes();
  assert.equal(nodes.length, 1, 'the master keeps serving');
});

test('task updates are bounded: an oversized update is refused unread, long text is cut, a forged hash or capacity refused; the state change is kept', async (t) => {
  const { h, w, taskId } = await assignedTask(t);
  const refused = async (name: string, u: Parameters<FakeWorker['update']>[0], re: RegExp, code = status.INVALID_ARGUMENT) => {
    const err = await w.update(u).then(() => undefined, (e: ServiceError) => e);
    recordHostile(`node input: ${name}`, !(err?.code === code && re.test(err.details)));
    assert.equal(err?.code, code, name);
    assert.match(err.details, re, name);
  };
  await refused('an update of 3 MB', { taskId, attempt: 1, seq: 1, state: TaskState.TASK_STATE_RUNNING, message: 'm'.repeat(3_000_000) }, /^Received message larger than max \(\d+ vs 1048576\)$/, status.RESOURCE_EXHAUSTED);
  await refused('an update of 200 kB', { taskId, attempt: 1, seq: 1, state: TaskState.TASK_STATE_RUNNING, message: 'm'.repeat(200_000) }, /^UpdateTask: the message is \d+ bytes, over the limit of 65536 bytes; it was not read$/);
  await refused('a forged result hash', { taskId, attempt: 1, seq: 1, state: TaskState.TASK_STATE_FAILED, outcome: { kind: OutcomeKind.OUTCOME_KIND_EXITED, exitCode: 1, message: '', durationMs: 1, resultSize: 0, resultSha256: 'x'.repeat(500) } }, /^outcome\.result_sha256: .* is not 64 lowercase hex digits$/);
  await refused('a capacity of NaN CPUs', { taskId, attempt: 1, seq: 1, state: TaskState.TASK_STATE_RUNNING, free: { ...FREE, cpus: Number.NaN } }, /^free\.cpus: NaN is not a finite number$/);
  assert.equal((await h.admin.getTask(taskId)).state, TaskState.TASK_STATE_ASSIGNED, 'nothing of a refused update was applied');

  // 60 kB of reason: the task still fails, with the reason cut and its size said.
  const ack = await w.update({ taskId, attempt: 1, seq: 2, state: TaskState.TASK_STATE_FAILED, outcome: { kind: OutcomeKind.OUTCOME_KIND_EXITED, exitCode: 1, message: 'r'.repeat(60_000), durationMs: 1, resultSize: 0, resultSha256: '' } });
  assert.equal(ack.applied, true);
  const info = await h.admin.getTask(taskId);
  recordHostile('node input: an outcome message of 60 kB', (info.outcome?.message.length ?? 0) > 5000);
  assert.equal(info.state, TaskState.TASK_STATE_FAILED);
  assert.ok(info.outcome!.message.length < 4200, String(info.outcome!.message.length));
  assert.match(info.outcome!.message, /…\(cut: 60000 bytes in all\)$/);
});

test('a submission whose input archive passes what a node takes is refused while it streams; nothing is stored or queued', async (t) => {
  const h = await startMaster(t, { maxInputArchiveBytes: 1024 * 1024 });
  const inputFile = join(h.dir, 'big-input.tar.gz');
  await writeFile(inputFile, randomBytes(3 * 1024 * 1024));
  const err = await h.admin.submit({ image: 'busybox' }, { inputFile }).then(() => undefined, (e: unknown) => e as MasterCallError);
  recordHostile('submission: an input archive past the node input cap', err === undefined);
  assert.equal(err?.status, status.INVALID_ARGUMENT);
  assert.match(err.message, /the input archive passes 1\.0 MiB, the most a node takes .*nothing was stored/);
  assert.deepEqual(await readdir(join(h.dir, 'inputs')), [], 'no partial input is left');
  assert.equal((await h.admin.listTasks()).length, 0, 'nothing was queued');
});

test('enrollment tokens list in pages like every listing: thousands of tokens list whole, a forged page token is refused, revoke still finds its token', async (t) => {
  const h = await startMaster(t);
  const db = masterDb(t, h);
  // 2,500 tokens planted in one transaction (creating them one by one through the API is slow).
  const insert = db.prepare('INSERT INTO enrollment_tokens (hash, expires_at, uses_left, created_at, revoked) VALUES (?, ?, 1, ?, 0)');
  db.transaction(() => {
    for (let i = 0; i < 2500; i++) insert.run(createHash('sha256').update(`t${i}`).digest('hex'), Date.now() + 3_600_000, 1_000 + (i % 7));
  });
  const first = await h.admin.listTokensPage({ limit: 10 });
  assert.equal(first.tokens.length, 10);
  assert.notEqual(first.nextPageToken, '');
  const all = await h.admin.listTokens();
  recordHostile('listing: 2,500 enrollment tokens', all.length !== 2500);
  assert.equal(all.length, 2500);
  assert.equal(new Set(all.map((x) => x.tokenId)).size, 2500, 'each token once across pages');
  const forged = await h.admin.listTokensPage({ pageToken: 'Zm9yZ2Vk' }).then(() => undefined, (e: unknown) => e as MasterCallError);
  recordHostile('listing: a forged token page token', forged === undefined);
  assert.equal(forged?.status, status.INVALID_ARGUMENT);
  const revoked = await h.admin.revokeToken(all[1234]!.tokenId);
  assert.equal(revoked.tokenId, all[1234]!.tokenId);
  assert.equal(revoked.revoked, true);
});

test('log offsets from a node are untrusted: a resend is dropped, a huge offset or one on no stream refused, another task\'s ignored; the master keeps serving', async (t) => {
  const { h, w, taskId } = await assignedTask(t);
  await w.update({ taskId, attempt: 1, seq: 1, state: TaskState.TASK_STATE_RUNNING });
  const chunk = (offset: number | undefined, data: string, stream = LogStream.LOG_STREAM_STDOUT, attempt = 1): LogChunk => ({ taskId, attempt, stream, data: Buffer.from(data), atMs: 0, offset });
  const stored = () => readFile(join(h.dir, 'logs', `${taskId}.log`), 'utf8');

  assert.deepEqual(await w.logOffset(taskId, 1), { stdout: 0, stderr: 0 });
  await w.pushChunks([chunk(0, 'line 1\n'), chunk(7, 'line 2\n'), chunk(0, 'err 1\n', LogStream.LOG_STREAM_STDERR)]);
  assert.deepEqual(await w.logOffset(taskId, 1), { stdout: 14, stderr: 6 });

  // Offsets going backwards (a resend, or a lie): what is held is not written again.
  await w.pushChunks([chunk(0, 'line 1\n'), chunk(3, 'XXXXXXXXXXXY')]);
  const backwards = await stored();
  recordHostile('log offsets: chunks with offsets going backwards over held bytes', backwards !== 'line 1\nline 2\nerr 1\nY');
  assert.equal(backwards, 'line 1\nline 2\nerr 1\nY', 'only the byte past what was held (offset 14)');

  // An offset whose end passes 2^53 would not count bytes exactly: refused with the reason.
  const huge = await w.pushChunks([chunk(Number.MAX_SAFE_INTEGER - 2, 'far away\n')]).then(() => undefined, (e: unknown) => e);
  recordHostile('log offsets: a chunk ending past 2^53', huge === undefined);
  assert.equal(grpcCode(huge), status.INVALID_ARGUMENT);
  assert.match((huge as ServiceError).details, /offset \d+ is out of range \(at most 2\^53 bytes per stream\)/);
  // Past 2^53 the generated decoder refuses the message itself (as for every uint64 field).
  const past = await w.pushChunks([chunk(2 ** 60, 'farther\n')]).then(() => undefined, (e: unknown) => e);
  recordHostile('log offsets: a chunk at offset 2^60', past === undefined);
  assert.equal(grpcCode(past), status.INTERNAL);
  assert.match((past as ServiceError).details, /Error deserializing request/);

  const noStream = await w.pushChunks([chunk(15, 'which?\n', LogStream.LOG_STREAM_UNSPECIFIED)]).then(() => undefined, (e: unknown) => e);
  recordHostile('log offsets: an offset on a chunk of no stream', noStream === undefined);
  assert.equal(grpcCode(noStream), status.INVALID_ARGUMENT);
  assert.match((noStream as ServiceError).details, /an offset is only meaningful on stdout or stderr/);

  // An attempt this node does not run, a task that is not its: neither written nor told.
  await w.pushChunks([chunk(15, 'intruder\n', LogStream.LOG_STREAM_STDOUT, 2)]);
  assert.equal(await stored(), 'line 1\nline 2\nerr 1\nY');
  for (const [id, attempt] of [[taskId, 2], ['nosuchtask', 1]] as const) {
    const foreign = await w.logOffset(id, attempt).then(() => undefined, (e: unknown) => e);
    recordHostile(`log offsets: a node asks how much of a log it does not write is held (${id === taskId ? 'another attempt' : 'an unknown task'})`, foreign === undefined);
    assert.ok(grpcCode(foreign) === status.FAILED_PRECONDITION || grpcCode(foreign) === status.NOT_FOUND, String(foreign));
  }

  // A far jump within range is a gap: noted, the chunk kept.
  await w.pushChunks([chunk(1000, 'after a gap\n')]);
  assert.match(await stored(), /\[hivemind: 985 bytes of stdout missing here: [^\]]*\]\nafter a gap\n$/);
  assert.deepEqual(await w.logOffset(taskId, 1), { stdout: 1012, stderr: 6 });
  assert.equal(await w.pushChunks([chunk(undefined, 'an older node\n')]), 1, 'the master keeps serving');
});
