// The gRPC handlers of AdminService (what the `hivemind` CLI calls): submit with a streamed
// input, task queries, watch and log follow driven by MasterEvents, cancel, result download,
// nodes and enrollment tokens. Every call needs the admin token.
import { randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import type { sendUnaryData, ServerReadableStream, ServerWritableStream } from '@grpc/grpc-js';
import { echoValue } from '../common/echo-value.js';
import { InvalidTaskError, NodeRemovedError, NotFoundError } from '../common/errors.js';
import { toServiceError } from '../protocol/grpc-errors.js';
import { CHUNK_SIZE } from '../protocol/transport.js';
import { TaskState, type DataChunk, type LogChunk } from '../protocol/gen/hivemind/v1/common.js';
import {
  type AdminServiceServer, CancelTaskRequest, CreateTokenRequest, CreateTokenResponse, FetchResultRequest, GetTaskRequest,
  ListNodesRequest, ListNodesResponse, ListTasksRequest, ListTasksResponse, StreamLogsRequest, SubmitTaskRequest,
  SubmitTaskResponse, NodeInfo, TaskInfo,
  ListTokensRequest, ListTokensResponse, RemoveNodeRequest, RemoveNodeResponse, RevokeTokenRequest, TokenInfo,
} from '../protocol/gen/hivemind/v1/admin.js';
import { decodePageToken, firstOf, pageSize, summarise, takePage, validateStatesFilter } from './admin-listing.js';
import { callSignal, messagesOf, writeChunks, writeMessage } from './grpc-streams.js';
import { isTerminal, type NodeRow, type TaskRow } from './master-store.js';
import { InvalidArgumentError, PreconditionError, ResourceExhaustedError } from './master-errors.js';
import { validateMaxAttempts, validateTaskSpec } from './spec-validation.js';
import { fitTaskInfo, toTaskInfo } from './task-info.js';
import { streamTaskLog } from './log-stream.js';
import { receiveTrailedUpload } from './trailed-upload.js';
import type { MasterServiceDeps } from './service-deps.js';
import { DEFAULT_MAX_INPUT_BYTES } from '../protocol/result-bound.js';
import { formatBytes } from '../common/units.js';
import { resolveTaskData, type HeldDataLookup } from './task-data-mounts.js';
import { parseDigest } from '../protocol/data-rules.js';
import { adminUnary } from './admin-unary.js';
import type { ServiceAdmin } from './service-admin.js';
import type { ExecService } from './exec-service.js';

export interface AdminServiceDeps extends MasterServiceDeps {
  /** The data sets the master holds, and the references of tasks to them (DataStore). */
  data: HeldDataLookup & { addTaskReference(taskId: string, sha256Hex: string, path: string): void };
  /** Largest data set (this master's --max-data): an external one declared larger is refused. */
  maxDataBytes: number;
  maxAttempts: number;
  /** Largest input archive a submission may stream; refused past it, nothing kept. */
  maxInputArchiveBytes: number;
  /** Tunnel mode: tokens are join tokens that also carry the enrollment endpoint and certificate fingerprint. */
  joinToken?: (secret: string) => string;
  /** After a node is removed: drop its WireGuard peer (tunnel mode). */
  onNodeRemoved?: (nodeId: string) => Promise<void>;
  /** The service RPCs (service-admin.ts). */
  serviceAdmin: Pick<ServiceAdmin, 'handlers'>;
  /** Exec sessions into running tasks (exec-service.ts). */
  exec: Pick<ExecService, 'handleClient'>;
}

/** GetTask and WatchTask answers stay under this (the message cap is 4 MiB): oldest events go first. */
const MAX_TASK_INFO_BYTES = 3 * 1024 * 1024;

/**
 * Result downloads and log streams open at once. Each holds at most ~1 MiB of the master's memory
 * however slowly its reader reads (see writeMessage), so together they stay under ~64 MiB.
 */
export const MAX_CONCURRENT_DOWNLOADS = 64;

/** Task states a listing may filter on. */
const LISTABLE_STATES = Object.values(TaskState).filter((s): s is TaskState => typeof s === 'number' && s > 0);

export class AdminService {
  private downloads = 0;

  constructor(private readonly d: AdminServiceDeps) {}

  /** Runs a download (result or log stream) in one of the MAX_CONCURRENT_DOWNLOADS slots. */
  private async download(fn: () => Promise<void>): Promise<void> {
    if (this.downloads >= MAX_CONCURRENT_DOWNLOADS) {
      throw new ResourceExhaustedError(`${this.downloads} result downloads and log streams are open, the most this master serves at once; retry when one ends`);
    }
    this.downloads++;
    try {
      await fn();
    } finally {
      this.downloads--;
    }
  }

  private unary<Req, Res>(fn: (req: Req) => Promise<Res> | Res) {
    return adminUnary(this.d.auth, fn);
  }

  private streaming<Req, Res>(fn: (call: ServerWritableStream<Req, Res>, signal: AbortSignal) => Promise<void>) {
    return (call: ServerWritableStream<Req, Res>) => {
      const { signal, dispose } = callSignal(call);
      Promise.resolve()
        .then(() => {
          this.d.auth.checkAdmin(call.metadata);
          return fn(call, signal);
        })
        .then(
          () => { if (!signal.aborted) call.end(); },
          (err: unknown) => { if (!signal.aborted) call.emit('error', toServiceError(err)); },
        )
        .finally(dispose);
    };
  }

  handlers(): AdminServiceServer {
    return {
      submitTask: (call, cb) => void this.submitTask(call, cb),
      listTasks: this.unary((r: ListTasksRequest) => this.listTasks(r)),
      getTask: this.unary((r: GetTaskRequest) => this.info(this.task(r.taskId))),
      watchTask: this.streaming((call: ServerWritableStream<GetTaskRequest, TaskInfo>, signal) => this.watchTask(call, signal)),
      cancelTask: this.unary((r: CancelTaskRequest) => this.info(this.d.tasks.cancel(this.task(r.taskId).id, r.reason))),
      streamLogs: this.streaming((call: ServerWritableStream<StreamLogsRequest, LogChunk>, signal) => this.download(() => this.streamLogs(call, signal))),
      fetchResult: this.streaming((call: ServerWritableStream<FetchResultRequest, DataChunk>, signal) => this.download(() => this.fetchResult(call, signal))),
      listNodes: this.unary((r: ListNodesRequest) => this.listNodes(r)),
      createEnrollmentToken: this.unary((r: CreateTokenRequest) => this.createToken(r)),
      listEnrollmentTokens: this.unary((r: ListTokensRequest) => this.listTokens(r)),
      revokeEnrollmentToken: this.unary((r: RevokeTokenRequest) => this.revokeToken(r)),
      removeNode: this.unary((r: RemoveNodeRequest) => this.removeNode(r)),
      ...this.d.serviceAdmin.handlers(),
      exec: (call) => this.d.exec.handleClient(call),
    };
  }

  private task(taskId: string): TaskRow {
    const t = this.d.store.getTask(taskId);
    if (!t) throw new NotFoundError(`no task ${echoValue(taskId)}`);
    return t;
  }

  private info(t: TaskRow): TaskInfo {
    return fitTaskInfo(toTaskInfo(this.d.tasks.withQueueReason(t), this.d.store.listEvents(t.id), this.d.tasks.dataProgressOf(t)), MAX_TASK_INFO_BYTES);
  }

  private async submitTask(call: ServerReadableStream<SubmitTaskRequest, SubmitTaskResponse>, cb: sendUnaryData<SubmitTaskResponse>): Promise<void> {
    const { blobs, clock } = this.d;
    let taskId: string | undefined;
    let inputStored = false;
    try {
      this.d.auth.checkAdmin(call.metadata);
      const msgs = messagesOf<SubmitTaskRequest>(call);
      const first = await msgs.next();
      const part = first.done ? undefined : first.value.part;
      if (part?.$case !== 'header') throw new InvalidArgumentError('a submission must start with a header');
      const checked = validateTaskSpec(part.value.spec);
      // A replica is the service manager's: a submitted one would escape the attempt limit and be
      // counted among a service's replicas.
      if (checked.service) throw new InvalidTaskError('spec.service is set by the master on service replicas; run a service with CreateService (`hivemind service create`)');
      // Checked before the input is received (a quick refusal) and again when the task is stored.
      resolveTaskData(checked.data, this.d.data, this.d.maxDataBytes);
      const maxAttempts = validateMaxAttempts(part.value.maxAttempts, this.d.maxAttempts);
      const id = randomBytes(8).toString('hex');
      taskId = id;
      let input = { size: 0, sha256: '' };
      if (part.value.hasInput) {
        const maxInput = this.d.maxInputArchiveBytes;
        const upload = receiveTrailedUpload(msgs, {
          limit: maxInput,
          overLimit: () => new InvalidArgumentError(`the input archive passes ${formatBytes(maxInput)}, the most a node takes (it unpacks at most ${formatBytes(DEFAULT_MAX_INPUT_BYTES)} of input); nothing was stored`),
          chunkName: 'input chunk',
          callName: 'a submission',
        });
        input = await blobs.writeInput(id, upload.chunks, () => {
          const trailer = upload.trailer();
          if (!trailer) throw new InvalidArgumentError('the input ended without a trailer (size and sha256)');
          return trailer;
        });
        inputStored = true;
        if (input.size === 0) throw new InvalidArgumentError('has_input is set but the input archive is empty');
      } else {
        for await (const m of msgs) {
          if (m.part?.$case === 'chunk') throw new InvalidArgumentError('input chunks sent but the header says has_input = false');
        }
      }
      // Synchronous from here to the references: a `data rm` cannot fall between check and record.
      const spec = { ...checked, data: resolveTaskData(checked.data, this.d.data, this.d.maxDataBytes) };
      const now = clock.now();
      const row: TaskRow = {
        id, spec, state: TaskState.TASK_STATE_QUEUED, attempt: 1, maxAttempts, nodeId: null,
        queueReason: 'waiting to be scheduled', outcome: undefined, inputSize: input.size, inputSha256: input.sha256,
        result: undefined, cancelRequested: false, cancelReason: '', createdAt: now, updatedAt: now, startedAt: null,
        finishedAt: null, lastUpdateSeq: 0, excludedNodes: [],
      };
      this.d.tasks.submit(row, 'submitted');
      for (const m of spec.data) if (!m.url) this.d.data.addTaskReference(id, parseDigest(m.sha256, 'sha256'), m.path);
      this.d.log.info({ taskId: id, image: spec.image, inputSize: input.size }, 'task submitted');
      cb(null, { taskId: id });
    } catch (err) {
      if (taskId && inputStored) await rm(blobs.inputPath(taskId), { force: true }).catch(() => undefined);
      cb(toServiceError(err));
    }
  }

  private listTasks(r: ListTasksRequest): ListTasksResponse {
    const states = validateStatesFilter(r.states, LISTABLE_STATES, (s) => TaskState[s]);
    const before = decodePageToken(r.pageToken);
    // Events are left out of listings to keep them small; GetTask has them.
    const page = takePage(this.d.store.iterateTasks(states, before), {
      limit: pageSize(r.limit),
      toItem: (t: TaskRow) => toTaskInfo(this.d.tasks.withQueueReason(t), [], this.d.tasks.dataProgressOf(t)),
      sizeOf: (i) => TaskInfo.encode(i).finish().length,
      summary: (i) => ({ ...summarise(i).value, truncated: true }),
      cursorOf: (t) => ({ at: t.createdAt, id: t.id }),
    });
    return { tasks: page.items, nextPageToken: page.next };
  }

  /** Sends the task now and after every change until it is terminal. */
  private async watchTask(call: ServerWritableStream<GetTaskRequest, TaskInfo>, signal: AbortSignal): Promise<void> {
    const id = this.task(call.request.taskId).id;
    await new Promise<void>((resolve, reject) => {
      const stop = (err?: unknown) => {
        this.d.events.off('task', onTask);
        signal.removeEventListener('abort', onAbort);
        if (err) reject(err);
        else resolve();
      };
      // A reader slower than the changes gets the latest state, not a queue of every one: at most
      // one TaskInfo waits here while another is on its way out.
      let latest: TaskRow | undefined;
      let writing = false;
      const push = (t: TaskRow): void => {
        latest = t;
        if (writing) return;
        writing = true;
        void (async () => {
          try {
            while (latest) {
              const next = latest;
              latest = undefined;
              await writeMessage(call, this.info(next));
              if (isTerminal(next.state)) return stop();
            }
          } catch (err) {
            stop(err);
          } finally {
            writing = false;
          }
        })();
      };
      const onTask = (t: TaskRow) => {
        if (t.id === id) push(t);
      };
      const onAbort = () => stop();
      // Subscribed before the first read, so no change falls between the two.
      this.d.events.on('task', onTask);
      signal.addEventListener('abort', onAbort, { once: true });
      push(this.task(id));
    });
  }

  /** The stored log, then (with follow) live chunks until the task is terminal (log-stream.ts). */
  private async streamLogs(call: ServerWritableStream<StreamLogsRequest, LogChunk>, signal: AbortSignal): Promise<void> {
    const task = this.task(call.request.taskId);
    const deps = { blobs: this.d.blobs, events: this.d.events, isFinished: (id: string) => isTerminal(this.task(id).state) };
    await streamTaskLog(deps, task, call.request.follow, (c) => writeMessage(call, c), signal);
  }

  private async fetchResult(call: ServerWritableStream<FetchResultRequest, DataChunk>, signal: AbortSignal): Promise<void> {
    const t = this.task(call.request.taskId);
    if (!t.result) throw new PreconditionError(`task ${t.id} has no stored result (state ${TaskState[t.state].replace('TASK_STATE_', '')})`);
    const offset = call.request.offset;
    if (offset > t.result.size) throw new InvalidArgumentError(`offset ${offset} is past the end of the ${t.result.size}-byte result of task ${t.id}`);
    if (offset === t.result.size) return;
    await writeChunks(call, this.d.blobs.readResult(t.id, offset, CHUNK_SIZE), offset, signal);
  }

  private listNodes(r: ListNodesRequest): ListNodesResponse {
    const { store, registry } = this.d;
    const after = decodePageToken(r.pageToken);
    const limit = pageSize(r.limit);
    // The page's rows first (one more tells whether a next page exists), so their tasks are one query.
    const rows = firstOf(store.iterateNodes(after), limit + 1);
    const live = store.liveTaskIdsOfNodes(rows.slice(0, limit).map((n) => n.id));
    const page = takePage(rows, {
      limit,
      toItem: (n: NodeRow): NodeInfo => ({
        nodeId: n.id,
        name: n.name,
        facts: n.facts,
        online: registry.isOnline(n.id),
        registeredAtMs: n.registeredAt,
        lastSeenMs: Math.max(n.lastSeen, registry.lastSeen(n.id) ?? 0),
        lastReport: n.lastReport,
        taskIds: live.get(n.id) ?? [],
        truncated: false,
      }),
      sizeOf: (i) => NodeInfo.encode(i).finish().length,
      summary: (i) => ({ ...summarise(i).value, truncated: true }),
      cursorOf: (n) => ({ at: n.registeredAt, id: n.id }),
    });
    return { nodes: page.items, nextPageToken: page.next };
  }

  private listTokens(r: ListTokensRequest): ListTokensResponse {
    const page = takePage(this.d.store.iterateEnrollmentTokens(decodePageToken(r.pageToken)), {
      limit: pageSize(r.limit),
      toItem: tokenInfo,
      sizeOf: (i) => TokenInfo.encode(i).finish().length,
      summary: (i) => i, // a few fixed-size fields: never large
      cursorOf: (t) => ({ at: t.createdAt, id: t.hash }),
    });
    return { tokens: page.items, nextPageToken: page.next };
  }

  private revokeToken(r: RevokeTokenRequest): TokenInfo {
    const id = r.tokenId.trim().toLowerCase();
    if (!/^[0-9a-f]{12}$/.test(id)) throw new InvalidArgumentError(`token id "${echoValue(r.tokenId)}" is not 12 hex digits (see \`hivemind token list\`)`);
    if (this.d.store.revokeEnrollmentToken(id) === 0) throw new NotFoundError(`no enrollment token ${id}`);
    this.d.log.info({ tokenId: id }, 'enrollment token revoked');
    return tokenInfo(this.d.store.enrollmentTokensByPrefix(id)[0]!);
  }

  private async removeNode(r: RemoveNodeRequest): Promise<RemoveNodeResponse> {
    const node = this.d.store.getNode(r.nodeId);
    if (!node || !this.d.store.hasNode(node.id)) throw new NotFoundError(`no node ${echoValue(r.nodeId)}`);
    const requeued = this.d.tasks.nodeLost(node.id, 'was removed by an administrator');
    this.d.store.removeNode(node.id, this.d.clock.now());
    // Tell the node while it can still hear it: its tunnel peer goes only once the closing status
    // has left (the stream closed), plus a moment for the packet to pass the tunnel; removing the
    // peer is one quick `wg set`, which otherwise won the race and the node never learnt it was
    // removed (it retried for ever).
    await this.d.registry.forget(node.id, new NodeRemovedError(`node ${node.id} was removed from the master by its operator; its tasks were requeued`));
    await new Promise((r) => setTimeout(r, 250));
    await this.d.onNodeRemoved?.(node.id);
    this.d.log.info({ nodeId: node.id, requeued }, 'node removed');
    return { nodeId: node.id, tasksRequeued: requeued };
  }

  private createToken(r: CreateTokenRequest): CreateTokenResponse {
    const t = this.d.auth.createEnrollmentToken({ ttlMs: r.ttlMs, uses: r.uses });
    this.d.log.info({ expiresAt: new Date(t.expiresAt).toISOString(), uses: t.uses }, 'enrollment token created');
    return { token: this.d.joinToken ? this.d.joinToken(t.token) : t.token, expiresAtMs: t.expiresAt, uses: t.uses };
  }
}

function tokenInfo(t: { hash: string; createdAt: number; expiresAt: number; usesLeft: number; revoked: boolean }): TokenInfo {
  return { tokenId: t.hash.slice(0, 12), createdAtMs: t.createdAt, expiresAtMs: t.expiresAt, usesLeft: t.usesLeft, revoked: t.revoked };
}
