// The master's exec relay against scripted nodes over real gRPC (real master, real SQLite or PostgreSQL): a
// session relayed both ways with its exit code and events, the refusals (not running, a node that
// does not allow exec, bounds) and the hostile cases (another node attaching, an unknown or
// reused session id, a second start, oversized stdin, too many sessions), each in the ledger.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { credentials, status, type ClientDuplexStream, type ServiceError } from '@grpc/grpc-js';
import { AdminClient } from '../../src/client/admin-client.js';
import { runExec } from '../../src/client/exec-client.js';
import { Master } from '../../src/master/master.js';
import { AdminServiceChunkClient } from '../../src/protocol/chunk-codec.js';
import { bearerMetadata } from '../../src/protocol/auth-metadata.js';
import { TaskState, type ExecInput, type ExecOutput, type ExecStart } from '../../src/protocol/gen/hivemind/v1/common.js';
import type { ExecNodeMessage } from '../../src/protocol/gen/hivemind/v1/node.js';
import { recordHostile } from '../helpers/fault-ledger.js';
import { ScriptedNode } from '../helpers/scripted-node.js';
import { masterStoreOption } from '../helpers/test-store.js';

type NodeStream = ClientDuplexStream<ExecNodeMessage, ExecInput>;

async function harness(t: TestContext) {
  const dir = await mkdtemp(join(tmpdir(), 'hm-exec-'));
  const master = await Master.create({ listenAddress: '127.0.0.1:0', dataDir: join(dir, 'master'), shutdownGraceMs: 200, ...masterStoreOption() });
  const address = await master.start();
  const adminToken = (await readFile(master.adminTokenPath, 'utf8')).trim();
  const admin = AdminClient.connect(address, adminToken);
  const nodes: ScriptedNode[] = [];
  t.after(async () => {
    for (const n of nodes) n.close();
    admin.close();
    await master.close();
    await rm(dir, { recursive: true, force: true });
  });
  /** A node with a task RUNNING on it. */
  const plainNode = async (name: string) => {
    const node = new ScriptedNode(address);
    nodes.push(node);
    await node.register((await admin.createToken()).token, name);
    return node;
  };
  /** A node with a task RUNNING on it (the first task the master assigns it). */
  const runningTask = async (name: string, exec: boolean) => {
    const node = await plainNode(name);
    await admin.submit({ image: 'busybox', command: ['sleep', '600'] });
    // One slot: the next task goes to the next node.
    node.online({ exec, free: { cpus: 4, memoryBytes: 8 * 1024 ** 3, gpuIndexes: [], taskSlots: 1 } });
    const a = await node.nextAssignment();
    await node.update(a.taskId, a.attempt, TaskState.TASK_STATE_ACCEPTED);
    await node.update(a.taskId, a.attempt, TaskState.TASK_STATE_RUNNING);
    return { node, taskId: a.taskId };
  };
  /** A raw client stream, for what the exec client never sends. */
  const rawClient = () => {
    const c = new AdminServiceChunkClient(address, credentials.createInsecure());
    t.after(() => c.close());
    return c.exec(bearerMetadata(adminToken));
  };
  const exec = (start: Partial<ExecStart>, stdin?: string) => {
    const out = new PassThrough();
    const err = new PassThrough();
    const chunks: Buffer[] = [];
    out.on('data', (b: Buffer) => chunks.push(b));
    err.resume();
    const input = stdin === undefined ? undefined : PassThrough.from([Buffer.from(stdin)]);
    const full: ExecStart = { target: '', command: ['cat'], tty: false, stdin: stdin !== undefined, size: undefined, ...start };
    let onStarted!: () => void;
    const started = new Promise<void>((resolve) => (onStarted = resolve));
    const done = runExec(address, adminToken, full, { stdout: out, stderr: err, onStarted: () => onStarted(), ...(input ? { stdin: input } : {}) });
    return { done, started, stdout: () => Buffer.concat(chunks).toString() };
  };
  return { address, admin, plainNode, runningTask, rawClient, exec };
}

/** The node's side: attach to `sessionId`; resolves with the stream once its first reply or error comes, or after a pause. */
function attach(node: ScriptedNode, sessionId: string): NodeStream {
  const s = node.execSession();
  s.write({ message: { $case: 'attach', value: { sessionId } } });
  return s;
}

function streamError(s: { on(e: 'error', f: (e: ServiceError) => void): unknown; on(e: 'data', f: () => void): unknown }): Promise<ServiceError> {
  return new Promise((resolve) => {
    s.on('data', () => undefined);
    s.on('error', resolve);
  });
}

function nextInput(s: NodeStream): Promise<ExecInput> {
  return new Promise((resolve, reject) => {
    s.once('data', resolve);
    s.once('error', reject);
  });
}

