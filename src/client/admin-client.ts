// The admin client the `hivemind` CLI uses: promise and async-iterator wrappers over the
// AdminService stubs, with streamed submit (sha256 trailer), resumable result download and
// readable errors.
import { rename, rm } from 'node:fs/promises';
import { status, type ClientReadableStream, type ClientWritableStream, type Metadata, type ServiceError } from '@grpc/grpc-js';
import { echoValue } from '../common/echo-value.js';
import { HivemindError } from '../common/errors.js';
import { AdminServiceChunkClient } from '../protocol/chunk-codec.js';
import { bearerMetadata } from '../protocol/auth-metadata.js';
import { describeGrpcError } from '../protocol/grpc-errors.js';
import { channelOptions, insecureTransport, type Transport } from '../protocol/transport.js';
import { TaskSpec, TaskState, type LogChunk } from '../protocol/gen/hivemind/v1/common.js';
import {
  type AdminServiceClient, type CreateTokenResponse, type ListNodesRequest, type ListNodesResponse, type ListTasksRequest,
  type ListTasksResponse, type NodeInfo, type SubmitTaskRequest, type SubmitTaskResponse,
  type TaskInfo, ListTokensRequest, type ListTokensResponse, type RevokeTokenRequest, type TokenInfo,
  type RemoveNodeRequest, type RemoveNodeResponse,
} from '../protocol/gen/hivemind/v1/admin.js';
import { callMessages } from '../transfer/call-messages.js';
import { sendWithTrailer } from '../transfer/checksum-upload.js';
import { downloadResumable, type Downloaded } from '../transfer/resumable-download.js';

/** A failed call to the master, with the gRPC status kept for callers that branch on it. */
export class MasterCallError extends HivemindError {
  readonly status: status | undefined;
  constructor(what: string, err: unknown) {
    const code = (err as Partial<ServiceError> | null)?.code;
    const st = typeof code === 'number' ? (code as status) : undefined;
    super(st === undefined ? 'MASTER_CALL_FAILED' : `MASTER_${status[st]}`, `${what}: ${describeGrpcError(err)}`, { cause: err });
    this.status = st;
  }
}

/** Raised by fetchResult when the downloaded bytes do not match the master's sha256. */
export class ResultMismatchError extends HivemindError {
  constructor(message: string) {
    super('RESULT_MISMATCH', message);
  }
}

export interface SubmitOptions {
  /** A tar.gz to unpack into the task's /input. */
  inputFile?: string;
  /** 0 or absent = the master's default. */
  maxAttempts?: number;
  /** Input bytes sent of the whole input file, after each chunk. */
  onProgress?(sent: number, total: number): void;
}

/** What fetchResult wrote: the size and sha256 of the result, and the bytes an earlier, interrupted fetch left. */
export type FetchedResult = Downloaded;

/** Items listTasks and listNodes collect unless told otherwise. */
export const DEFAULT_LIST_COUNT = 100;
export const DEFAULT_NODE_COUNT = 1000;
/** The largest page a master serves; asking for more only gets this many. */
const MAX_PAGE_SIZE = 1000;

/**
 * Reads pages until `limit` items (0 = no limit) or the last page. A master that hands back a token
 * it already gave, or an empty page that is not the last, is not followed further.
 */
export async function walkPages<T>(limit: number, page: (pageSize: number, pageToken: string) => Promise<{ items: T[]; next: string }>): Promise<T[]> {
  const out: T[] = [];
  const seen = new Set<string>();
  let token = '';
  for (;;) {
    const want = limit > 0 ? Math.min(limit - out.length, MAX_PAGE_SIZE) : MAX_PAGE_SIZE;
    const { items, next } = await page(want, token);
    out.push(...items.slice(0, limit > 0 ? limit - out.length : undefined));
    if (!next || (limit > 0 && out.length >= limit) || items.length === 0 || seen.has(next)) return out;
    seen.add(next);
    token = next;
  }
}

export class AdminClient {
  private closed = false;

  private constructor(private readonly client: AdminServiceClient, private readonly md: Metadata) {}

  /** Creates the channel; the connection itself is made lazily on the first call. */
  static connect(address: string, adminToken: string, transport: Transport = insecureTransport): AdminClient {
    const client = new AdminServiceChunkClient(address, transport.clientCredentials(), channelOptions);
    return new AdminClient(client, bearerMetadata(adminToken));
  }

