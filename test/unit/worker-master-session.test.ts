// The worker's session with the master on its own, with a scripted fake connection: connect,
// register, catch up, subscribe; reconnect with backoff; a refusal at start; removal; close.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { status } from '@grpc/grpc-js';
import { ManualClock } from '../../src/common/clock.js';
import { AbortedError, NodeRemovedError } from '../../src/common/errors.js';
import { silentLogger } from '../../src/common/logger.js';
import { toServiceError } from '../../src/protocol/grpc-errors.js';
import { NodeFacts } from '../../src/protocol/gen/hivemind/v1/common.js';
import type { NodeCommand, RegisterRequest, RegisterResponse, SubscribeRequest } from '../../src/protocol/gen/hivemind/v1/node.js';
import { identityPath, type NodeIdentity } from '../../src/worker/identity-file.js';
import { Lifecycle, type LifecycleState } from '../../src/worker/lifecycle.js';
import type { MasterConnection, ReportSink, SubscriptionHandle } from '../../src/worker/master-connection.js';
import { MasterSession, type MasterSessionDeps, type Session } from '../../src/worker/master-session.js';
import { waitFor as waitUntil } from '../helpers/cli-process.js';

const ADDRESS = '127.0.0.1:7999';

function grpcError(code: status, details = status[code]): Error {
  return Object.assign(new Error(`${code} ${status[code]}: ${details}`), { code, details });
}

/** Polls every 2 ms: the fake master answers at once. */
const waitFor = (what: string, pred: () => boolean) => waitUntil(what, pred, 4000, 2);

/** One connection to the fake master; `registerWith` decides the answer to Register. */
class FakeConnection {
  closed = false;
  reportClosed = false;
  subscribed: SubscribeRequest | undefined;
  reportError: ((err: Error) => void) | undefined;
  onCommand: ((cmd: NodeCommand) => void) | undefined;
  private endStream!: (err: Error | undefined) => void;
  private readonly streamEnded = new Promise<Error | undefined>((r) => (this.endStream = r));

  constructor(
    private readonly master: FakeMaster,
    private readonly registerWith: (req: RegisterRequest, bearer: string) => RegisterResponse | Error,
  ) {}

  register = async (req: RegisterRequest, bearer: string): Promise<RegisterResponse> => {
    this.master.timeline.push(`register ${bearer}`);
    const answer = this.registerWith(req, bearer);
    if (answer instanceof Error) throw answer;
    return answer;
  };

  openReportStream = (onError: (err: Error) => void): ReportSink => {
    this.master.timeline.push('reports open');
    this.reportError = onError;
    return { send: () => undefined, close: () => void (this.reportClosed = true) };
  };

  subscribe = (req: SubscribeRequest, onCommand: (cmd: NodeCommand) => void): SubscriptionHandle => {
    this.master.timeline.push('subscribe');
    this.subscribed = req;
    this.onCommand = onCommand;
    return { closed: this.streamEnded, close: () => this.endStream(undefined) };
  };

  /** The master ends the command stream (undefined: a clean end). */
  endCommands(err?: Error): void {
    this.endStream(err);
  }

  close = (): void => {
    this.closed = true;
  };
}

class FakeMaster {
  timeline: string[] = [];
  connections: FakeConnection[] = [];
  /** Register answers, one per connection in order; the last one repeats. */
  answers: ((req: RegisterRequest, bearer: string) => RegisterResponse | Error)[] = [];

  static accept(nodeId = 'node-1', nodeCredential = 'cred-1'): (req: RegisterRequest, bearer: string) => RegisterResponse {
    return () => ({ nodeId, nodeCredential, reportIntervalMs: 1000, masterVersion: 'test' });
  }

  readonly factory = (address: string): MasterConnection => {
    assert.equal(address, ADDRESS);
    const answer = this.answers[Math.min(this.connections.length, this.answers.length - 1)]!;
    const conn = new FakeConnection(this, answer);
    this.connections.push(conn);
    return conn as unknown as MasterConnection;
  };

  get last(): FakeConnection {
    return this.connections.at(-1)!;
  }
}

interface Harness {
  session: MasterSession;
  master: FakeMaster;
  lifecycle: Lifecycle;
  states: LifecycleState[];
  commands: NodeCommand[];
  removed: string[];
  dataDir: string;
  connected: number;
}

