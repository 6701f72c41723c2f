// MasterConnection over gRPC (NodeServiceClient). Archives stream between files and the wire
// chunk by chunk with backpressure, so memory stays constant whatever the archive size.
import { stat } from 'node:fs/promises';
import { status, type ClientWritableStream, type Metadata, type ServiceError } from '@grpc/grpc-js';
import type { ExecInput, LogChunk, ResourceReport } from '../protocol/gen/hivemind/v1/common.js';
import {
  type ExecNodeMessage,
  type NodeServiceClient,
  type NodeCommand,
  type RegisterRequest,
  type RegisterResponse,
  type SubscribeRequest,
  type TaskUpdate,
  type TaskUpdateAck,
  type UploadOffsetResponse,
  type UploadResultRequest,
  type UploadResultResponse,
} from '../protocol/gen/hivemind/v1/node.js';
import { NodeServiceChunkClient } from '../protocol/chunk-codec.js';
import { bearerMetadata } from '../protocol/auth-metadata.js';
import { channelOptions, insecureTransport, type Transport } from '../protocol/transport.js';
import { AbortedError, AuthError } from '../common/errors.js';
import { BULK_RECLAIM_EVERY_BYTES, BufferReclaimer } from '../common/buffer-reclaimer.js';
import { cutUpdateMessage } from '../protocol/node-limits.js';
import { callMessages } from '../transfer/call-messages.js';
import { sendWithTrailer } from '../transfer/checksum-upload.js';
import { ReportCalls } from './report-calls.js';
import { downloadResumable, type OffsetChunk } from '../transfer/resumable-download.js';
import {
  InputChecksumError,
  type ExecChannel,
  TransferError,
  type LogSink,
  type MasterConnection,
  type ReportSink,
  type SubscriptionHandle,
} from './master-connection.js';


export interface GrpcMasterConnectionOptions {
  transport?: Transport;
  /** Deadline of unary calls; a hung master must not freeze the outbox forever. */
  unaryTimeoutMs?: number;
}

export class GrpcMasterConnection implements MasterConnection {
  private readonly client: NodeServiceClient;
  private credential: string | undefined;
  private readonly streams = new Set<{ cancel(): void }>();
  /** Unary calls in flight that close() cancels (SendReport). */
  private readonly unaryCalls = new Set<{ cancel(): void }>();
  /** The master answered SendReport with UNIMPLEMENTED (an older master): the Report stream from then on. */
  private reportStreamOnly = false;
  private closed = false;

  constructor(
    address: string,
    private readonly opts: GrpcMasterConnectionOptions = {},
  ) {
    const transport = opts.transport ?? insecureTransport;
    this.client = new NodeServiceChunkClient(address, transport.clientCredentials(), channelOptions);
  }

  private md(): Metadata {
    if (!this.credential) throw new AuthError('not registered yet: call register() before other NodeService calls');
    return bearerMetadata(this.credential);
  }

  private deadline(): Date {
    return new Date(Date.now() + (this.opts.unaryTimeoutMs ?? 30_000));
  }

  private track<T extends { cancel(): void; on(ev: 'close' | 'error', l: () => void): unknown }>(call: T): T {
    this.streams.add(call);
    const forget = () => this.streams.delete(call);
    call.on('close', forget);
    call.on('error', forget);
    return call;
  }

  register(request: RegisterRequest, bearer: string): Promise<RegisterResponse> {
    return new Promise((resolve, reject) => {
      this.client.register(request, bearerMetadata(bearer), { deadline: this.deadline() }, (err, res) => {
        if (err) return reject(err);
        this.credential = res.nodeCredential || bearer;
        resolve(res);
      });
    });
  }

  /** Reports as SendReport calls, or on the Report stream for a master without them (report-calls.ts). */
  openReportStream(onError: (err: Error) => void): ReportSink {
    if (this.reportStreamOnly) return this.reportStream(onError);
    return new ReportCalls(
      {
        sendOne: (report, done) => {
          const call = this.client.sendReport(report, this.md(), { deadline: this.deadline() }, (err: ServiceError | null) => {
            this.unaryCalls.delete(call);
            done(err ?? undefined);
          });
          this.unaryCalls.add(call);
        },
        openStream: (e) => this.reportStream(e),
        onUnimplemented: () => void (this.reportStreamOnly = true),
      },
      onError,
    );
  }

