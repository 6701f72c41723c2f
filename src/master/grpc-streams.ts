// Small helpers for gRPC server streams: reading a client stream that ends cleanly when the
// client cancels, and writing with backpressure that never waits on a dead call.
import type { EventEmitter } from 'node:events';
import type { Readable, Writable } from 'node:stream';
import { AbortedError } from '../common/errors.js';

type ServerReadable = Readable & EventEmitter;
type ServerWritable = Writable & EventEmitter & { cancelled?: boolean };

/** Messages of a client stream; a client cancel turns into an AbortedError thrown by the loop. */
export async function* messagesOf<T>(call: ServerReadable): AsyncGenerator<T> {
  const onCancel = () => call.destroy(new AbortedError('the client cancelled the call'));
  call.once('cancelled', onCancel);
  try {
    for await (const m of call) yield m as T;
  } finally {
    call.off('cancelled', onCancel);
  }
}

/** Resolves when the call's buffer drained; rejects when the call is cancelled or closed first. */
export function drained(call: ServerWritable): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = (err?: Error) => {
      call.off('drain', onDrain);
      call.off('cancelled', onGone);
      call.off('close', onGone);
      call.off('error', onGone);
      if (err) reject(err);
      else resolve();
    };
    const onDrain = () => done();
    const onGone = () => done(new AbortedError('the client went away'));
    call.on('drain', onDrain);
    call.on('cancelled', onGone);
    call.on('close', onGone);
    call.on('error', onGone);
  });
}

/** Writes one message, waiting for the client to catch up when the buffer is full. */
export async function writeMessage<T>(call: ServerWritable, msg: T): Promise<void> {
  if (call.cancelled || call.destroyed) throw new AbortedError('the client went away');
  if (!call.write(msg)) await drained(call);
}

/** An AbortSignal that fires when the server-stream call is cancelled by the client. */
export function callSignal(call: EventEmitter): { signal: AbortSignal; dispose: () => void } {
  const ac = new AbortController();
  const onCancel = () => ac.abort(new AbortedError('the client cancelled the call'));
  call.once('cancelled', onCancel);
  call.once('close', onCancel);
  return { signal: ac.signal, dispose: () => { call.off('cancelled', onCancel); call.off('close', onCancel); } };
}
