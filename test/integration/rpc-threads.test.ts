// ThreadedServer for real: its RPC threads (worker threads listening on 127.0.0.1), a small
// service of our own (the four kinds of method, JSON, and two raw-bytes methods for large
// transfers) and real grpc-js clients. What a grpc-js Server gives its handlers and clients must
// hold through the thread: metadata both ways, statuses, cancels and deadlines, size limits,
// interceptors on the main thread, backpressure both ways, a dying thread, several threads on
// one port, and a graceful close. Last, a real Master with two RPC threads, and with none (the
// in-process server, --rpc-threads 0).
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as netConnect } from 'node:net';
import { connect as http2Connect } from 'node:http2';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { isMainThread, type Worker } from 'node:worker_threads';
import {
  Client, Metadata, ServerInterceptingCall, credentials, makeGenericClientConstructor, status as Status,
  type ChannelOptions, type ClientReadableStream, type ServerDuplexStream, type ServerInterceptor, type ServerReadableStream,
  type ServerUnaryCall, type ServerWritableStream, type ServiceDefinition, type ServiceError, type StatusObject,
  type UntypedServiceImplementation, type sendUnaryData,
} from '@grpc/grpc-js';
import { ThreadedServer } from '../../src/master/rpc/threaded-server.js';
import { spawnRpcThread } from '../../src/master/rpc/rpc-thread-link.js';
import type { FromThread, RpcThreadData } from '../../src/master/rpc/rpc-frames.js';
import { MAX_MESSAGES_IN_FLIGHT, writeMessage } from '../../src/master/grpc-streams.js';
import { silentLogger } from '../../src/common/logger.js';
import { recordHostile } from '../helpers/fault-ledger.js';
import { Master } from '../../src/master/master.js';
import { AdminClient } from '../../src/client/admin-client.js';
import { NodeServiceClient, type RegisterResponse } from '../../src/protocol/gen/hivemind/v1/node.js';
import { bearerMetadata } from '../../src/protocol/auth-metadata.js';

type Json = Record<string, unknown>;

// The main thread's memory is measured after a full collection (what is held, not garbage).
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
const KiB = 1024;
const CHUNK = 256 * KiB;

const toJson = (v: unknown) => Buffer.from(JSON.stringify(v));
const fromJson = (b: Buffer) => JSON.parse(b.toString('utf8')) as Json;
const asIs = (b: Buffer) => b;

function method(name: string, requestStream: boolean, responseStream: boolean, raw: { request?: boolean; response?: boolean } = {}) {
  return {
    path: `/rpctest.Test/${name}`, requestStream, responseStream, originalName: name,
    requestSerialize: raw.request ? asIs : toJson, requestDeserialize: raw.request ? asIs : fromJson,
    responseSerialize: raw.response ? asIs : toJson, responseDeserialize: raw.response ? asIs : fromJson,
  };
}

/** The four kinds, JSON; and two raw-bytes methods for 256 KiB chunks. */
const TEST_SERVICE = {
  Unary: method('Unary', false, false),
  Collect: method('Collect', true, false),
  Count: method('Count', false, true),
  Chat: method('Chat', true, true),
  Upload: method('Upload', true, false, { request: true }),
  Flood: method('Flood', false, true, { response: true }),
} as unknown as ServiceDefinition;
const TestClient = makeGenericClientConstructor(TEST_SERVICE, 'Test');
const P = (name: string) => `/rpctest.Test/${name}`;

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const codeOf = (e: unknown) => (e as Partial<ServiceError>).code;
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

