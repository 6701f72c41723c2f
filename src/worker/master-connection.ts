// The worker's only view of its master: a narrow interface over the NodeService calls, so
// the worker loop is tested with an in-memory fake and gRPC stays in one adapter.
import type { ExecInput, LogChunk, ResourceReport } from '../protocol/gen/hivemind/v1/common.js';
import type {
  ExecNodeMessage,
  NodeCommand,
  RegisterRequest,
  RegisterResponse,
  SubscribeRequest,
  TaskUpdate,
  TaskUpdateAck,
  UploadResultResponse,
} from '../protocol/gen/hivemind/v1/node.js';
import { HivemindError } from '../common/errors.js';
import type { OffsetChunk } from '../transfer/resumable-download.js';

export interface ReportSink {
  send(report: ResourceReport): void;
  close(): void;
}

export interface SubscriptionHandle {
  /** Settles when the command stream ends: with the error, or undefined for a clean end. Never rejects. */
  readonly closed: Promise<Error | undefined>;
  close(): void;
}

export interface LogSink {
  /** Queues a chunk; false when it was not taken (the stream is broken). */
  write(chunk: LogChunk): boolean;
  /** Whether the stream takes more without growing its own buffer (not broken, not awaiting 'drain'). */
  readonly ready: boolean;
  /** True once the stream failed; a new sink must be opened. */
  readonly broken: boolean;
  /** Half-closes the stream and waits for the master's ack (errors are swallowed: logs are best effort). */
  end(): Promise<void>;
  /**
   * How much of the attempt's stdout and stderr this master has stored (NodeService.GetLogOffset);
   * undefined from a master that does not keep offsets (older: it would append a resend twice).
   * Rejects when the master cannot answer now. A sink without it is taken for such an older master.
   */
  held?(): Promise<LogHeld | undefined>;
}

/** Bytes of each stream of an attempt's log a master holds. */
export interface LogHeld {
  stdout: number;
  stderr: number;
}

/** The node's end of NodeService.ExecSession (grpc-master-connection.ts; a fake in tests). */
export interface ExecChannel {
  /** Queues a message; false when the stream's buffer is full (wait for onDrain). */
  write(message: ExecNodeMessage): boolean;
  onDrain(listener: () => void): void;
  /** The master's messages, then `onEnd` once (with the error when the stream failed or was cancelled). */
  listen(onInput: (input: ExecInput) => void, onEnd: (err?: Error) => void): void;
  /** Stops / restarts taking the master's messages (stdin backpressure). */
  pause(): void;
  resume(): void;
  /** Half-closes after the exit message. */
  end(): void;
  cancel(): void;
}

export interface MasterConnection {
  /**
   * Registers (bearer = enrollment token) or refreshes facts (bearer = node credential). On
   * success the connection authenticates every later call with the returned credential.
   */
  register(request: RegisterRequest, bearer: string): Promise<RegisterResponse>;
  /** Opens the node's reports to the master (SendReport calls, or the Report stream of an older master); `onError` fires once if they fail. */
  openReportStream(onError: (err: Error) => void): ReportSink;
  subscribe(request: SubscribeRequest, onCommand: (command: NodeCommand) => void): SubscriptionHandle;
  updateTask(update: TaskUpdate): Promise<TaskUpdateAck>;
  /**
   * Downloads the task's input into destFile, resuming from the file's current size, and
   * verifies the whole file's sha256 (InputChecksumError on mismatch). Returns the size.
   */
  downloadInput(taskId: string, attempt: number, destFile: string, expectedSha256: string, signal: AbortSignal): Promise<number>;
  /**
   * A data set the attempt mounts from the master (NodeService.DownloadData), from `offset` on;
   * `sha256` is "sha256:" + hex. Cancelled when the consumer stops or `signal` aborts.
   */
  downloadData(taskId: string, attempt: number, sha256: string, offset: number, signal: AbortSignal): AsyncIterable<OffsetChunk>;
  /** Uploads the result archive from the offset the master already holds; resolves once verified. */
  /** `onProgress` gets the bytes the master holds so far (resumed offset included). */
  uploadResult(taskId: string, attempt: number, file: string, sha256: string, signal: AbortSignal, onProgress?: (sentBytes: number, totalBytes: number) => void): Promise<UploadResultResponse>;
  pushLogs(taskId: string, attempt: number): LogSink;
  /** Opens NodeService.ExecSession (one exec session: attach first; see exec-sessions.ts). */
  execSession(): ExecChannel;
  /** Idempotent; cancels open streams. */
  close(): void;
}

export type ConnectionFactory = (masterAddress: string) => MasterConnection;

export class InputChecksumError extends HivemindError {
  constructor(taskId: string, expected: string, actual: string) {
    super('INPUT_CHECKSUM', `task ${taskId}: input archive sha256 is ${actual}, the master announced ${expected}`);
  }
}

/** The master's answers contradict what the node holds (offsets, checksums): retrying will not help. */
export class TransferError extends HivemindError {
  constructor(message: string) {
    super('TRANSFER_INCONSISTENT', message);
  }
}
