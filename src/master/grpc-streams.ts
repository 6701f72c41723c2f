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

/**
 * Messages a server stream may have handed to gRPC that have not reached the socket yet. A
 * Writable's own mark counts objects (16): with 256 KiB chunks a reader that stops reading held
 * 4 MiB of the master's memory per stream; two in flight keep that to ~0.5 MiB and still overlap
 * reading the next chunk with sending this one.
 */
export const MAX_MESSAGES_IN_FLIGHT = 2;

interface InFlight {
  count: number;
  wake: (() => void) | undefined;
}

const inFlight = new WeakMap<ServerWritable, InFlight>();

/** Resolves when one of the call's messages went out; rejects when the call is cancelled or closed first. */
function oneSent(call: ServerWritable, f: InFlight): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = (err?: Error) => {
      f.wake = undefined;
      call.off('cancelled', onGone);
      call.off('close', onGone);
      call.off('error', onGone);
      if (err) reject(err);
      else resolve();
    };
    const onGone = () => done(new AbortedError('the client went away'));
    f.wake = () => done();
    call.on('cancelled', onGone);
    call.on('close', onGone);
    call.on('error', onGone);
  });
}

/**
 * Writes one message, waiting while MAX_MESSAGES_IN_FLIGHT of the call's messages are still on
 * their way out: a slow or stalled reader holds at most that many in the master.
 */
export async function writeMessage<T>(call: ServerWritable, msg: T): Promise<void> {
  if (call.cancelled || call.destroyed) throw new AbortedError('the client went away');
  let f = inFlight.get(call);
  if (!f) {
    f = { count: 0, wake: undefined };
    inFlight.set(call, f);
  }
  const mine = f;
  mine.count++;
  call.write(msg, () => {
    mine.count--;
    mine.wake?.();
  });
  while (mine.count >= MAX_MESSAGES_IN_FLIGHT) {
    if (call.cancelled || call.destroyed) throw new AbortedError('the client went away');
    await oneSent(call, mine);
  }
}

/** An AbortSignal that fires when the server-stream call is cancelled by the client. */
export function callSignal(call: EventEmitter): { signal: AbortSignal; dispose: () => void } {
  const ac = new AbortController();
  const onCancel = () => ac.abort(new AbortedError('the client cancelled the call'));
  call.once('cancelled', onCancel);
  call.once('close', onCancel);
  return { signal: ac.signal, dispose: () => { call.off('cancelled', onCancel); call.off('close', onCancel); } };
}

/**
 * Sends the bytes of `source` (a file read from `offset`) as DataChunk messages with their
 * offsets, with writeMessage's backpressure; stops quietly once `signal` fires.
 */
export async function writeChunks(call: ServerWritable, source: Readable, offset: number, signal: AbortSignal): Promise<void> {
  let at = offset;
  for await (const data of source.iterator({ destroyOnReturn: true })) {
    if (signal.aborted) return;
    await writeMessage(call, { offset: at, data: data as Buffer });
    at += (data as Buffer).length;
  }
}