  private unary<Req, Res>(what: string, method: (req: Req, md: Metadata, cb: (err: ServiceError | null, res: Res) => void) => unknown, req: Req): Promise<Res> {
    return new Promise((resolve, reject) => {
      method.call(this.client, req, this.md, (err, res) => (err ? reject(new MasterCallError(what, err)) : resolve(res)));
    });
  }

  /** Submits a task, streaming the input file (if any) with its sha256; returns the task id. */
  async submit(spec: Partial<TaskSpec>, opts: SubmitOptions = {}): Promise<string> {
    let call: ClientWritableStream<SubmitTaskRequest> | undefined;
    const response = new Promise<SubmitTaskResponse>((resolve, reject) => {
      call = this.client.submitTask(this.md, (err, res) => (err ? reject(new MasterCallError('submit', err)) : resolve(res)));
    });
    // A refusal (bad spec, auth) can arrive while we are still writing; surface that one.
    response.catch(() => undefined);
    try {
      const header: SubmitTaskRequest = {
        part: { $case: 'header', value: { spec: TaskSpec.fromPartial(spec), hasInput: opts.inputFile !== undefined, maxAttempts: opts.maxAttempts ?? 0 } },
      };
      await sendWithTrailer(call!, header, opts.inputFile === undefined ? undefined : {
        file: opts.inputFile,
        trailer: (t): SubmitTaskRequest => ({ part: { $case: 'trailer', value: t } }),
        shrank: (pos) => new HivemindError('INPUT_CHANGED', `submit: ${opts.inputFile} shrank to ${pos} bytes while it was sent`),
        ...(opts.onProgress ? { onProgress: opts.onProgress } : {}),
      });
    } catch (err) {
      call!.cancel();
      // Prefer the master's reason over the local write failure it caused.
      const remote = await Promise.race([response.then(() => undefined, (e: unknown) => e), new Promise((r) => setTimeout(r, 200, undefined))]);
      if (remote) throw remote;
      throw err;
    }
    return (await response).taskId;
  }

  /** One page of tasks, newest first; pass its nextPageToken back for the next. */
  listTasksPage(req: Partial<ListTasksRequest> = {}): Promise<ListTasksResponse> {
    return this.unary<ListTasksRequest, ListTasksResponse>('list tasks', this.client.listTasks, { states: [], limit: 0, pageToken: '', ...req });
  }

  /** Tasks newest first, page after page, until `limit` of them (default 100; 0 = all) or the last. */
  async listTasks(opts: { states?: TaskState[]; limit?: number } = {}): Promise<TaskInfo[]> {
    return walkPages(opts.limit ?? DEFAULT_LIST_COUNT, async (pageSize, pageToken) => {
      const r = await this.listTasksPage({ states: opts.states ?? [], limit: pageSize, pageToken });
      return { items: r.tasks, next: r.nextPageToken };
    });
  }

  getTask(taskId: string): Promise<TaskInfo> {
    return this.unary(`get task ${echoValue(taskId)}`, this.client.getTask, { taskId });
  }

  cancelTask(taskId: string, reason = ''): Promise<TaskInfo> {
    return this.unary(`cancel task ${echoValue(taskId)}`, this.client.cancelTask, { taskId, reason });
  }

  /** One page of nodes in registration order; pass its nextPageToken back for the next. */
  listNodesPage(req: Partial<ListNodesRequest> = {}): Promise<ListNodesResponse> {
    return this.unary<ListNodesRequest, ListNodesResponse>('list nodes', this.client.listNodes, { limit: 0, pageToken: '', ...req });
  }

  /** Nodes in registration order, page after page, until `limit` of them (default 1000; 0 = all) or the last. */
  async listNodes(opts: { limit?: number } = {}): Promise<NodeInfo[]> {
    return walkPages(opts.limit ?? DEFAULT_NODE_COUNT, async (pageSize, pageToken) => {
      const r = await this.listNodesPage({ limit: pageSize, pageToken });
      return { items: r.nodes, next: r.nextPageToken };
    });
  }

  listTokensPage(req: Partial<ListTokensRequest> = {}): Promise<ListTokensResponse> {
    return this.unary<ListTokensRequest, ListTokensResponse>('list tokens', this.client.listEnrollmentTokens, ListTokensRequest.fromPartial(req));
  }