async function harness(t: TestContext, over: Partial<MasterSessionDeps> = {}, master = new FakeMaster()): Promise<Harness> {
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'hm-session-'));
  const lifecycle = new Lifecycle(silentLogger());
  const h: Harness = { session: undefined!, master, lifecycle, states: [], commands: [], removed: [], dataDir, connected: 0 };
  lifecycle.on('change', (c) => h.states.push(c.to));
  if (master.answers.length === 0) master.answers.push(FakeMaster.accept());
  const deps: MasterSessionDeps = {
    connectionFactory: master.factory,
    masterAddresses: [ADDRESS],
    dataDir,
    name: 'node-a',
    enrollmentToken: 'enroll-token',
    backoff: { initialMs: 2, maxMs: 4, factor: 2 },
    clock: new ManualClock(),
    logger: silentLogger(),
    lifecycle,
    identity: undefined,
    nodeFacts: () => NodeFacts.create({ hostname: 'host-a' }),
    onRegistered: () => void master.timeline.push('registered'),
    settlePrevious: async () => void master.timeline.push('settle previous'),
    catchUp: async () => void master.timeline.push('catch up'),
    subscribeRequest: () => ({ running: [], free: undefined, accepting: true }) as unknown as SubscribeRequest,
    onCommand: (cmd) => void h.commands.push(cmd),
    onConnected: () => void h.connected++,
    onRemoved: async (reason) => void h.removed.push(reason),
    ...over,
  };
  h.session = new MasterSession(deps);
  t.after(async () => {
    await h.session.close();
    await rm(dataDir, { recursive: true, force: true });
  });
  return h;
}

test('master session: registers with the enrollment token, saves the identity, catches up with reports open, then subscribes', async (t) => {
  const h = await harness(t);
  await h.session.start();
  await waitFor('connected', () => h.lifecycle.state === 'connected');
  assert.deepEqual(h.master.timeline, ['register enroll-token', 'registered', 'settle previous', 'reports open', 'catch up', 'subscribe']);
  assert.deepEqual(h.states, ['registering', 'connected']);
  assert.equal(h.session.nodeId, 'node-1');
  assert.equal(h.session.session?.ready, true);
  assert.equal(h.connected, 1);
  const saved = JSON.parse(await readFile(identityPath(h.dataDir), 'utf8')) as NodeIdentity;
  assert.equal(saved.nodeId, 'node-1');
  assert.equal(saved.credential, 'cred-1');
  assert.equal(saved.masterAddress, ADDRESS);
  // Commands on the stream reach the worker.
  const cmd = { command: { $case: 'cancel', value: { taskId: 't1', attempt: 1, reason: 'x' } } } as unknown as NodeCommand;
  h.master.last.onCommand!(cmd);
  assert.deepEqual(h.commands, [cmd]);
});

test('master session: a node with an identity registers with its credential and leaves identity.json alone when nothing changed', async (t) => {
  const identity: NodeIdentity = { nodeId: 'node-1', credential: 'cred-1', masterAddress: ADDRESS, registeredAt: 1 };
  const h = await harness(t, { identity, enrollmentToken: undefined });
  await h.session.start();
  assert.deepEqual(h.master.timeline.slice(0, 1), ['register cred-1']);
  assert.equal(existsSync(identityPath(h.dataDir)), false);
  assert.equal(h.session.nodeId, 'node-1');
});

test('master session: a lost command stream or report stream ends the session; it reconnects, registering again with the credential', async (t) => {
  const h = await harness(t);
  await h.session.start();
  await waitFor('connected', () => h.lifecycle.state === 'connected');
  const first = h.master.last;
  const firstSession = h.session.session!;

  first.endCommands(grpcError(status.UNAVAILABLE, 'master restarting'));
  await waitFor('second connection', () => h.master.connections.length === 2 && h.lifecycle.state === 'connected');
  assert.equal(firstSession.alive, false);
  assert.ok(first.closed && first.reportClosed, 'the lost connection is closed with its streams');
  assert.deepEqual(h.master.timeline.filter((e) => e.startsWith('register ')), ['register enroll-token', 'register cred-1']);
  assert.deepEqual(h.states, ['registering', 'connected', 'reconnecting', 'registering', 'connected']);
  assert.notEqual(h.session.session, firstSession);

  h.master.last.reportError!(grpcError(status.UNAVAILABLE));
  await waitFor('third connection', () => h.master.connections.length === 3 && h.lifecycle.state === 'connected');
  assert.equal(h.connected, 3);
});

