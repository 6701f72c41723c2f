// BridgedCall (a call of an RPC thread as the main thread sees it) and dispatch (a handler run on
// one as grpc-js's Server would), against a fake CallLink that records the frames posted to the
// thread: reads one message per startRead, the end told once, nothing posted after it, and the
// statuses grpc-js gives for bad messages and failing handlers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Metadata, status as Status, type ServerWritableStream, type UntypedHandleCall } from '@grpc/grpc-js';
import type { InterceptingServerListener } from '@grpc/grpc-js/build/src/server-interceptors.js';
import { BridgedCall, type CallCodec, type CallLink } from '../../src/master/rpc/bridged-call.js';
import { dispatch } from '../../src/master/rpc/call-dispatch.js';
import type { HandlerKind, ToThread } from '../../src/master/rpc/rpc-frames.js';

class FakeLink implements CallLink {
  readonly frames: ToThread[] = [];
  readonly forgotten: number[] = [];
  post(frame: ToThread): void {
    this.frames.push(frame);
  }
  forget(id: number): void {
    this.forgotten.push(id);
  }
  kinds(): string[] {
    return this.frames.map((f) => f.t);
  }
  statuses(): Extract<ToThread, { t: 'status' }>[] {
    return this.frames.filter((f): f is Extract<ToThread, { t: 'status' }> => f.t === 'status');
  }
}

/** A streaming method's codec: each message's callback waits for the thread's 'sent'. */
const json: CallCodec = {
  serialize: (v) => Buffer.from(JSON.stringify(v)),
  deserialize: (b) => JSON.parse(b.toString('utf8')) as unknown,
  responseStream: true,
};
const bytesOf = (v: unknown) => new Uint8Array(Buffer.from(JSON.stringify(v)));
const decoded = (f: ToThread) => (f.t === 'message' ? (JSON.parse(Buffer.from(f.bytes).toString('utf8')) as unknown) : undefined);
/** onCancel is told on the next tick, as grpc-js does. */
const ticks = () => new Promise<void>((resolve) => setImmediate(resolve));

function bridged(codec: CallCodec = json, id = 7): { link: FakeLink; call: BridgedCall } {
  const link = new FakeLink();
  const md = new Metadata();
  md.set('who', 'test');
  const call = new BridgedCall(link, codec, { id, metadata: md, peer: 'ipv4:127.0.0.1:5000', host: 'localhost', deadline: Infinity, connection: {} });
  return { link, call };
}

interface Seen {
  events: string[];
  messages: unknown[];
  cancels: number;
}

function recording(call: BridgedCall): Seen {
  const seen: Seen = { events: [], messages: [], cancels: 0 };
  const listener: InterceptingServerListener = {
    onReceiveMetadata: (md) => seen.events.push(`metadata ${String(md.get('who')[0])}`),
    onReceiveMessage: (m) => {
      seen.events.push('message');
      seen.messages.push(m);
    },
    onReceiveHalfClose: () => seen.events.push('halfClose'),
    onCancel: () => {
      seen.events.push('cancel');
      seen.cancels++;
    },
  };
  call.start(listener);
  return seen;
}

test('one message is delivered per startRead, a read frame is posted per message taken, and the half-close comes after the messages', () => {
  const { link, call } = bridged();
  const seen = recording(call);
  assert.deepEqual(seen.events, ['metadata test']);
  call.received(bytesOf({ n: 1 }));
  call.received(bytesOf({ n: 2 }));
  call.halfClosed();
  assert.deepEqual(seen.messages, [], 'nothing delivered before the handler asks');
  assert.deepEqual(link.frames, []);
  call.startRead();
  assert.deepEqual(seen.messages, [{ n: 1 }]);
  assert.deepEqual(link.frames, [{ t: 'read', id: 7 }]);
  call.startRead();
  assert.deepEqual(seen.messages, [{ n: 1 }, { n: 2 }]);
  assert.deepEqual(link.kinds(), ['read', 'read']);
  call.startRead();
  assert.deepEqual(seen.events, ['metadata test', 'message', 'message', 'halfClose']);
  assert.deepEqual(link.kinds(), ['read', 'read'], 'the half-close is not a message: no read frame for it');
  // A read asked for before a message arrives takes the next one when it comes, and only that one.
  const second = bridged();
  const s2 = recording(second.call);
  second.call.startRead();
  second.call.received(bytesOf('a'));
  second.call.received(bytesOf('b'));
  assert.deepEqual(s2.messages, ['a']);
  assert.deepEqual(second.link.kinds(), ['read']);
});