test('a session is relayed both ways: stdin to the node, its output and exit code back, recorded in the task\'s events', async (t) => {
  const h = await harness(t);
  const { node, taskId } = await h.runningTask('n1', true);
  const session = h.exec({ target: taskId, command: ['cat'] }, 'hi\n');
  const open = await node.nextCommand('exec');
  assert.equal(open.taskId, taskId);
  assert.equal(open.attempt, 1);
  assert.deepEqual(open.start?.command, ['cat']);
  assert.equal(open.start?.target, '', 'the target is not passed on');
  assert.match(open.sessionId, /^[0-9a-f]{32}$/);
  const s = attach(node, open.sessionId);
  const stdin = await nextInput(s);
  assert.equal(stdin.input?.$case, 'stdin');
  const eof = await nextInput(s);
  assert.equal(eof.input?.$case, 'stdinEof');
  s.write({ message: { $case: 'output', value: { output: { $case: 'stdout', value: (stdin.input as { value: Buffer }).value } } } });
  s.write({ message: { $case: 'output', value: { output: { $case: 'exit', value: { code: 3, error: '' } } } } });
  const r = await session.done;
  assert.deepEqual(r, { code: 3, error: '' });
  assert.equal(session.stdout(), 'hi\n');
  const events = (await h.admin.getTask(taskId)).events.map((e) => e.message);
  assert.ok(events.includes('exec started: cat'), events.join('\n'));
  assert.ok(events.some((m) => /^exec ended: exit 3 after \d+\.\d s$/.test(m)), events.join('\n'));
});

test('exec is refused with the reason: a task not running, a node that does not allow exec, an unknown target or service', async (t) => {
  const h = await harness(t);
  const queued = await h.admin.submit({ image: 'busybox', command: ['true'] });
  await assert.rejects(h.exec({ target: queued }).done, /task [0-9a-f]{16} is QUEUED; exec needs a RUNNING task/);
  await h.admin.cancelTask(queued);
  const { taskId } = await h.runningTask('closed-node', false);
  await assert.rejects(h.exec({ target: taskId }).done, (e: Error & { status?: number }) => e.status === status.FAILED_PRECONDITION && /node closed-node does not allow exec: its operator runs it with --no-exec/.test(e.message));
  await assert.rejects(h.exec({ target: 'feedfeedfeedfeed' }).done, /no task feedfeedfeedfeed/);
  await assert.rejects(h.exec({ target: 'web/2' }).done, /service web has no replica 2/);
  await assert.rejects(h.exec({ target: 'no such thing' }).done, /neither a task id/);
  await assert.rejects(h.exec({ target: taskId, command: [] }).done, /0 arguments/);
});

