// Runs a method's handler on a call, as grpc-js's Server does once a call's interceptors are in
// place (its handleUnary & co. are not exported): the handler gets grpc-js's own call objects,
// so `call.emit('error', …)`, `cancelled`, backpressure and the status at the end behave as they
// do on a grpc-js Server. The call under them is a BridgedCall (or an interceptor around one).
import { status as Status, type Metadata, type ServerInterceptingCallInterface, type ServiceError, type UntypedHandleCall } from '@grpc/grpc-js';
import {
  ServerDuplexStreamImpl, ServerWritableStreamImpl, serverErrorToStatus,
} from '@grpc/grpc-js/build/src/server-call.js';
import type { HandlerKind } from './rpc-frames.js';

export interface DispatchedMethod {
  path: string;
  kind: HandlerKind;
  func: UntypedHandleCall;
}

type Respond = (err: ServiceError | null, value?: unknown, trailer?: Metadata) => void;

function responder(call: ServerInterceptingCallInterface): Respond {
  return (err, value, trailer) => {
    if (err) {
      call.sendStatus(serverErrorToStatus(err, trailer));
      return;
    }
    call.sendMessage(value, () => call.sendStatus({ code: Status.OK, details: 'OK', metadata: trailer ?? null }));
  };
}

/** A handler that throws (instead of answering) ends its call UNKNOWN, as on grpc-js. */
function guarded(call: ServerInterceptingCallInterface, run: () => void): void {
  try {
    run();
  } catch {
    call.sendStatus({ code: Status.UNKNOWN, details: 'Unknown error', metadata: null });
  }
}

/** One request message, then the handler: unary and server-streaming methods. */
function withOneRequest(call: ServerInterceptingCallInterface, m: DispatchedMethod, onRequest: (metadata: Metadata, request: unknown) => { cancel(): void }): void {
  let metadata: Metadata | undefined;
  let request: unknown;
  let received = false;
  let running: { cancel(): void } | undefined;
  call.start({
    onReceiveMetadata(md) {
      metadata = md;
      call.startRead();
    },
    onReceiveMessage(message) {
      if (received) {
        call.sendStatus({ code: Status.UNIMPLEMENTED, details: `Received a second request message for server streaming method ${m.path}`, metadata: null });
        return;
      }
      received = true;
      request = message;
      call.startRead();
    },
    onReceiveHalfClose() {
      if (!received) {
        call.sendStatus({ code: Status.UNIMPLEMENTED, details: `Received no request message for server streaming method ${m.path}`, metadata: null });
        return;
      }
      running = onRequest(metadata!, request);
    },
    onCancel() {
      running?.cancel();
    },
  });
}

/** The handler at once, with a stream of the request messages: client-streaming and bidi methods. */
function withRequestStream(call: ServerInterceptingCallInterface, m: DispatchedMethod, respond: Respond | undefined): void {
  let stream: ServerDuplexStreamImpl<unknown, unknown> | undefined;
  call.start({
    onReceiveMetadata(md) {
      stream = new ServerDuplexStreamImpl(m.path, call, md);
      const s = stream;
      guarded(call, () => (respond ? (m.func as (c: unknown, r: Respond) => void)(s, respond) : (m.func as (c: unknown) => void)(s)));
    },
    onReceiveMessage(message) {
      stream?.push(message);
    },
    onReceiveHalfClose() {
      stream?.push(null);
    },
    onCancel() {
      if (!stream) return;
      stream.cancelled = true;
      stream.emit('cancelled', 'cancelled');
      stream.destroy();
    },
  });
}

export function dispatch(call: ServerInterceptingCallInterface, m: DispatchedMethod): void {
  switch (m.kind) {
    case 'unary':
      return withOneRequest(call, m, (metadata, request) => {
        // grpc-js gives a unary handler this same object (a writable the handler never writes to).
        const c = new ServerWritableStreamImpl(m.path, call, metadata, request);
        guarded(call, () => (m.func as (c: unknown, r: Respond) => void)(c, responder(call)));
        return { cancel: () => { c.cancelled = true; c.emit('cancelled', 'cancelled'); } };
      });
    case 'serverStream':
      return withOneRequest(call, m, (metadata, request) => {
        const s = new ServerWritableStreamImpl(m.path, call, metadata, request);
        guarded(call, () => (m.func as (c: unknown) => void)(s));
        return { cancel: () => { s.cancelled = true; s.emit('cancelled', 'cancelled'); s.destroy(); } };
      });
    case 'clientStream':
      return withRequestStream(call, m, responder(call));
    case 'bidi':
      return withRequestStream(call, m, undefined);
  }
}
