// One call of an RPC thread as the main thread sees it: grpc-js's ServerInterceptingCallInterface
// (what its interceptors and call objects are written against), with the wire on the other side
// of a MessagePort. It decodes and encodes the messages with the method's own (de)serializers,
// delivers one message per startRead as grpc-js's base call does, and tells its listener
// onCancel once the call is over, whichever way it ends (grpc-js does the same: handlers see
// 'cancelled' after every call).
import { Metadata, status as Status, type ServerInterceptingCallInterface } from '@grpc/grpc-js';
import type { InterceptingServerListener, ConnectionInfo } from '@grpc/grpc-js/build/src/server-interceptors.js';
import type { PartialStatusObject } from '@grpc/grpc-js/build/src/call-interface.js';
import type { AuthContext } from '@grpc/grpc-js/build/src/auth-context.js';
import { PerRequestMetricRecorder } from '@grpc/grpc-js/build/src/orca.js';
import { errorMessage } from '../../common/errors.js';
import { bufferOf, toWire, type ToThread } from './rpc-frames.js';

/** What a call needs of its thread. */
export interface CallLink {
  post(frame: ToThread): void;
  /** The call is over on this side: later frames for it are dropped. */
  forget(id: number): void;
}

/** What a call needs of its method. */
export interface CallCodec {
  serialize(value: unknown): Buffer;
  deserialize(bytes: Buffer): unknown;
  /**
   * Whether the method streams its responses. A method with one response sends it and then its
   * status, and the thread writes frames in the order they come: its message's callback needs no
   * round trip through the thread (which would hold every unary answer for another turn of the
   * main thread's loop).
   */
  responseStream: boolean;
}

export interface CallOpening {
  id: number;
  metadata: Metadata;
  peer: string;
  host: string;
  /** ms since the epoch; Infinity: none. */
  deadline: number;
  connection: ConnectionInfo;
}

export class BridgedCall implements ServerInterceptingCallInterface {
  private listener: InterceptingServerListener | undefined;
  /** Messages and the half-close (null) received, not yet delivered. */
  private readonly inbox: (Buffer | null)[] = [];
  private readWanted = false;
  /** The status went out, or the thread said the call is over. */
  private ended = false;
  private cancelNotified = false;
  /** Callbacks of sent messages, oldest first: the thread confirms them in order. */
  private readonly sentCallbacks: (() => void)[] = [];
  private recorder: PerRequestMetricRecorder | undefined;

  constructor(
    private readonly link: CallLink,
    private readonly codec: CallCodec,
    private readonly opening: CallOpening,
  ) {}

  get id(): number {
    return this.opening.id;
  }

  start(listener: InterceptingServerListener): void {
    if (this.ended) return;
    this.listener = listener;
    listener.onReceiveMetadata(this.opening.metadata);
  }

  sendMetadata(metadata: Metadata): void {
    if (this.ended) return;
    this.link.post({ t: 'metadata', id: this.id, metadata: toWire(metadata) });
  }

  sendMessage(message: unknown, callback: () => void): void {
    if (this.ended) return;
    let encoded: Buffer;
    try {
      encoded = this.codec.serialize(message);
    } catch (err) {
      this.sendStatus({ code: Status.INTERNAL, details: `Error serializing response: ${errorMessage(err)}`, metadata: null });
      return;
    }
    // Copied into the batch's buffer when the link flushes (this turn of the loop).
    this.link.post({ t: 'message', id: this.id, bytes: encoded });
    if (this.codec.responseStream) this.sentCallbacks.push(callback);
    else process.nextTick(callback);
  }

  sendStatus(status: PartialStatusObject): void {
    if (this.ended) return;
    this.ended = true;
    this.link.post({ t: 'status', id: this.id, code: status.code, details: status.details, metadata: status.metadata ? toWire(status.metadata) : null });
    this.link.forget(this.id);
    this.notifyOnCancel();
  }

  startRead(): void {
    if (this.ended) return;
    this.readWanted = true;
    this.deliver();
  }

  getPeer(): string {
    return this.opening.peer;
  }

  getDeadline(): number {
    return this.opening.deadline;
  }

  getHost(): string {
    return this.opening.host;
  }

  getAuthContext(): AuthContext {
    return {};
  }

  getConnectionInfo(): ConnectionInfo {
    return this.opening.connection;
  }

  getMetricsRecorder(): PerRequestMetricRecorder {
    this.recorder ??= new PerRequestMetricRecorder();
    return this.recorder;
  }

  // ---- from the thread (RpcThreadLink) ----

  received(bytes: Uint8Array): void {
    if (this.ended) return;
    this.inbox.push(bufferOf(bytes));
    this.deliver();
  }

  halfClosed(): void {
    if (this.ended) return;
    this.inbox.push(null);
    this.deliver();
  }

  sent(): void {
    if (this.codec.responseStream) this.sentCallbacks.shift()?.();
  }

  /** The thread says the call is over (cancelled, past its deadline, its connection gone). */
  over(): void {
    this.ended = true;
    this.sentCallbacks.length = 0;
    this.notifyOnCancel();
  }

  private deliver(): void {
    if (!this.readWanted || this.inbox.length === 0 || !this.listener) return;
    this.readWanted = false;
    const next = this.inbox.shift()!;
    if (next === null) {
      this.listener.onReceiveHalfClose();
      return;
    }
    this.link.post({ t: 'read', id: this.id });
    let message: unknown;
    try {
      message = this.codec.deserialize(next);
    } catch (err) {
      this.sendStatus({ code: Status.INTERNAL, details: `Error deserializing request: ${errorMessage(err)}`, metadata: null });
      return;
    }
    this.listener.onReceiveMessage(message);
  }

  private notifyOnCancel(): void {
    if (this.cancelNotified) return;
    this.cancelNotified = true;
    process.nextTick(() => this.listener?.onCancel());
  }
}