test('hostile nodes: another node\'s session, an unknown session id, streams no session waits for, a second attach and a protocol break are refused or cut', async (t) => {
  const h = await harness(t);
  const { node, taskId } = await h.runningTask('n1', true);
  const { node: other, taskId: otherTask } = await h.runningTask('n2', true);

  const idle = await streamError(other.execSession());
  recordHostile('exec: a node opens ExecSession with no session waiting for it', idle.code !== status.FAILED_PRECONDITION);
  assert.equal(idle.code, status.FAILED_PRECONDITION);
  assert.match(idle.details, /no exec session is waiting for node/);

  const session = h.exec({ target: taskId, command: ['sh'], stdin: false });
  const open = await node.nextCommand('exec');
  // n2 gets a session of its own, so its streams are read: what it claims is then checked.
  const otherSession = h.exec({ target: otherTask, command: ['sh'] });
  otherSession.done.catch(() => undefined);
  await other.nextCommand('exec');

  const stolen = await streamError(attach(other, open.sessionId));
  recordHostile('exec: a node attaches to another node\'s session', stolen.code !== status.PERMISSION_DENIED);
  assert.equal(stolen.code, status.PERMISSION_DENIED);
  assert.match(stolen.details, /opened on another node/);

  const unknown = await streamError(attach(other, 'ab'.repeat(16)));
  recordHostile('exec: a node attaches to an unknown session id', unknown.code !== status.NOT_FOUND);
  assert.equal(unknown.code, status.NOT_FOUND);

  const notAttach = other.execSession();
  notAttach.write({ message: { $case: 'output', value: { output: { $case: 'stdout', value: Buffer.from('x') } } } });
  const noAttach = await streamError(notAttach);
  recordHostile('exec: a node sends output before attaching', noAttach.code !== status.INVALID_ARGUMENT);
  assert.match(noAttach.details, /first message must be attach/);

  // One session waits for n2: a second silent stream beside a first one is refused unread.
  const silent = other.execSession();
  silent.on('error', () => undefined);
  await new Promise((r) => setTimeout(r, 100));
  const flood = await streamError(other.execSession());
  recordHostile('exec: a node opens more ExecSession streams than sessions wait for it', flood.code !== status.FAILED_PRECONDITION);
  assert.match(flood.details, /has 1 ExecSession streams open before their attach/);
  silent.cancel();

  const s = attach(node, open.sessionId);
  await session.started;
  // Attached: no session waits for n1 any more, so a second attach is refused before it is read.
  const twice = await streamError(attach(node, open.sessionId));
  recordHostile('exec: a node attaches twice to one session', twice.code !== status.FAILED_PRECONDITION);
  assert.match(twice.details, /no exec session is waiting for node/);

  // After the attach, the node sends the master's own message: the session is cut, the client told why.
  s.on('error', () => undefined);
  s.write({ message: { $case: 'output', value: { output: { $case: 'started', value: { sessionId: 'x', taskId, attempt: 1, nodeId: 'x' } } } } });
  const r = await session.done;
  recordHostile('exec: a node breaks the protocol mid-session', r.code !== 255);
  assert.equal(r.code, 255);
  assert.match(r.error, /node n1 broke the exec protocol \(a started message/);
});

test('hostile clients: a second start and oversized stdin end the session (the node\'s stream ends); a fifth session into a task is refused', async (t) => {
  const h = await harness(t);
  const { node, taskId } = await h.runningTask('n1', true);
  for (const c of [
    { what: 'a second start', msg: { input: { $case: 'start', value: { target: taskId, command: ['sh'], tty: false, stdin: true, size: undefined } } }, re: /second start/ },
    { what: 'a 65537-byte stdin message', msg: { input: { $case: 'stdin', value: Buffer.alloc(64 * 1024 + 1) } }, re: /65537 bytes, over the limit of 65536/ },
  ] satisfies { what: string; msg: ExecInput; re: RegExp }[]) {
    const call = h.rawClient();
    const outs: ExecOutput[] = [];
    call.on('data', (m: ExecOutput) => outs.push(m));
    const failed = new Promise<ServiceError>((resolve) => call.on('error', resolve));
    call.write({ input: { $case: 'start', value: { target: taskId, command: ['sh'], tty: false, stdin: true, size: undefined } } });
    const open = await node.nextCommand('exec');
    const s = attach(node, open.sessionId);
    const nodeEnded = new Promise<void>((resolve) => {
      s.on('data', () => undefined);
      s.on('end', resolve);
      s.on('error', () => resolve());
    });
    while (outs.length === 0) await new Promise((r) => setTimeout(r, 10));
    call.write(c.msg);
    const err = await failed;
    recordHostile(`exec: a client sends ${c.what}`, err.code !== status.INVALID_ARGUMENT);
    assert.equal(err.code, status.INVALID_ARGUMENT, c.what);
    assert.match(err.details, c.re);
    await nodeEnded;
  }

  const sessions = Array.from({ length: 4 }, () => h.exec({ target: taskId, command: ['sleep', '9'] }));
  for (let i = 0; i < 4; i++) await node.nextCommand('exec');
  const fifth = h.exec({ target: taskId, command: ['sh'] }).done;
  const refused = await fifth.then(() => undefined, (e: Error & { status?: number }) => e);
  recordHostile('exec: a fifth session into one task', refused?.status !== status.RESOURCE_EXHAUSTED);
  assert.equal(refused?.status, status.RESOURCE_EXHAUSTED);
  assert.match(refused!.message, /has 4 exec sessions open, the most one task takes/);
  // Never attached: each fails within the attach timeout; not waited for here (10 s each).
  for (const s of sessions) s.done.catch(() => undefined);
});

test('a lost node gives the client exit 255 with the reason; a client that goes away ends the node\'s stream', async (t) => {
  const h = await harness(t);
  const { node, taskId } = await h.runningTask('n1', true);
  const one = h.exec({ target: taskId, command: ['top'] });
  const s = attach(node, (await node.nextCommand('exec')).sessionId);
  s.on('error', () => undefined);
  await new Promise((r) => setTimeout(r, 100));
  s.cancel();
  const r = await one.done;
  assert.equal(r.code, 255);
  assert.match(r.error, /lost the node n1/);

  const call = h.rawClient();
  call.on('data', () => undefined);
  call.on('error', () => undefined);
  call.write({ input: { $case: 'start', value: { target: taskId, command: ['sh'], tty: true, stdin: true, size: { cols: 80, rows: 24 } } } });
  const s2 = attach(node, (await node.nextCommand('exec')).sessionId);
  const ended = new Promise<string>((resolve) => {
    s2.on('data', () => undefined);
    s2.on('end', () => resolve('end'));
    s2.on('error', (e) => resolve(`error ${e.message}`));
  });
  await new Promise((r) => setTimeout(r, 100));
  call.cancel();
  assert.equal(await ended, 'end');
  const events = (await h.admin.getTask(taskId)).events.map((e) => e.message);
  assert.ok(events.some((m) => /^exec ended: exit 255 after .* \(the client went away\)$/.test(m)), events.join('\n'));
});