async function until(what: string, cond: () => boolean, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** What the handlers saw: metadata read, how each call ended for them. */
class Seen {
  calls = 0;
  cancelled = 0;
  metadata: { str?: string; bin?: string }[] = [];
  private waiters: (() => void)[] = [];

  take(md: Metadata): void {
    this.calls++;
    const bin = md.get('x-bin')[0];
    this.metadata.push({ str: md.get('x-str')[0] as string | undefined, bin: Buffer.isBuffer(bin) ? bin.toString('hex') : undefined });
  }

  watch(call: { on(e: 'cancelled', f: () => void): unknown }): void {
    call.on('cancelled', () => {
      this.cancelled++;
      this.waiters.splice(0).forEach((w) => w());
    });
  }

  cancels(n: number): Promise<void> {
    return until(`${n} cancelled handler(s), saw ${this.cancelled}`, () => this.cancelled >= n);
  }
}

const trailer = (k: string, v: string) => {
  const md = new Metadata();
  md.set(k, v);
  return md;
};

/** The handlers; a test replaces the ones it needs. */
function handlers(seen: Seen, over: Partial<Record<string, unknown>> = {}): UntypedServiceImplementation {
  return {
    Unary: (call: ServerUnaryCall<Json, Json>, cb: sendUnaryData<Json>) => {
      seen.take(call.metadata);
      seen.watch(call);
      if (call.request.fail) {
        cb({ code: Status.FAILED_PRECONDITION, details: `refused: ${String(call.request.fail)}`, metadata: trailer('x-why', 'asked to') });
        return;
      }
      if (call.request.hang) return;
      const reply = () => cb(null, { echo: call.request, md: seen.metadata.at(-1) }, trailer('x-trail', 'unary'));
      if (typeof call.request.delayMs === 'number') setTimeout(reply, call.request.delayMs);
      else reply();
    },
    Collect: (call: ServerReadableStream<Json, Json>, cb: sendUnaryData<Json>) => {
      seen.take(call.metadata);
      seen.watch(call);
      const got: unknown[] = [];
      call.on('data', (m: Json) => got.push(m.n));
      call.on('end', () => cb(null, { got }, trailer('x-trail', 'collect')));
      call.on('error', () => undefined);
    },
    Count: (call: ServerWritableStream<Json, Json>) => {
      seen.take(call.metadata);
      seen.watch(call);
      const n = Number(call.request.n);
      for (let i = 1; i <= n; i++) call.write({ i });
      if (call.request.hang) return;
      call.emit('error', { code: Status.OUT_OF_RANGE, details: `counted to ${n}`, metadata: trailer('x-trail', 'count') });
    },
    Chat: (call: ServerDuplexStream<Json, Json>) => {
      seen.take(call.metadata);
      seen.watch(call);
      call.on('data', (m: Json) => call.write({ back: m.say }));
      call.on('end', () => call.end(trailer('x-trail', 'chat')));
      call.on('error', () => undefined);
    },
    Upload: (call: ServerReadableStream<Buffer, Json>, cb: sendUnaryData<Json>) => {
      seen.take(call.metadata);
      const hash = createHash('sha256');
      let chunks = 0;
      let bytes = 0;
      call.on('data', (b: Buffer) => {
        chunks++;
        bytes += b.length;
        hash.update(b);
      });
      call.on('end', () => cb(null, { chunks, bytes, sha256: hash.digest('hex') }));
      call.on('error', () => undefined);
    },
    Flood: () => assert.fail('the test gives Flood its own handler'),
    ...over,
  };
}

interface Started {
  server: ThreadedServer;
  port: number;
  address: string;
  seen: Seen;
  workers: Worker[];
  client(options?: ChannelOptions): Client;
}

async function startServer(
  t: TestContext,
  o: { threads?: number; interceptors?: ServerInterceptor[]; maxReceiveBytes?: number; maxOpenCalls?: number; urgent?: (path: string) => boolean; impl?: Partial<Record<string, unknown>>; spawned?: (w: Worker, data: RpcThreadData) => void } = {},
): Promise<Started> {
  const seen = new Seen();
  const workers: Worker[] = [];
  const server = new ThreadedServer({
    threads: o.threads ?? 1,
    interceptors: o.interceptors ?? [],
    maxReceiveBytes: o.maxReceiveBytes ?? 4 * 1024 * KiB,
    ...(o.maxOpenCalls ? { maxOpenCalls: o.maxOpenCalls } : {}),
    ...(o.urgent ? { urgent: o.urgent } : {}),
    log: silentLogger(),
    spawn: (data) => {
      const w = spawnRpcThread(data);
      workers.push(w);
      o.spawned?.(w, data);
      return w;
    },
  });
  server.addService(TEST_SERVICE, handlers(seen, o.impl));
  const port = await server.listen('127.0.0.1:0');
  const address = `127.0.0.1:${port}`;
  const clients: Client[] = [];
  t.after(async () => {
    clients.forEach((c) => c.close());
    await server.close(0);
  });
  return {
    server, port, address, seen, workers,
    client(options: ChannelOptions = {}) {
      const c = new TestClient(address, credentials.createInsecure(), options);
      clients.push(c);
      return c;
    },
  };
}

function callMetadata(): Metadata {
  const md = new Metadata();
  md.set('x-str', 'hello');
  md.set('x-bin', Buffer.from([0, 1, 2, 0xff]));
  return md;
}

function unary(c: Client, req: Json, o: { md?: Metadata; deadlineMs?: number; path?: string } = {}): Promise<{ value: Json; status: StatusObject }> {
  return new Promise((resolve, reject) => {
    let value: Json | undefined;
    let err: ServiceError | null = null;
    const call = c.makeUnaryRequest(o.path ?? P('Unary'), toJson, fromJson, req, o.md ?? new Metadata(), o.deadlineMs ? { deadline: Date.now() + o.deadlineMs } : {}, (e, v) => {
      err = e;
      value = v;
    });
    call.on('status', (s: StatusObject) => setImmediate(() => (err ? reject(Object.assign(err, { trailer: s.metadata })) : resolve({ value: value!, status: s }))));
  });
}

/** Reads a server stream to its end: its messages and its status (the error's, when it ended with one). */
function drain<T>(call: ClientReadableStream<T>): Promise<{ messages: T[]; status: StatusObject }> {
  return new Promise((resolve) => {
    const messages: T[] = [];
    call.on('data', (m: T) => messages.push(m));
    call.on('error', () => undefined);
    call.on('status', (s: StatusObject) => setImmediate(() => resolve({ messages, status: s })));
  });
}

test('the four kinds of call round trip through an RPC thread: metadata (text and -bin) reaches the handler, its trailers and status details reach the client', async (t) => {
  const s = await startServer(t);
  const c = s.client();
  const md = { str: 'hello', bin: '000102ff' };

  const u = await unary(c, { text: 'hi' }, { md: callMetadata() });
  assert.deepEqual(u.value, { echo: { text: 'hi' }, md });
  assert.equal(u.status.code, Status.OK);
  assert.deepEqual(u.status.metadata.get('x-trail'), ['unary']);
  const refused = await unary(c, { fail: 'because' }, { md: callMetadata() }).then(() => assert.fail('refused'), (e: ServiceError & { trailer: Metadata }) => e);
  assert.equal(refused.code, Status.FAILED_PRECONDITION);
  assert.equal(refused.details, 'refused: because');
  assert.deepEqual(refused.metadata.get('x-why'), ['asked to']);

  const collected = await new Promise<{ value: Json; status: StatusObject }>((resolve, reject) => {
    let value: Json | undefined;
    const call = c.makeClientStreamRequest(P('Collect'), toJson, fromJson, callMetadata(), {}, (e, v) => (e ? reject(e) : (value = v)));
    call.on('status', (st: StatusObject) => setImmediate(() => resolve({ value: value!, status: st })));
    for (const n of [1, 2, 3, 4, 5, 6, 7]) call.write({ n });
    call.end();
  });
  assert.deepEqual(collected.value, { got: [1, 2, 3, 4, 5, 6, 7] });
  assert.deepEqual(collected.status.metadata.get('x-trail'), ['collect']);

  const counted = await drain(c.makeServerStreamRequest(P('Count'), toJson, fromJson, { n: 5 }, callMetadata()));
  assert.deepEqual(counted.messages, [1, 2, 3, 4, 5].map((i) => ({ i })));
  assert.equal(counted.status.code, Status.OUT_OF_RANGE);
  assert.equal(counted.status.details, 'counted to 5');
  assert.deepEqual(counted.status.metadata.get('x-trail'), ['count']);

  const chat = c.makeBidiStreamRequest(P('Chat'), toJson, fromJson, callMetadata());
  const chatted = drain(chat);
  for (const say of ['a', 'b', 'c']) chat.write({ say });
  chat.end();
  const bidi = await chatted;
  assert.deepEqual(bidi.messages, [{ back: 'a' }, { back: 'b' }, { back: 'c' }]);
  assert.equal(bidi.status.code, Status.OK);
  assert.deepEqual(bidi.status.metadata.get('x-trail'), ['chat']);

  assert.equal(s.seen.calls, 5);
  assert.deepEqual(s.seen.metadata, Array(5).fill(md));
  // grpc-js tells every handler 'cancelled' once its call is over; so does the bridge.
  await s.seen.cancels(5);
  await until('no call left open on the main thread', () => s.server.openCalls === 0);
});

test('a client cancel reaches the handler as cancelled, and the server keeps serving', async (t) => {
  const s = await startServer(t);
  const c = s.client();
  const call = c.makeServerStreamRequest(P('Count'), toJson, fromJson, { n: 1, hang: true }, new Metadata());
  const ended = drain(call);
  await new Promise<void>((resolve) => call.once('data', () => resolve()));
  assert.equal(s.server.openCalls, 1);
  call.cancel();
  assert.equal((await ended).status.code, Status.CANCELLED);
  await s.seen.cancels(1);
  await until('the cancelled call forgotten', () => s.server.openCalls === 0);
  assert.deepEqual((await unary(c, { after: 'cancel' })).value.echo, { after: 'cancel' });
});

test('a deadline that passes: the client gets DEADLINE_EXCEEDED and the handler sees cancelled', async (t) => {
  const s = await startServer(t);
  const c = s.client();
  const err = await unary(c, { hang: true }, { deadlineMs: 300 }).then(() => assert.fail('no answer'), (e: unknown) => e);
  assert.equal(codeOf(err), Status.DEADLINE_EXCEEDED);
  await s.seen.cancels(1);
  await until('the expired call forgotten', () => s.server.openCalls === 0);
});

test('a message over maxReceiveBytes gets RESOURCE_EXHAUSTED and never reaches the handler; an unknown method gets UNIMPLEMENTED', async (t) => {
  const s = await startServer(t, { maxReceiveBytes: 64 * KiB });
  const c = s.client();
  const big = await unary(c, { pad: 'x'.repeat(100 * KiB) }).then(() => undefined, (e: unknown) => e);
  recordHostile('RPC thread: a 100 KiB message over a 64 KiB limit', codeOf(big) !== Status.RESOURCE_EXHAUSTED || s.seen.calls > 0);
  assert.equal(codeOf(big), Status.RESOURCE_EXHAUSTED);
  const inStream = c.makeClientStreamRequest(P('Collect'), toJson, fromJson, new Metadata(), {}, () => undefined);
  const streamStatus = new Promise<StatusObject>((resolve) => inStream.on('status', resolve));
  inStream.write({ n: 1 });
  inStream.write({ n: 2, pad: 'y'.repeat(100 * KiB) });
  inStream.end();
  const st = await streamStatus;
  recordHostile('RPC thread: a 100 KiB message inside a client stream over a 64 KiB limit', st.code !== Status.RESOURCE_EXHAUSTED);
  assert.equal(st.code, Status.RESOURCE_EXHAUSTED);

  const unknown = await unary(c, {}, { path: '/rpctest.Test/Nope' }).then(() => undefined, (e: unknown) => e);
  recordHostile('RPC thread: an unknown method', codeOf(unknown) !== Status.UNIMPLEMENTED);
  assert.equal(codeOf(unknown), Status.UNIMPLEMENTED);
  const otherService = await unary(c, {}, { path: '/other.Service/Unary' }).then(() => undefined, (e: unknown) => e);
  assert.equal(codeOf(otherService), Status.UNIMPLEMENTED);
  assert.equal(s.seen.calls, 1, 'only the stream whose first message fit reached a handler');
  assert.equal((await unary(c, { small: true })).status.code, Status.OK, 'and the server keeps serving');
});

test('a thread holds a bounded number of open calls: past it a new call ends RESOURCE_EXHAUSTED before any handler, and is taken again once one ends', async (t) => {
  const s = await startServer(t, { maxOpenCalls: 3 });
  const c = s.client();
  const held = [1, 2, 3].map(() => c.makeServerStreamRequest(P('Count'), toJson, fromJson, { n: 1, hang: true }, new Metadata()));
  const ends = held.map((h) => drain(h));
  await Promise.all(held.map((h) => new Promise<void>((resolve) => h.once('data', () => resolve()))));
  const refused = await unary(c, { over: true }).then(() => undefined, (e: unknown) => e);
  recordHostile('RPC thread: a call past the open-call limit', codeOf(refused) !== Status.RESOURCE_EXHAUSTED || s.seen.calls !== 3);
  assert.equal(codeOf(refused), Status.RESOURCE_EXHAUSTED);
  assert.match((refused as ServiceError).details, /3 calls open on this connection's thread, its limit/);
  assert.equal(s.seen.calls, 3, 'the refused call never reached a handler');
  held[0]!.cancel();
  await ends[0];
  await until('a place freed', () => s.server.openCalls === 2);
  assert.deepEqual((await unary(c, { after: 'one ended' })).value.echo, { after: 'one ended' });
  held.slice(1).forEach((h) => h.cancel());
  await Promise.all(ends);
});

test('the urgent predicate given to ThreadedServer is what its threads\' links ask of every call that opens (admin calls first, in the master)', async (t) => {
  const asked: string[] = [];
  const s = await startServer(t, { threads: 2, urgent: (path) => (asked.push(path), path === P('Unary')) });
  const c = s.client();
  assert.deepEqual((await unary(c, { n: 1 })).value.echo, { n: 1 });
  const counted = await drain(c.makeServerStreamRequest(P('Count'), toJson, fromJson, { n: 2 }, new Metadata()));
  assert.equal(counted.messages.length, 2);
  assert.deepEqual(asked, [P('Unary'), P('Count')]);
});

test('interceptors given to ThreadedServer run on the main thread around each call, in order', async (t) => {
  const log: string[] = [];
  const counting = (name: string): ServerInterceptor => (descriptor, call) => new ServerInterceptingCall(call, {
    start: (next) => {
      log.push(`${name} start ${descriptor.path} main=${isMainThread}`);
      next();
    },
    sendStatus: (st, next) => {
      log.push(`${name} status ${st.code}`);
      next(st);
    },
  });
  const s = await startServer(t, { interceptors: [counting('inner'), counting('outer')] });
  const c = s.client();
  await unary(c, { ok: 1 });
  await unary(c, { fail: 'x' }).catch(() => undefined);
  // The last interceptor given wraps the others (as grpc-js ServerOptions.interceptors): it sees the call first, and the handler's status first.
  assert.deepEqual(log, [
    'outer start /rpctest.Test/Unary main=true', 'inner start /rpctest.Test/Unary main=true', `outer status ${Status.OK}`, `inner status ${Status.OK}`,
    'outer start /rpctest.Test/Unary main=true', 'inner start /rpctest.Test/Unary main=true', `outer status ${Status.FAILED_PRECONDITION}`, `inner status ${Status.FAILED_PRECONDITION}`,
  ]);
});

test('backpressure: a server stream of 256 KiB messages to a client that does not read leaves the handler waiting, with the main thread\'s memory bounded', async (t) => {
  const TOTAL = 200;
  let written = 0;
  let handlerEnd: unknown;
  const s = await startServer(t, {
    impl: {
      Flood: (call: ServerWritableStream<Json, Buffer>) => {
        void (async () => {
          for (let i = 0; i < TOTAL; i++) {
            await writeMessage(call, Buffer.alloc(CHUNK, i % 251));
            written++;
          }
          call.end();
        })().then(() => (handlerEnd = 'done'), (e: unknown) => (handlerEnd = e));
      },
    },
  });
  gc();
  const before = process.memoryUsage();
  // A reader that stops at the HTTP/2 level: a paused stream sends no window update past the
  // default 64 KiB (a grpc-js client reads ahead into its own memory whatever its caller does).
  const session = http2Connect(`http://${s.address}`);
  session.on('error', () => undefined);
  t.after(() => session.destroy());
  const request = toJson({});
  const frame = Buffer.alloc(5 + request.length);
  frame.writeUInt32BE(request.length, 1);
  request.copy(frame, 5);
  const stream = session.request({ ':method': 'POST', ':path': P('Flood'), 'content-type': 'application/grpc', te: 'trailers' });
  stream.on('error', () => undefined);
  stream.end(frame);
  stream.pause();
  await until('the handler to start writing', () => written > 0);
  let last = -1;
  while (written !== last) {
    last = written;
    await sleep(500);
  }
  const stalled = written;
  gc();
  const during = process.memoryUsage();
  const grownMiB = (during.heapUsed + during.arrayBuffers - before.heapUsed - before.arrayBuffers) / 1024 ** 2;
  t.diagnostic(`stalled after ${stalled} of ${TOTAL} messages (${(stalled * CHUNK) / 1024 ** 2} MiB); main thread heap+arrayBuffers grew ${grownMiB.toFixed(1)} MiB; ${MAX_MESSAGES_IN_FLIGHT} in flight allowed`);
  recordHostile('RPC thread: a server stream whose reader never reads', stalled >= TOTAL / 2);
  assert.ok(stalled < TOTAL / 2, `the handler's writes wait: ${stalled} of ${TOTAL} written to a reader that reads nothing`);
  assert.equal(handlerEnd, undefined, 'the handler is still waiting');
  assert.ok(grownMiB < 16, `the main thread's memory grew ${grownMiB.toFixed(1)} MiB with ${(TOTAL * CHUNK) / 1024 ** 2} MiB to send`);
  // Reading again: the rest arrives, whole, and the handler finishes.
  let bytes = 0;
  const trailers = new Promise<Record<string, unknown>>((resolve) => stream.once('trailers', (h) => resolve(h as Record<string, unknown>)));
  stream.on('data', (b: Buffer) => (bytes += b.length));
  stream.resume();
  const h = await trailers;
  await until('the whole stream', () => handlerEnd !== undefined && bytes === TOTAL * (5 + CHUNK));
  assert.equal(h['grpc-status'], '0');
  assert.equal(handlerEnd, 'done');
});

test('client streaming of many 256 KiB chunks arrives whole and in order', async (t) => {
  const s = await startServer(t, { maxReceiveBytes: 512 * KiB });
  const c = s.client();
  const chunks = Array.from({ length: 160 }, () => randomBytes(CHUNK));
  const res = await new Promise<Json>((resolve, reject) => {
    const call = c.makeClientStreamRequest(P('Upload'), asIs, fromJson, new Metadata(), {}, (e, v) => (e ? reject(e) : resolve(v!)));
    void (async () => {
      for (const chunk of chunks) {
        if (!call.write(chunk)) await new Promise((r) => call.once('drain', r));
      }
      call.end();
    })();
  });
  assert.deepEqual(res, { chunks: chunks.length, bytes: chunks.length * CHUNK, sha256: sha256(Buffer.concat(chunks)) });
});

test('a thread that dies: its open calls end on the client, their handlers see cancelled, and new calls on the same port succeed again', async (t) => {
  const s = await startServer(t);
  const c = s.client();
  const streams = [1, 2].map(() => c.makeServerStreamRequest(P('Count'), toJson, fromJson, { n: 1, hang: true }, new Metadata()));
  const ends = streams.map((st) => drain(st));
  await Promise.all(streams.map((st) => new Promise((r) => st.once('data', r))));
  assert.equal(s.workers.length, 1);
  await s.workers[0]!.terminate();
  for (const e of await Promise.all(ends)) assert.ok([Status.UNAVAILABLE, Status.CANCELLED].includes(e.status.code), `ended ${e.status.code} ${e.status.details}`);
  await s.seen.cancels(2);
  assert.equal(s.server.openCalls, 0);
  let answered: Json | undefined;
  const end = Date.now() + 10_000;
  while (!answered && Date.now() < end) {
    answered = await unary(c, { again: true }, { deadlineMs: 1000 }).then((r) => r.value, () => undefined);
    if (!answered) await sleep(100);
  }
  assert.deepEqual(answered?.echo, { again: true }, 'a new call succeeds on the same port');
  assert.equal(s.workers.length, 2, 'a new thread was started');
});

test('two threads on one port: separate connections are spread over both and served, threadLag() has both, close() ends them all', async (t) => {
  const opens = [0, 0];
  const exited: number[] = [];
  const s = await startServer(t, {
    threads: 2,
    spawned: (w, data) => {
      w.on('message', (batch: FromThread[]) => { for (const f of batch) if (f.t === 'open') opens[data.index]!++; });
      w.once('exit', () => exited.push(data.index));
    },
  });
  assert.equal(s.workers.length, 2);
  const clients = Array.from({ length: 16 }, () => s.client({ 'grpc.use_local_subchannel_pool': 1 }));
  const answers = await Promise.all(clients.map((c, i) => unary(c, { i })));
  assert.deepEqual(answers.map((a) => a.value.echo), clients.map((_, i) => ({ i })));
  t.diagnostic(`calls opened per thread: ${opens.join(', ')}`);
  assert.ok(opens[0]! > 0 && opens[1]! > 0, `both threads served connections (${opens.join(', ')})`);
  const lag = await s.server.threadLag();
  assert.deepEqual(lag.map((l) => l.thread).sort(), [0, 1]);
  assert.ok(lag.every((l) => Number.isFinite(l.max) && l.max >= 0));
  // Open streams on every connection, then close: all end, both threads exit, the port is shut.
  const streams = clients.map((c) => c.makeServerStreamRequest(P('Count'), toJson, fromJson, { n: 1, hang: true }, new Metadata()));
  const ends = streams.map((st) => drain(st));
  await Promise.all(streams.map((st) => new Promise((r) => st.once('data', r))));
  await s.server.close(0);
  const statuses = (await Promise.all(ends)).map((e) => e.status.code);
  assert.ok(statuses.every((c) => c === Status.UNAVAILABLE || c === Status.CANCELLED), `all cut: ${statuses.join(',')}`);
  await s.seen.cancels(16 + 16);
  await until('both threads exited', () => exited.length === 2);
  const refused = await new Promise<string>((resolve) => {
    const sock = netConnect(s.port, '127.0.0.1');
    sock.once('connect', () => (sock.destroy(), resolve('connected')));
    sock.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
  });
  assert.equal(refused, 'ECONNREFUSED');
});

test('close(graceMs) lets a running unary call finish within the grace and cuts a long stream after it', async (t) => {
  const s = await startServer(t);
  const c = s.client();
  const stream = c.makeServerStreamRequest(P('Count'), toJson, fromJson, { n: 1, hang: true }, new Metadata());
  const streamEnd = drain(stream);
  await new Promise((r) => stream.once('data', r));
  let streamEnded = false;
  void streamEnd.then(() => (streamEnded = true));
  const slow = unary(c, { delayMs: 400 });
  await until('the slow call to reach its handler', () => s.seen.calls === 2);
  const closed = s.server.close(2000);
  const answered = await slow;
  assert.equal(answered.status.code, Status.OK, 'the unary call finished within the grace');
  assert.equal(streamEnded, false, 'the stream is still open when the unary call finished');
  const cut = await streamEnd;
  assert.ok([Status.UNAVAILABLE, Status.CANCELLED].includes(cut.status.code), `the stream was cut: ${cut.status.code} ${cut.status.details}`);
  await closed;
  await s.seen.cancels(2);
  assert.equal(s.server.openCalls, 0);
});

for (const rpcThreads of [2, 0]) {
  test(`a real Master with --rpc-threads ${rpcThreads}: admin and node calls work`, async (t) => {
    const dataDir = await mkdtemp(join(tmpdir(), 'hm-rpc-threads-'));
    const master = await Master.create({ listenAddress: '127.0.0.1:0', gatewayListen: '127.0.0.1:0', dataDir, shutdownGraceMs: 200, rpcThreads, metricsListen: '127.0.0.1:0' });
    const address = await master.start();
    const admin = AdminClient.connect(address, (await readFile(master.adminTokenPath, 'utf8')).trim());
    const node = new NodeServiceClient(address, credentials.createInsecure());
    t.after(async () => {
      node.close();
      admin.close();
      await master.close();
      await rm(dataDir, { recursive: true, force: true });
    });
    const { token } = await admin.createToken({});
    const reg = await new Promise<RegisterResponse>((resolve, reject) => node.register({
      name: 'threaded-1',
      facts: { hostname: 'fake-host', os: 'linux', osRelease: '', arch: 'x64', cpuCores: 4, cpuModel: 'fake', memoryBytes: 8 * 1024 ** 3, diskBytes: 0, gpus: [], dockerVersion: '20.10', labels: new Map(), workerVersion: 'test', allowsEgress: false, maxTasks: 2, isolations: [], engine: '', unenforcedLimits: [] },
    }, bearerMetadata(token), (e, r) => (e ? reject(e) : resolve(r))));
    assert.ok(reg.nodeId && reg.nodeCredential.length > 20);
    const nodes = await admin.listNodes();
    assert.deepEqual(nodes.map((n) => n.name), ['threaded-1']);
    const refused = await new Promise<unknown>((resolve) => node.register({ name: 'x', facts: undefined }, bearerMetadata('hm1.not-a-real-token'), (e) => resolve(e)));
    assert.equal(codeOf(refused), Status.UNAUTHENTICATED);
    // Each thread's own event-loop lag is on /metrics beside the main thread's; none without threads.
    const metrics = await (await fetch(`${master.metricsUrl!}/metrics`)).text();
    assert.match(metrics, /^hivemind_master_event_loop_lag_seconds\{stat="max"\} /m);
    const threads = [...metrics.matchAll(/^hivemind_master_rpc_thread_event_loop_lag_seconds\{thread="([^"]+)",stat="max"\} [0-9.e-]+$/gm)].map((m) => m[1]).sort();
    assert.deepEqual(threads, Array.from({ length: rpcThreads }, (_, i) => `rpc-${i}`));
  });
}

test('close() while a dead thread is being started again stops the new thread too: nothing is left listening', async (t) => {
  let server: ThreadedServer | undefined;
  let closing: Promise<void> | undefined;
  const exited: number[] = [];
  const s = await startServer(t, {
    spawned: (w) => {
      const n = exited.length + (server ? 1 : 0);
      w.once('exit', () => exited.push(n));
      // The replacement of the terminated thread: close the server while it starts.
      if (server) closing = server.close(0);
    },
  });
  server = s.server;
  await s.workers[0]!.terminate();
  await until('the replacement thread to be spawned', () => s.workers.length === 2);
  await closing;
  await until('the replacement thread to exit', () => exited.length === 2, 5000);
  const refused = await new Promise<string>((resolve) => {
    const sock = netConnect(s.port, '127.0.0.1');
    sock.once('connect', () => (sock.destroy(), resolve('connected')));
    sock.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
  });
  assert.equal(refused, 'ECONNREFUSED');
});