test('master session: a master unreachable at start: start() returns, the loop retries with a growing backoff and connects later', async (t) => {
  const master = new FakeMaster();
  const down = () => grpcError(status.UNAVAILABLE, 'connection refused');
  master.answers.push(down, down, down, FakeMaster.accept());
  const at: number[] = [];
  const factory = master.factory;
  const h = await harness(t, {
    backoff: { initialMs: 40, maxMs: 1000, factor: 2 },
    connectionFactory: (address) => {
      at.push(performance.now());
      return factory(address);
    },
  }, master);
  await h.session.start();
  assert.equal(h.session.session, undefined, 'start() returned before any connection');
  await waitFor('connected', () => h.lifecycle.state === 'connected');
  assert.equal(master.connections.length, 4);
  assert.ok(master.connections.slice(0, 3).every((c) => c.closed), 'each failed connection is closed');
  // Delays are uniform in [cap/2, cap] with cap = 40, 80, 160 ms (1 ms of timer slack allowed).
  const gaps = at.slice(1).map((v, i) => v - at[i]!);
  assert.ok(gaps[0]! >= 19, `first retry after ${gaps[0]} ms`);
  assert.ok(gaps[1]! >= 39, `second retry after ${gaps[1]} ms`);
  assert.ok(gaps[2]! >= 79, `third retry after ${gaps[2]} ms`);
  assert.deepEqual(h.states, ['registering', 'reconnecting', 'registering', 'reconnecting', 'registering', 'reconnecting', 'registering', 'connected']);
});

test('master session: a refused enrollment token rejects start() with the master\'s reason and is not retried', async (t) => {
  const master = new FakeMaster();
  master.answers.push(() => grpcError(status.UNAUTHENTICATED, 'enrollment token expired'));
  const h = await harness(t, {}, master);
  await assert.rejects(h.session.start(), /enrollment token expired/);
  await new Promise((r) => setTimeout(r, 30));
  assert.equal(master.connections.length, 1);
  assert.equal(master.last.closed, true);
  assert.equal(h.lifecycle.state, 'registering');
});

test('master session: a session lost while catching up is not subscribed; the next one is', async (t) => {
  let catchUps = 0;
  const h = await harness(t, {
    catchUp: async (s: Session) => {
      if (catchUps++ === 0) s.markLost(grpcError(status.UNAVAILABLE, 'lost during catch-up'));
    },
  });
  await h.session.start();
  await waitFor('connected', () => h.lifecycle.state === 'connected');
  assert.equal(h.master.connections.length, 2);
  assert.equal(h.master.connections[0]!.subscribed, undefined);
  assert.ok(h.master.connections[1]!.subscribed);
});

test('master session: removed by the operator, the loop ends with the reason and does not reconnect', async (t) => {
  const h = await harness(t);
  await h.session.start();
  await waitFor('connected', () => h.lifecycle.state === 'connected');
  h.master.last.endCommands(Object.assign(grpcError(status.PERMISSION_DENIED), toServiceError(new NodeRemovedError('node node-1 was removed'))) as Error);
  await waitFor('removed', () => h.removed.length === 1);
  assert.match(h.removed[0]!, /node node-1 was removed/);
  await new Promise((r) => setTimeout(r, 30));
  assert.equal(h.master.connections.length, 1);
  assert.equal(h.master.last.closed, true);
});

test('master session: close() ends a backoff wait at once and tears the session down; a caller waiting for the master stops with its own signal', async (t) => {
  const master = new FakeMaster();
  master.answers.push(() => grpcError(status.UNAVAILABLE));
  const h = await harness(t, { backoff: { initialMs: 60_000, maxMs: 60_000, factor: 2 } }, master);
  await h.session.start();
  const waiting = new AbortController();
  const call = h.session.withMaster(waiting.signal, 'test call', async () => 'never');
  const started = Date.now();
  await h.session.close();
  assert.ok(Date.now() - started < 5_000, 'close() did not wait out the backoff');
  assert.equal(h.session.closingSignal.aborted, true);
  assert.equal(master.connections.length, 1);
  waiting.abort();
  await assert.rejects(call, AbortedError);

  const connected = await harness(t);
  await connected.session.start();
  await connected.session.close();
  assert.equal(connected.session.session, undefined);
  assert.ok(connected.master.last.closed && connected.master.last.reportClosed);
});

test('master session: withMaster waits for a ready session, retries transient failures, and throws final ones at once', async (t) => {
  const master = new FakeMaster();
  master.answers.push(() => grpcError(status.UNAVAILABLE), FakeMaster.accept());
  const h = await harness(t, {}, master);
  const signal = new AbortController().signal;
  let calls = 0;
  const transient = h.session.withMaster(signal, 'upload', async (conn) => {
    calls++;
    assert.equal(conn, master.last as unknown as MasterConnection, 'called with the ready connection');
    if (calls < 3) throw grpcError(status.UNAVAILABLE);
    return 'done';
  });
  await h.session.start();
  assert.equal(await transient, 'done');
  assert.equal(calls, 3);
  assert.equal(master.connections.length, 2, 'the call waited for the second, ready connection');

  let finalCalls = 0;
  await assert.rejects(
    h.session.withMaster(signal, 'upload', async () => {
      finalCalls++;
      throw grpcError(status.FAILED_PRECONDITION, 'task is finished');
    }),
    /task is finished/,
  );
  assert.equal(finalCalls, 1);
});