test('onCancel is told exactly once whichever way the call ends: its status sent, the thread saying it is over, or both', async () => {
  for (const ending of ['status', 'over', 'status then over', 'over then status'] as const) {
    const { link, call } = bridged();
    const seen = recording(call);
    for (const step of ending.split(' then ')) {
      if (step === 'status') call.sendStatus({ code: Status.OK, details: 'OK', metadata: null });
      else call.over();
    }
    await ticks();
    assert.equal(seen.cancels, 1, `${ending}: onCancel told once`);
    call.over();
    await ticks();
    assert.equal(seen.cancels, 1, `${ending}: still once after another over()`);
    // Only a status the main thread sent before the thread said "over" goes out.
    assert.equal(link.statuses().length, ending.startsWith('status') ? 1 : 0, ending);
    assert.deepEqual(link.forgotten, ending.startsWith('status') ? [7] : [], ending);
  }
});

test('sendMessage callbacks fire in order as the thread confirms each message sent; over() drops the unconfirmed ones', () => {
  const { link, call } = bridged();
  recording(call);
  const fired: number[] = [];
  for (const n of [1, 2, 3]) call.sendMessage({ n }, () => fired.push(n));
  assert.deepEqual(link.frames.map(decoded), [{ n: 1 }, { n: 2 }, { n: 3 }]);
  assert.deepEqual([...fired], []);
  call.sent();
  assert.deepEqual([...fired], [1]);
  call.sent();
  call.sent();
  assert.deepEqual([...fired], [1, 2, 3]);
  call.sent();
  assert.deepEqual([...fired], [1, 2, 3], 'a stray confirmation calls nothing');
  call.sendMessage({ n: 4 }, () => fired.push(4));
  call.over();
  call.sent();
  assert.deepEqual([...fired], [1, 2, 3], 'a callback of a message cut with the call never fires');
});

test('nothing is posted after the call ended, and messages arriving after it are not delivered', async () => {
  for (const end of ['status', 'over'] as const) {
    const { link, call } = bridged();
    const seen = recording(call);
    call.received(bytesOf('early'));
    if (end === 'status') call.sendStatus({ code: Status.CANCELLED, details: 'done', metadata: null });
    else call.over();
    const before = link.frames.length;
    call.sendMetadata(new Metadata());
    call.sendMessage('late', () => assert.fail('no callback after the end'));
    call.sendStatus({ code: Status.OK, details: 'again', metadata: null });
    call.startRead();
    call.received(bytesOf('later'));
    call.halfClosed();
    call.startRead();
    await ticks();
    assert.equal(link.frames.length, before, `${end}: nothing posted after the end`);
    assert.deepEqual(seen.messages, [], `${end}: nothing delivered after the end`);
    assert.deepEqual(seen.events, ['metadata test', 'cancel']);
  }
});

test('a request that fails to deserialize ends the call INTERNAL, naming the failure; the listener never sees it', async () => {
  const { link, call } = bridged();
  const seen = recording(call);
  call.received(new Uint8Array(Buffer.from('{not json')));
  call.startRead();
  await ticks();
  const [st] = link.statuses();
  assert.equal(st?.code, Status.INTERNAL);
  assert.match(st!.details, /^Error deserializing request: .*JSON/);
  assert.deepEqual(seen.messages, []);
  assert.equal(seen.cancels, 1);
});

test('a response that fails to serialize ends the call INTERNAL and is never posted', () => {
  const { link, call } = bridged();
  recording(call);
  const cyclic: Record<string, unknown> = {};
  cyclic.self = cyclic;
  call.sendMessage(cyclic, () => assert.fail('an unsent message has no callback'));
  assert.deepEqual(link.kinds(), ['status']);
  assert.equal(link.statuses()[0]!.code, Status.INTERNAL);
  assert.match(link.statuses()[0]!.details, /^Error serializing response: .*circular/i);
});