  private reportStream(onError: (err: Error) => void): ReportSink {
    let ended = false;
    const call = this.track(
      this.client.report(this.md(), (err: ServiceError | null) => {
        if (err && !ended) onError(err);
      }),
    );
    return {
      send: (report: ResourceReport) => {
        // Reports are small and infrequent; when the stream is saturated the next one will do.
        if (!ended && call.writable) call.write(report);
      },
      close: () => {
        if (ended) return;
        ended = true;
        call.end();
      },
    };
  }

  subscribe(request: SubscribeRequest, onCommand: (command: NodeCommand) => void): SubscriptionHandle {
    const call = this.track(this.client.subscribe(request, this.md()));
    const closed = new Promise<Error | undefined>((resolve) => {
      call.on('data', (cmd: NodeCommand) => onCommand(cmd));
      call.on('error', (err: Error) => resolve(err));
      call.on('end', () => resolve(undefined));
    });
    return { closed, close: () => call.cancel() };
  }

  updateTask(update: TaskUpdate): Promise<TaskUpdateAck> {
    return new Promise((resolve, reject) => {
      this.client.updateTask(withinLimits(update), this.md(), { deadline: this.deadline() }, (err, res) => (err ? reject(err) : resolve(res)));
    });
  }

  private uploadOffset(taskId: string, attempt: number): Promise<UploadOffsetResponse> {
    return new Promise((resolve, reject) => {
      this.client.getUploadOffset({ taskId, attempt }, this.md(), { deadline: this.deadline() }, (err, res) => (err ? reject(err) : resolve(res)));
    });
  }

  async downloadInput(taskId: string, attempt: number, destFile: string, expectedSha256: string, signal: AbortSignal): Promise<number> {
    signal.throwIfAborted();
    let got;
    try {
      got = await downloadResumable({
        file: destFile,
        fetch: (offset) => callMessages(this.track(this.client.downloadInput({ taskId, attempt, offset }, this.md())), signal),
        signal,
        outOfOrder: (expected, at) => new TransferError(`task ${taskId}: input chunk at offset ${at}, expected ${expected}`),
        reclaimer: new BufferReclaimer(),
      });
    } catch (err) {
      if (signal.aborted) throw new AbortedError(`task ${taskId}: input download aborted`, { cause: signal.reason });
      throw err;
    }
    if (expectedSha256 && got.sha256 !== expectedSha256.toLowerCase()) throw new InputChecksumError(taskId, expectedSha256, got.sha256);
    return got.size;
  }

  downloadData(taskId: string, attempt: number, sha256: string, offset: number, signal: AbortSignal): AsyncIterable<OffsetChunk> {
    signal.throwIfAborted();
    return callMessages(this.track(this.client.downloadData({ taskId, attempt, sha256, offset }, this.md())), signal);
  }

