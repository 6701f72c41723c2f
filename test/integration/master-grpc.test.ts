// A real Master on 127.0.0.1:0 with a temp data dir, driven by a scripted fake worker built on
// NodeServiceClient and by AdminClient: the protocol end to end, over real gRPC and SQLite.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as netConnect } from 'node:net';
import { Client as GrpcClient, Metadata as MetadataClass, credentials, status, type ClientReadableStream, type ClientWritableStream, type Metadata, type ServiceError } from '@grpc/grpc-js';
import { AdminClient, MasterCallError } from '../../src/client/admin-client.js';
import { recordHostile } from '../helpers/fault-ledger.js';
import { Master, type MasterOptions } from '../../src/master/master.js';
import { resultUploadBound } from '../../src/master/result-bound.js';
import { bearerMetadata } from '../../src/protocol/auth-metadata.js';
import {
  LogStream, OutcomeKind, TaskState, type Capacity, type DataChunk, type ResourceReport,
} from '../../src/protocol/gen/hivemind/v1/common.js';
import {
  NodeServiceClient, type NodeCommand, type RegisterResponse, type TaskUpdate, type TaskUpdateAck,
  type UploadOffsetResponse, type UploadResultRequest, type UploadResultResponse,
} from '../../src/protocol/gen/hivemind/v1/node.js';
import { AdminServiceClient, type TaskInfo } from '../../src/protocol/gen/hivemind/v1/admin.js';

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

interface Harness {
  master: Master;
  admin: AdminClient;
  dir: string;
  address: string;
  adminToken: string;
}

async function startMaster(t: TestContext, opts: Partial<MasterOptions> = {}, dir?: string): Promise<Harness> {
  const dataDir = dir ?? (await mkdtemp(join(tmpdir(), 'hm-master-')));
  const master = await Master.create({ listenAddress: '127.0.0.1:0', dataDir, shutdownGraceMs: 200, ...opts });
  const address = await master.start();
  const adminToken = (await readFile(master.adminTokenPath, 'utf8')).trim();
  const admin = AdminClient.connect(address, adminToken);
  t.after(async () => {
    admin.close();
    await master.close();
    if (!dir) await rm(dataDir, { recursive: true, force: true });
  });
  return { master, admin, dir: dataDir, address, adminToken };
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
      this.client.register({ name, facts: { hostname: 'fake-host', os: 'linux', osRelease: '', arch: 'x64', cpuCores: 4, cpuModel: 'fake', memoryBytes: 8 * 1024 ** 3, diskBytes: 0, gpus: [], dockerVersion: '20.10', labels: {}, workerVersion: 'test', maxTasks: 2 } },
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

  subscribe(running: { taskId: string; attempt: number }[] = [], free: Capacity = FREE): void {
    this.sub?.cancel();
    this.sub = this.client.subscribe({ running, free, accepting: true }, this.md!);
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

async function assignmentOf(w: FakeWorker) {
  const cmd = await w.nextCommand();
  assert.equal(cmd.command?.$case, 'assign', `expected an assignment, got ${JSON.stringify(cmd)}`);
  return cmd.command.value;
}

const grpcCode = (err: unknown) => (err as Partial<ServiceError>).code;

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
  const db = await readFile(join(h.dir, 'master.db'));
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
  const bound = resultUploadBound(MiB);
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
  const h = await startMaster(t);
  const w = await worker(t, h);
  w.report();
  w.subscribe();
  const taskId = await h.admin.submit({ image: 'busybox' });
  await assignmentOf(w);
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
  const h = await startMaster(t);
  const w = await worker(t, h);
  w.report();
  w.subscribe();
  const taskId = await h.admin.submit({ image: 'busybox' });
  await assignmentOf(w);
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
  const h = await startMaster(t);
  const w = await worker(t, h);
  w.report();
  w.subscribe();
  const taskId = await h.admin.submit({ image: 'busybox' });
  await assignmentOf(w);
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
  await bad({ image: 'busybox', limits: { ...limits, memoryBytes: 1024 } }, /under Docker's minimum/);
  await bad({ image: 'busybox', limits: { ...limits, memoryBytes: 2 ** 50 } }, /limits\.memory_bytes is .* over the maximum/);
  await bad({ image: 'busybox', limits: { ...limits, pids: 2 ** 31 } }, /limits\.pids is 2147483648, over the maximum/);
  await bad({ image: 'busybox', limits: { ...limits, gpus: 1000 } }, /limits\.gpus is 1000, over the maximum of 64/);
  await bad({ image: 'busybox', limits: { ...limits, timeoutMs: 365 * 24 * 3600 * 1000 } }, /limits\.timeout_ms is 31536000000, over the maximum/);
  await bad({ image: 'busybox', command: [''] }, /spec\.command\[0\] is empty/);
  await bad({ image: 'busybox', command: ['sh', 'a\0b'] }, /contains a NUL byte/);
  await bad({ image: 'bad image name' }, /not a valid image reference/);
  await bad({ image: 'busybox', env: { 'BAD-NAME': 'x' } }, /not a valid variable name/);
  await bad({ image: 'busybox', env: { '1X': 'x' } }, /not a valid variable name/);
  await bad({ image: 'busybox', env: { HIVEMIND_TASK: 'x' } }, /reserved/);
  // A corrupted input (trailer sha256 wrong) never becomes a task.
  const raw = new AdminServiceClient(h.address, credentials.createInsecure());
  t.after(() => raw.close());
  const err = await new Promise<ServiceError | null>((resolve) => {
    const call = raw.submitTask(bearerMetadata(h.adminToken), (e) => resolve(e));
    call.write({ part: { $case: 'header', value: { spec: { image: 'busybox', command: [], env: {}, maxOutputBytes: 0 }, hasInput: true, maxAttempts: 0 } } });
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
  const h = await startMaster(t, { reportIntervalMs: 300, maxAttempts: 2 });
  const w = await worker(t, h);
  w.report();
  w.subscribe();
  const taskId = await h.admin.submit({ image: 'busybox' });
  await assignmentOf(w);
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
    Master.create({ listenAddress: '127.0.0.1:0', dataDir: join(tmpdir(), 'hm-never-created'), reportIntervalMs: 1000, nodeTimeoutMs: 999 }),
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
  const first = await Master.create({ listenAddress: '127.0.0.1:0', dataDir: dir, shutdownGraceMs: 100 });
  const addr1 = await first.start();
  const token = (await readFile(first.adminTokenPath, 'utf8')).trim();
  const admin1 = AdminClient.connect(addr1, token);
  const taskId = await admin1.submit({ image: 'busybox', env: { A: '1' } });
  const w = new FakeWorker(addr1);
  const reg = await w.register((await admin1.createToken()).token, 'survivor');
  w.close();
  admin1.close();
  await first.close();
  await first.close(); // idempotent

  const h = await startMaster(t, {}, dir);
  assert.equal(h.adminToken, token);
  const task = await h.admin.getTask(taskId);
  assert.equal(task.state, TaskState.TASK_STATE_QUEUED);
  assert.deepEqual(task.spec?.env, { A: '1' });
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