function dispatched(kind: HandlerKind, func: (...args: never[]) => void): { link: FakeLink; call: BridgedCall } {
  const b = bridged({ ...json, responseStream: kind === 'serverStream' || kind === 'bidi' });
  dispatch(b.call, { path: '/test.T/M', kind, func: func as unknown as UntypedHandleCall });
  return b;
}

test('dispatch: a unary handler gets the request and its answer goes out as a message then OK (no round trip through the thread); one that throws ends UNKNOWN', async () => {
  const ok = dispatched('unary', ((c: { request: unknown; metadata: Metadata }, cb: (e: null, v: unknown) => void) => cb(null, { echo: c.request, who: c.metadata.get('who')[0] })) as never);
  ok.call.received(bytesOf('hi'));
  ok.call.halfClosed();
  assert.deepEqual(ok.link.frames.map((f) => f.t), ['read', 'message']);
  assert.deepEqual(decoded(ok.link.frames[1]!), { echo: 'hi', who: 'test' });
  // One response: its status follows without waiting for the thread to confirm the message.
  await ticks();
  assert.deepEqual(ok.link.statuses().map((s) => s.code), [Status.OK]);
  assert.deepEqual(ok.link.kinds(), ['read', 'message', 'status']);

  const throws = dispatched('unary', (() => {
    throw new Error('handler bug');
  }) as never);
  throws.call.received(bytesOf('hi'));
  throws.call.halfClosed();
  assert.deepEqual(throws.link.statuses().map((s) => [s.code, s.details]), [[Status.UNKNOWN, 'Unknown error']]);
});

test('dispatch: a second request message on a unary method ends UNIMPLEMENTED before the handler runs; none at all too', () => {
  let ran = 0;
  const two = dispatched('unary', (() => ran++) as never);
  two.call.received(bytesOf(1));
  two.call.received(bytesOf(2));
  assert.equal(two.link.statuses()[0]?.code, Status.UNIMPLEMENTED);
  assert.match(two.link.statuses()[0]!.details, /second request message .*\/test\.T\/M/);
  two.call.halfClosed();
  const none = dispatched('unary', (() => ran++) as never);
  none.call.halfClosed();
  assert.equal(none.link.statuses()[0]?.code, Status.UNIMPLEMENTED);
  assert.equal(ran, 0);
});

test('dispatch: a server-stream handler that emits an error ends with that status after its messages went out; it sees cancelled after', async () => {
  let cancelled = 0;
  const s = dispatched('serverStream', ((c: ServerWritableStream<unknown, unknown>) => {
    c.on('cancelled', () => cancelled++);
    c.write({ n: 1 });
    c.write({ n: 2 });
    c.emit('error', { code: Status.FAILED_PRECONDITION, details: 'not now' });
  }) as never);
  s.call.received(bytesOf('go'));
  s.call.halfClosed();
  // grpc-js's Writable hands over the next message once the previous one was sent.
  assert.deepEqual(s.link.frames.map(decoded).filter(Boolean), [{ n: 1 }]);
  s.call.sent();
  await ticks();
  assert.deepEqual(s.link.frames.map(decoded).filter(Boolean), [{ n: 1 }, { n: 2 }]);
  assert.deepEqual(s.link.statuses(), [], 'the status waits for the messages to be sent');
  s.call.sent();
  await ticks();
  assert.deepEqual(s.link.kinds(), ['read', 'message', 'message', 'status']);
  assert.deepEqual(s.link.statuses().map((st) => [st.code, st.details]), [[Status.FAILED_PRECONDITION, 'not now']]);
  assert.equal(cancelled, 1);
});

test('dispatch: a client-stream handler reads the messages in order and its answer follows the half-close', async () => {
  const s = dispatched('clientStream', ((c: AsyncIterable<unknown>, cb: (e: null, v: unknown) => void) => {
    void (async () => {
      const got: unknown[] = [];
      for await (const m of c) got.push(m);
      cb(null, got);
    })();
  }) as never);
  for (const n of [1, 2, 3]) s.call.received(bytesOf(n));
  s.call.halfClosed();
  for (let i = 0; i < 10 && !s.link.kinds().includes('status'); i++) await ticks();
  assert.deepEqual(s.link.kinds(), ['read', 'read', 'read', 'message', 'status']);
  assert.deepEqual(decoded(s.link.frames[3]!), [1, 2, 3]);
  assert.deepEqual(s.link.statuses().map((st) => st.code), [Status.OK]);
});
