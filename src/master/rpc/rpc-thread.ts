// An RPC thread of the master (threaded-server.ts starts it): it listens, holds the HTTP/2
// connections and the gRPC framing of every call, and passes each call's metadata, messages and
// end to the main thread as bytes, and the main thread's replies back. At 10,000 nodes the live
// HTTP/2 streams (each a native handle and a set of external header strings) made every full GC
// of the main thread's heap 50-150 ms long; here they cost this thread's GC, not the loop that
// holds the queue. Nothing in this file decodes a message or knows a service.
import { createServer, type AddressInfo } from 'node:net';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { parentPort, workerData } from 'node:worker_threads';
import {
  Metadata, Server, ServerCredentials, status as Status, ServerInterceptingCall, type ServerInterceptingCallInterface, type ServerInterceptor,
} from '@grpc/grpc-js';
import { widenServerWindows } from '../../protocol/flow-control.js';
import { takeLoopLag } from '../../common/loop-lag.js';
import { FrameBatch } from './frame-batch.js';
import { bufferOf, fromWire, handlerKind, toWire, type FromThread, type RpcThreadData, type ToThread } from './rpc-frames.js';

const cfg = workerData as RpcThreadData;
const port = parentPort!;

// Frames go to the main thread in batches, one message per turn of this thread's loop: a socket
// read that carries many calls' frames costs the main thread one message event, not one each.
const outbox = new FrameBatch<FromThread>();
let flushQueued = false;
function flush(): void {
  flushQueued = false;
  if (outbox.length === 0) return;
  const { frames, transfer } = outbox.take();
  port.postMessage(frames, transfer);
}
function post(f: FromThread): void {
  outbox.push(f);
  if (!flushQueued) {
    flushQueued = true;
    setImmediate(flush);
  }
}

/** A call on the wire, and how far its reading is ahead of the main thread's handler. */
interface LiveCall {
  call: ServerInterceptingCallInterface;
  /** Messages passed on that the handler has not taken yet. */
  ahead: number;
  limit: number;
  reading: boolean;
  halfClosed: boolean;
}

const calls = new Map<number, LiveCall>();
let nextId = 1;

function pump(live: LiveCall): void {
  if (live.reading || live.halfClosed || live.ahead >= live.limit) return;
  live.reading = true;
  live.call.startRead();
}

/**
 * Drops a call's metadata once it is on its way to the main thread (grpc-js keeps the object for
 * the call's life). Node makes each header value an external string, and every full GC of this
 * thread walks all of them: 10,000 open Subscribe streams held ~4 each here for nothing.
 */
function forget(metadata: Metadata): void {
  for (const key of Object.keys(metadata.getMap())) metadata.remove(key);
}

// Every call goes through this interceptor, which never hands it to a handler: it relays the
// call's events to the main thread, and the main thread's replies to the call (onMainFrame).
const relay: ServerInterceptor = (descriptor, call) => {
  const id = nextId++;
  // A unary or server-streaming call has one message: reading two finds a second one, which the
  // main thread refuses as grpc-js does.
  const live: LiveCall = { call, ahead: 0, limit: descriptor.requestStream ? cfg.readAhead : 2, reading: false, halfClosed: false };
  return new ServerInterceptingCall(call, {
    start: (next) => next({
      onReceiveMetadata: (metadata) => {
        // The main thread handles calls at its pace; this thread takes them at the network's. A
        // flood of calls would otherwise queue without bound between the two.
        if (calls.size >= cfg.maxOpenCalls) {
          call.sendStatus({ code: Status.RESOURCE_EXHAUSTED, details: `the master has ${calls.size} calls open on this connection's thread, its limit; try again shortly`, metadata: new Metadata() });
          return;
        }
        calls.set(id, live);
        const deadline = call.getDeadline();
        post({
          t: 'open', id, path: descriptor.path, metadata: toWire(metadata), peer: call.getPeer(), host: call.getHost(),
          deadline: deadline instanceof Date ? deadline.getTime() : deadline, connection: call.getConnectionInfo(),
        });
        forget(metadata);
        pump(live);
      },
      onReceiveMessage: (message: Buffer) => {
        live.reading = false;
        live.ahead++;
        // Copied into the batch's buffer at the flush (grpc-js never writes to a message it gave).
        post({ t: 'message', id, bytes: message });
        pump(live);
      },
      onReceiveHalfClose: () => {
        live.reading = false;
        live.halfClosed = true;
        post({ t: 'halfClose', id });
      },
      onCancel: () => {
        if (calls.delete(id)) post({ t: 'cancel', id });
      },
    }),
  });
};

const asIs = (b: Buffer) => b;
// Never called: the relay above takes every call before its handler would run.
const unreached = () => undefined;

const server = new Server({ 'grpc.max_receive_message_length': cfg.maxReceiveBytes, 'grpc.enable_channelz': 0, interceptors: [relay] });
for (const m of cfg.methods) server.register(m.path, unreached, asIs, asIs, handlerKind(m));
const injector = server.createConnectionInjector(ServerCredentials.createInsecure());
widenServerWindows(server);
const listener = createServer({ noDelay: true }, (socket) => injector.injectConnection(socket));

const loop = monitorEventLoopDelay({ resolution: 10 });
loop.enable();

function onMainFrame(f: ToThread): void {
  if (f.t === 'lag') {
    post({ t: 'lag', token: f.token, ...takeLoopLag(loop) });
    return;
  }
  if (f.t === 'close') {
    close(f.graceMs);
    return;
  }
  const live = calls.get(f.id);
  if (!live) return;
  switch (f.t) {
    case 'read':
      live.ahead--;
      pump(live);
      break;
    case 'metadata':
      live.call.sendMetadata(fromWire(f.metadata));
      break;
    case 'message':
      live.call.sendMessage(bufferOf(f.bytes), () => post({ t: 'sent', id: f.id }));
      break;
    case 'status':
      live.call.sendStatus({ code: f.code, details: f.details, metadata: f.metadata ? fromWire(f.metadata) : null });
      break;
  }
}

let closing = false;
function close(graceMs: number): void {
  if (closing) return;
  closing = true;
  let done = false;
  const finish = () => {
    if (done) return;
    done = true;
    injector.destroy();
    loop.disable();
    post({ t: 'closed' });
    flush();
    port.off('message', onBatch);
  };
  const cut = () => {
    server.forceShutdown();
    finish();
  };
  // The listener's close callback runs once every connection it accepted has closed: that is
  // when the open calls are over. grpc-js's tryShutdown cannot tell for injected connections:
  // Node 24 marks their sessions closed as soon as it closes the injector's (never listening)
  // HTTP/2 server, so its callback came at once and the grace cut every call.
  listener.close(() => finish());
  if (graceMs <= 0) return cut();
  setTimeout(cut, graceMs).unref();
  // GOAWAY on every connection: their open calls go on, new ones are refused.
  server.tryShutdown(() => undefined);
}

function onBatch(batch: ToThread[]): void {
  for (const f of batch) onMainFrame(f);
}

port.on('message', onBatch);
listener.once('error', (err) => post({ t: 'listenFailed', message: err.message }));
listener.listen({ host: cfg.host, port: cfg.port, reusePort: cfg.reusePort }, () => {
  post({ t: 'listening', port: (listener.address() as AddressInfo).port });
});