  /** Enrollment tokens, oldest first, page by page; `limit` 0 = all. */
  async listTokens(opts: { limit?: number } = {}): Promise<TokenInfo[]> {
    return walkPages(opts.limit ?? 0, async (pageSize, pageToken) => {
      const r = await this.listTokensPage({ limit: pageSize, pageToken });
      return { items: r.tokens, next: r.nextPageToken };
    });
  }

  revokeToken(tokenId: string): Promise<TokenInfo> {
    return this.unary<RevokeTokenRequest, TokenInfo>('revoke token', this.client.revokeEnrollmentToken, { tokenId });
  }

  removeNode(nodeId: string): Promise<RemoveNodeResponse> {
    return this.unary<RemoveNodeRequest, RemoveNodeResponse>('remove node', this.client.removeNode, { nodeId });
  }

  createToken(opts: { ttlMs?: number; uses?: number } = {}): Promise<CreateTokenResponse> {
    return this.unary('create enrollment token', this.client.createEnrollmentToken, { ttlMs: opts.ttlMs ?? 0, uses: opts.uses ?? 0 });
  }

  /** The task now and after every change, ending after the terminal state. */
  watchTask(taskId: string, signal?: AbortSignal): AsyncIterable<TaskInfo> {
    return this.iterate(`watch task ${echoValue(taskId)}`, this.client.watchTask({ taskId }, this.md), signal);
  }

  /** The stored log, then (follow) live chunks until the task is terminal. */
  streamLogs(taskId: string, opts: { follow?: boolean } = {}, signal?: AbortSignal): AsyncIterable<LogChunk> {
    return this.iterate(`logs of task ${echoValue(taskId)}`, this.client.streamLogs({ taskId, follow: opts.follow ?? false }, this.md), signal);
  }

  private async *iterate<T>(what: string, stream: ClientReadableStream<T>, signal?: AbortSignal): AsyncGenerator<T> {
    try {
      // Stopping early (break) must not leave the call running: callMessages cancels it.
      yield* callMessages(stream, signal);
    } catch (err) {
      if (signal?.aborted && (err as Partial<ServiceError>).code === status.CANCELLED) return;
      throw new MasterCallError(what, err);
    }
  }

  /**
   * Downloads a task's result to `destPath`. Bytes go to `<destPath>.partial` first; an
   * interrupted fetch resumes from the partial's size. The whole file is checked against the
   * sha256 the task's outcome names before it is renamed into place.
   */
  async fetchResult(taskId: string, destPath: string, signal?: AbortSignal, onProgress?: (done: number, total: number | undefined) => void): Promise<FetchedResult> {
    const task = await this.getTask(taskId);
    const want = task.outcome;
    if (!want || !want.resultSha256 || want.resultSize === 0) {
      throw new MasterCallError(`fetch result of task ${taskId}`, new Error(`the task has no result (state ${TaskState[task.state].replace('TASK_STATE_', '')})`));
    }
    const partial = `${destPath}.partial`;
    const what = `fetch result of task ${taskId}`;
    const got = await downloadResumable({
      file: partial,
      size: want.resultSize,
      fetch: (offset) => this.iterate(what, this.client.fetchResult({ taskId, offset }, this.md), signal),
      outOfOrder: (expected, at) => new ResultMismatchError(`${what}: expected a chunk at offset ${expected}, got ${at}`),
      cannotWrite: (err) => new MasterCallError(what, new Error(`cannot write ${partial}: ${err.code === 'ENOENT' ? 'its directory does not exist' : err.message}`)),
      ...(onProgress ? { onProgress } : {}),
    });
    if (got.resumedFrom < want.resultSize && signal?.aborted) {
      throw new MasterCallError(what, new Error(`interrupted at ${got.size} of ${want.resultSize} bytes; run again to resume`));
    }
    if (got.size !== want.resultSize || got.sha256 !== want.resultSha256) {
      await rm(partial, { force: true });
      throw new ResultMismatchError(`${what}: got ${got.size} bytes with sha256 ${got.sha256}, expected ${want.resultSize} bytes with sha256 ${want.resultSha256}; the partial file was deleted, fetch again`);
    }
    await rename(partial, destPath);
    return got;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.client.close();
  }
}
