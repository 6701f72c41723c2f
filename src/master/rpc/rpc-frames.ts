// What the master's RPC threads and its main thread say to each other (rpc-thread.ts and
// threaded-server.ts). A thread holds the HTTP/2 connections and gRPC framing of its calls; the
// main thread holds the handlers and the state. Messages cross as their encoded bytes: the thread
// never decodes one, the main thread never sees a header, a socket or an HTTP/2 stream.
import { Metadata } from '@grpc/grpc-js';
import type { ConnectionInfo } from '@grpc/grpc-js/build/src/server-interceptors.js';

/** Metadata as grpc-js's Metadata.toJSON() writes it: each key with its values (-bin keys as bytes). */
export type WireMetadata = Record<string, (string | Uint8Array)[]>;

export interface RpcMethod {
  path: string;
  requestStream: boolean;
  responseStream: boolean;
}

/** grpc-js's name for how a method streams (Server.register's type, and which dispatch runs it). */
export type HandlerKind = 'unary' | 'clientStream' | 'serverStream' | 'bidi';

export function handlerKind(m: { requestStream: boolean; responseStream: boolean }): HandlerKind {
  if (m.requestStream) return m.responseStream ? 'bidi' : 'clientStream';
  return m.responseStream ? 'serverStream' : 'unary';
}

export interface RpcThreadData {
  /** Which of the server's threads this is (for its log lines and metrics). */
  index: number;
  host: string;
  /** 0: any free port (the first thread); the others bind the port the first one got. */
  port: number;
  /** SO_REUSEPORT, so that several threads listen on one port and the kernel spreads connections. */
  reusePort: boolean;
  methods: RpcMethod[];
  /** grpc.max_receive_message_length of the thread's server. */
  maxReceiveBytes: number;
  /** Messages of a client stream read ahead of the handler, per call. */
  readAhead: number;
  /** Calls open at once on this thread; past it a new call ends RESOURCE_EXHAUSTED before the main thread hears of it. */
  maxOpenCalls: number;
}

/** Thread → main, in batches (FromThread[], one message per turn of the thread's loop). */
export type FromThread =
  | { t: 'listening'; port: number }
  | { t: 'listenFailed'; message: string }
  /** A call's headers: the call exists on the main thread from here on. */
  | { t: 'open'; id: number; path: string; metadata: WireMetadata; peer: string; host: string; deadline: number; connection: ConnectionInfo }
  | { t: 'message'; id: number; bytes: Uint8Array }
  | { t: 'halfClose'; id: number }
  /** The call is over on the wire (the client cancelled, its deadline passed, or its status went out). */
  | { t: 'cancel'; id: number }
  /** The oldest message the main thread sent on the call reached the HTTP/2 stream. */
  | { t: 'sent'; id: number }
  | { t: 'lag'; token: number; p50: number; p99: number; max: number }
  | { t: 'closed' };

/** Main → thread, in batches (ToThread[], one message per turn of the main thread's loop). */
export type ToThread =
  /** The handler took one message of the call: the thread may read one more ahead. */
  | { t: 'read'; id: number }
  | { t: 'metadata'; id: number; metadata: WireMetadata }
  | { t: 'message'; id: number; bytes: Uint8Array }
  | { t: 'status'; id: number; code: number; details: string; metadata: WireMetadata | null }
  /** Event-loop delay since the previous ask, in seconds (answered with a 'lag' frame). */
  | { t: 'lag'; token: number }
  /** Stop taking connections; end the open ones after `graceMs` (0: at once); answered with 'closed'. */
  | { t: 'close'; graceMs: number };

export function toWire(md: Metadata): WireMetadata {
  return md.toJSON() as WireMetadata;
}

/** The bytes a frame carried, as a Buffer over the same memory (no copy). */
export function bufferOf(b: Uint8Array): Buffer {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}

/** Metadata from its wire form; a key or value grpc-js refuses throws (the thread read them from headers, so they are valid). */
export function fromWire(w: WireMetadata): Metadata {
  const md = new Metadata();
  for (const [key, values] of Object.entries(w)) {
    for (const v of values) md.add(key, typeof v === 'string' ? v : bufferOf(v));
  }
  return md;
}