  async uploadResult(
    taskId: string,
    attempt: number,
    file: string,
    sha256: string,
    signal: AbortSignal,
    onProgress?: (sentBytes: number, totalBytes: number) => void,
  ): Promise<UploadResultResponse> {
    signal.throwIfAborted();
    const size = (await stat(file)).size;
    const held = await this.uploadOffset(taskId, attempt);
    if (held.complete) {
      if (held.sha256 && held.sha256 !== sha256) {
        throw new TransferError(`task ${taskId}: the master already holds a different result (sha256 ${held.sha256}, ours ${sha256})`);
      }
      return { size, sha256 };
    }
    if (held.offset > size) throw new TransferError(`task ${taskId}: the master holds ${held.offset} bytes of a ${size}-byte result`);

    let settle!: { resolve: (r: UploadResultResponse) => void; reject: (e: Error) => void };
    const response = new Promise<UploadResultResponse>((resolve, reject) => (settle = { resolve, reject }));
    const call: ClientWritableStream<UploadResultRequest> = this.track(
      this.client.uploadResult(this.md(), (err, res) => (err ? settle.reject(err) : settle.resolve(res))),
    );
    const onAbort = () => call.cancel();
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      await sendWithTrailer(call, { part: { $case: 'header', value: { taskId, attempt, offset: held.offset, totalSize: size } } }, {
        file,
        from: held.offset,
        size,
        sha256,
        trailer: (t): UploadResultRequest => ({ part: { $case: 'trailer', value: t } }),
        shrank: (pos) => new TransferError(`task ${taskId}: the result file shrank to ${pos} bytes while it was uploaded`),
        signal,
        onProgress,
        reclaimer: new BufferReclaimer(BULK_RECLAIM_EVERY_BYTES),
      });
      const res = await response;
      if (res.sha256 && res.sha256 !== sha256) throw new TransferError(`task ${taskId}: the master stored sha256 ${res.sha256}, ours is ${sha256}`);
      return res;
    } catch (err) {
      call.cancel();
      response.catch(() => undefined);
      if (signal.aborted) throw new AbortedError(`task ${taskId}: result upload aborted`, { cause: signal.reason });
      throw err;
    } finally {
      signal.removeEventListener('abort', onAbort);
    }
  }

  pushLogs(taskId: string, attempt: number): LogSink {
    let broken = false;
    let done!: () => void;
    const acked = new Promise<void>((resolve) => (done = resolve));
    const call = this.track(
      this.client.pushLogs(this.md(), (err) => {
        if (err) broken = true;
        done();
      }),
    );
    call.on('error', () => {
      broken = true;
    });
    return {
      write: (chunk: LogChunk) => {
        if (broken || !call.writable) return false;
        if (chunk.taskId !== taskId || chunk.attempt !== attempt) throw new Error(`log chunk for ${chunk.taskId} sent on the stream of ${taskId}`);
        call.write(chunk);
        return true;
      },
      get ready() {
        return !broken && call.writable && !call.writableNeedDrain;
      },
      get broken() {
        return broken;
      },
      end: async () => {
        if (!broken && call.writable) call.end();
        await acked;
      },
      held: () =>
        new Promise((resolve, reject) => {
          this.client.getLogOffset({ taskId, attempt }, this.md(), { deadline: this.deadline() }, (err, res) => {
            if (err?.code === status.UNIMPLEMENTED) resolve(undefined);
            else if (err) reject(err);
            else resolve({ stdout: res.stdout, stderr: res.stderr });
          });
        }),
    };
  }

  execSession(): ExecChannel {
    const call = this.track(this.client.execSession(this.md()));
    let over = false;
    let ended: ((err?: Error) => void) | undefined;
    const finish = (err?: Error) => {
      if (over) return;
      over = true;
      ended?.(err);
    };
    // Both ways: a failed or cancelled call (error) and the master's clean end.
    call.on('error', (err: Error) => finish(err));
    call.on('end', () => finish());
    return {
      write: (message: ExecNodeMessage) => {
        if (over || !call.writable) return true;
        return call.write(message);
      },
      onDrain: (listener) => void call.once('drain', listener),
      listen: (onInput: (input: ExecInput) => void, onEnd) => {
        ended = onEnd;
        call.on('data', onInput);
        if (over) onEnd();
      },
      pause: () => void call.pause(),
      resume: () => void call.resume(),
      end: () => {
        if (call.writable) call.end();
      },
      cancel: () => call.cancel(),
    };
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const s of this.streams) s.cancel();
    this.streams.clear();
    for (const c of this.unaryCalls) c.cancel();
    this.unaryCalls.clear();
    this.client.close();
  }
}

/** The update with its free text cut to what the master stores (it would cut it the same way). */
function withinLimits(u: TaskUpdate): TaskUpdate {
  const message = cutUpdateMessage(u.message);
  const outcome = u.outcome ? { ...u.outcome, message: cutUpdateMessage(u.outcome.message) } : undefined;
  return { ...u, message, ...(outcome ? { outcome } : {}) };
}
