// The gRPC handlers of NodeService (what workers call): registration, reports, the command
// stream, task updates, input download, resumable result upload and log push.
import type {
  sendUnaryData, ServerReadableStream, ServerUnaryCall, ServerWritableStream,
} from '@grpc/grpc-js';
import type { Subnet } from '../tunnel/subnet.js';
import type { MeshPeer } from '../protocol/gen/hivemind/v1/node.js';
import { MeshAnnouncer } from './mesh-announcer.js';
import { PermissionDeniedError, peerIp } from './master-errors.js';
import { AuthError, ResultTooLargeError, errorMessage } from '../common/errors.js';
import { formatBytes } from '../common/units.js';
import { readBearer } from '../protocol/auth-metadata.js';
import { toServiceError } from '../protocol/grpc-errors.js';
import { answerUnary } from './unary-answer.js';
import { LogStream, NodeFacts, TaskState, type DataChunk, type LogChunk, type ResourceReport } from '../protocol/gen/hivemind/v1/common.js';
import type {
  DownloadDataRequest, DownloadInputRequest, LogOffsetRequest, LogOffsetResponse, NodeCommand, NodeServiceServer, PushLogsAck, RegisterRequest, RegisterResponse, ReportAck,
  SubscribeRequest, TaskUpdate, TaskUpdateAck, UploadHeader, UploadOffsetRequest, UploadOffsetResponse, UploadResultRequest,
  UploadResultResponse,
} from '../protocol/gen/hivemind/v1/node.js';
import { MasterAuth } from './auth.js';
import { BULK_RECLAIM_EVERY_BYTES, BufferReclaimer } from '../common/buffer-reclaimer.js';
import { callSignal, messagesOf, writeChunks } from './grpc-streams.js';
import { isTerminal, type NodeIdentity, type TaskRow } from './master-store.js';
import { DEFAULT_MAX_OUTPUT_BYTES, resultArchiveBound } from '../protocol/result-bound.js';
import { InvalidArgumentError, PreconditionError } from './master-errors.js';
import { boundTaskUpdate, screenProgress, validateCapacity, validateGatewayPipe, validateRegistration, validateReport, validateRunningList } from './node-input-validation.js';
import { isLoopbackHost } from '../common/address.js';
import type { NodePipeAddress } from './gateway/gateway-directory.js';
import { assertWithinSize } from './size-capped-services.js';
import { receiveTrailedUpload } from './trailed-upload.js';
import type { MasterServiceDeps } from './service-deps.js';
import { CallRate } from './call-rate.js';
import type { DataFiles } from './data-files.js';
import { dataSource, inputSource, type DownloadSource } from './node-downloads.js';
import { dropRemovedData } from './data-reclaim.js';
import { MAX_REGISTERS_PER_MINUTE, MAX_SUBSCRIBES_PER_MINUTE, MAX_TASK_ID_CHARS, maxReportsPerMinute } from '../protocol/node-limits.js';
import { randomBytes } from 'node:crypto';
import type { ExecService } from './exec-service.js';

/** How long a node removal waits for the node's command stream to carry its closing status. */
const STREAM_CLOSE_WAIT_MS = 2000;

export const MASTER_VERSION = '0.1.0';

export interface NodeServiceDeps extends MasterServiceDeps {
  reportIntervalMs: number;
  /** The data sets' bytes, served to nodes whose assigned tasks use them. */
  dataFiles: DataFiles;
  /** Which of the digests a node holds were removed here (DataStore): the node is told to drop them. */
  removedData: { removedAmong(sha256Hex: readonly string[]): string[] };
  /**
   * Tunnel mode: every call must come from the tunnel address of the node whose credential it
   * carries, so a credential replayed from elsewhere is refused.
   */
  tunnel?: { subnet: Subnet; meshPeers?: () => Promise<MeshPeer[]> };
  /** Exec sessions: a node's ExecSession attaches to one (exec-service.ts). */
  exec: Pick<ExecService, 'handleNode'>;
  /** Told of each valid report received (the master's metrics: the report rate and node states). */
  onReport?: (nodeId: string, report: ResourceReport) => void;
}

/** Uploads are for tasks still running: a result sent after the terminal state is late work. */
function requireUnfinished(task: TaskRow): void {
  if (isTerminal(task.state)) {
    throw new PreconditionError(`task ${task.id} is already ${TaskState[task.state].replace('TASK_STATE_', '')}; a result uploaded after the terminal state is not accepted`);
  }
}

/** Runs a unary handler body at once (unary-answer.ts), mapping thrown errors to gRPC statuses. */
function unary<Req, Res>(fn: (call: ServerUnaryCall<Req, Res>) => Promise<Res> | Res) {
  return (call: ServerUnaryCall<Req, Res>, cb: sendUnaryData<Res>) => answerUnary(cb, () => fn(call));
}

export class NodeService {
  /** Progress reports refused for breaking the rules (docs/progress.md), since start: for the master's metrics. */
  progressRefused = 0;
  /** Mesh mode: who is told which peers on a subscribe or a removal. */
  private readonly mesh: MeshAnnouncer | undefined;
  /** Open command streams, ended on close so the server can shut down. */
  private readonly subscribers = new Set<ServerWritableStream<SubscribeRequest, NodeCommand>>();
  private readonly registers: CallRate;
  private readonly subscribes: CallRate;
  private readonly reports: CallRate;

  constructor(private readonly d: NodeServiceDeps) {
    this.mesh = d.tunnel?.meshPeers ? new MeshAnnouncer(d.tunnel.meshPeers, d.registry) : undefined;
    this.registers = new CallRate(d.clock, 'Register', MAX_REGISTERS_PER_MINUTE, 60_000);
    this.subscribes = new CallRate(d.clock, 'Subscribe', MAX_SUBSCRIBES_PER_MINUTE, 60_000);
    this.reports = new CallRate(d.clock, 'Report message', maxReportsPerMinute(d.reportIntervalMs), 60_000);
  }

  private nodeOf(call: { metadata: ServerUnaryCall<unknown, unknown>['metadata']; getPeer(): string }): NodeIdentity {
    const node = this.d.auth.authenticateNode(call.metadata);
    this.checkTunnelSource(call, node);
    return node;
  }

  private checkTunnelSource(call: { getPeer(): string }, node: NodeIdentity): void {
    if (!this.d.tunnel) return;
    const from = peerIp(call.getPeer());
    if (!node.tunnelIp || from !== node.tunnelIp) {
      throw new PermissionDeniedError(`the credential of node ${node.id} was used from ${from}, not from its tunnel address ${node.tunnelIp ?? '(none)'}; refused`);
    }
  }

  /**
   * Where the master reaches a node's gateway pipe. The host is never the node's to say: its
   * tunnel address, or loopback for a node that connected from loopback without a tunnel; any
   * other node gets no replicas (the master could not reach it privately).
   */
  private pipeHost(call: { getPeer(): string }, node: NodeIdentity, pipe: { port: number; key: string }): NodePipeAddress | undefined {
    let host: string | undefined;
    if (this.d.tunnel) host = node.tunnelIp ?? undefined;
    else if (isLoopbackHost(peerIp(call.getPeer()))) host = '127.0.0.1';
    if (!host) {
      this.d.log.warn({ nodeId: node.id }, 'the node offers a gateway pipe but the master cannot reach it privately (no tunnel, not on loopback); it gets no service replicas');
      return undefined;
    }
    return { host, port: pipe.port, key: pipe.key };
  }

  /** Mesh mode, node `nodeId` removed (and gone from the hub): the others drop it. */
  async announceMeshRemoval(nodeId: string): Promise<void> {
    await this.mesh?.removed(nodeId);
  }

  handlers(): NodeServiceServer {
    return {
      register: unary((call) => this.register(call)),
      report: (call, cb) => void this.report(call, cb),
      sendReport: unary((call) => this.sendReport(call)),
      subscribe: (call) => this.subscribe(call),
      updateTask: unary((call) => this.updateTask(call)),
      downloadInput: (call) => void this.downloadInput(call),
      downloadData: (call) => void this.downloadData(call),
      getUploadOffset: unary((call) => this.getUploadOffset(call)),
      uploadResult: (call, cb) => void this.uploadResult(call, cb),
      pushLogs: (call, cb) => void this.pushLogs(call, cb),
      getLogOffset: unary((call) => this.getLogOffset(call)),
      execSession: (call) => {
        try {
          this.d.exec.handleNode(call, this.nodeOf(call));
        } catch (err) {
          call.emit('error', toServiceError(err));
        }
      },
    };
  }

  private register(call: ServerUnaryCall<RegisterRequest, RegisterResponse>): RegisterResponse {
    const { store, auth, registry, clock } = this.d;
    const bearer = readBearer(call.metadata);
    if (!bearer) throw new AuthError('missing enrollment token or node credential: send "authorization: Bearer <token>"');
    assertWithinSize(call.request);
    const facts = call.request.facts ?? NodeFacts.create();
    validateRegistration(call.request.name, facts);
    const now = clock.now();
    let nodeId: string;
    let credential: string;
    let name = call.request.name.trim();
    if (this.d.tunnel && !MasterAuth.isNodeCredential(bearer)) {
      throw new AuthError('this master enrolls nodes through its enrollment endpoint (join token from `hivemind token create`), not with Register');
    }
    if (MasterAuth.isNodeCredential(bearer)) {
      const node = auth.nodeForCredential(bearer);
      if (!node) throw new AuthError('unknown node credential; register again with an enrollment token');
      this.checkTunnelSource(call, node);
      this.registers.take(node.id, `node ${node.id}`);
      nodeId = node.id;
      credential = bearer;
      name ||= node.name;
      store.updateNodeFacts(nodeId, name, facts, now);
      this.d.log.info({ nodeId, name }, 'node refreshed its registration');
    } else {
      const fresh = auth.newNodeCredential();
      nodeId = randomBytes(8).toString('hex');
      credential = fresh.credential;
      name ||= facts.hostname || nodeId;
      auth.enroll(bearer, () => store.insertNode({ id: nodeId, name, facts, credentialHash: fresh.hash, at: now }));
      this.d.log.info({ nodeId, name }, 'node registered');
    }
    registry.seen(nodeId, name);
    return { nodeId, nodeCredential: credential, reportIntervalMs: this.d.reportIntervalMs, masterVersion: MASTER_VERSION };
  }

  private async report(call: ServerReadableStream<ResourceReport, ReportAck>, cb: sendUnaryData<ReportAck>): Promise<void> {
    let lastSeq = 0;
    try {
      const node = this.nodeOf(call);
      for await (const r of messagesOf<ResourceReport>(call)) {
        // A bad report ends the stream with the reason (the worker logs it and reconnects, under
        // the Register/Subscribe rates); nothing of it is stored, the last good report stays.
        this.acceptReport(node, r);
        lastSeq = r.seq;
      }
      // drop_data goes as a command (below): this ack comes only when the stream ends.
      cb(null, { lastSeq, dropData: [] });
    } catch (err) {
      cb(toServiceError(err));
    }
  }

  /** One report as a call of its own (the Report stream's checks and rate; no stream held open per node). */
  private sendReport(call: ServerUnaryCall<ResourceReport, ReportAck>): ReportAck {
    const node = this.nodeOf(call);
    this.acceptReport(node, call.request);
    return { lastSeq: call.request.seq, dropData: [] };
  }

  private acceptReport(node: NodeIdentity, r: ResourceReport): void {
    this.reports.take(node.id, `node ${node.id}`);
    assertWithinSize(r);
    validateReport(r, node.facts.maxTasks);
    const cameBack = this.d.registry.onReport(node.id, r);
    this.d.store.recordReport(node.id, r, this.d.clock.now());
    this.d.onReport?.(node.id, r);
    if (cameBack) this.d.log.info({ nodeId: node.id }, 'node online');
    dropRemovedData(node.id, r, this.d);
    this.d.tasks.scheduleSoon();
  }

  private subscribe(call: ServerWritableStream<SubscribeRequest, NodeCommand>): void {
    let node: NodeIdentity | undefined;
    const req = call.request;
    try {
      node = this.nodeOf(call);
      // Everything is checked before any work: a refused Subscribe changes nothing.
      assertWithinSize(req);
      this.subscribes.take(node.id, `node ${node.id}`);
      validateRunningList(req.running, node.facts.maxTasks);
      validateCapacity('free', req.free);
      if (req.gateway) validateGatewayPipe(req.gateway);
    } catch (err) {
      if (node) this.d.log.warn({ nodeId: node.id, err: errorMessage(err) }, 'refused the node\'s Subscribe');
      call.emit('error', toServiceError(err));
      return;
    }
    const { registry, tasks } = this.d;
    registry.seen(node.id, node.name);
    registry.updateCapacity(node.id, req.free, req.accepting, req.running.map((r) => r.taskId));
    registry.setGateway(node.id, req.gateway && this.pipeHost(call, node, req.gateway));
    registry.setExec(node.id, req.exec);
    registry.setEgress(node.id, node.facts.allowsEgress);
    registry.setIsolations(node.id, node.facts.isolations ?? []);
    registry.setUnenforcedLimits(node.id, node.facts.unenforcedLimits ?? []);
    const detach = registry.attach(node.id, {
      send: (cmd) => call.write(cmd),
      close: (err) => {
        // Resolves when the stream has closed (its status handed to the connection), bounded.
        const closed = new Promise<void>((resolve) => {
          const t = setTimeout(resolve, STREAM_CLOSE_WAIT_MS);
          call.once('close', () => {
            clearTimeout(t);
            resolve();
          });
        });
        call.emit('error', toServiceError(err));
        return closed;
      },
    });
    this.subscribers.add(call);
    const gone = () => {
      detach();
      this.subscribers.delete(call);
    };
    call.once('cancelled', gone);
    call.once('close', gone);
    call.once('error', gone);
    this.d.log.info({ nodeId: node.id, running: req.running.length, accepting: req.accepting, exec: req.exec }, 'node subscribed');
    try {
      tasks.reconcile(node, req.running);
    } catch (err) {
      this.d.log.error({ nodeId: node.id, err: errorMessage(err) }, 'reconciling the node\'s tasks failed');
    }
    tasks.scheduleSoon();
    // Endpoints are known once a node's tunnel has shaken hands, which precedes this call.
    this.mesh?.subscribed(node.id, req.meshDeltas === true).catch((err: unknown) => this.d.log.warn({ err: errorMessage(err) }, 'sending mesh peers failed'));
  }

  private updateTask(call: ServerUnaryCall<TaskUpdate, TaskUpdateAck>): TaskUpdateAck {
    const node = this.nodeOf(call);
    assertWithinSize(call.request);
    const { update: u, refused } = screenProgress(boundTaskUpdate(call.request));
    if (refused !== undefined) {
      this.progressRefused++;
      this.d.log.warn({ nodeId: node.id, taskId: u.taskId, err: refused }, 'refused the progress report in a task update (the rest applied)');
    }
    const ack = this.d.tasks.applyUpdate(node, u);
    if (u.free) {
      // The numbers are as of sending: an applied update of a task is already reflected in them.
      this.d.registry.updateCapacity(node.id, u.free, u.accepting, ack.applied ? [u.taskId] : []);
      this.d.tasks.scheduleSoon();
    }
    return ack;
  }

  private downloadInput(call: ServerWritableStream<DownloadInputRequest, DataChunk>): Promise<void> {
    return this.serveChunks(call, (node) => inputSource(this.d.tasks, this.d.blobs, node.id, call.request));
  }

  private downloadData(call: ServerWritableStream<DownloadDataRequest, DataChunk>): Promise<void> {
    return this.serveChunks(call, (node) => dataSource(this.d.tasks, this.d.dataFiles, node.id, call.request, requireUnfinished));
  }

  /** Streams what `open` allows the asking node, in chunks from its offset; a refusal is the call's status. */
  private async serveChunks<Req>(call: ServerWritableStream<Req, DataChunk>, open: (node: NodeIdentity) => DownloadSource): Promise<void> {
    const { signal, dispose } = callSignal(call);
    try {
      const src = open(this.nodeOf(call));
      if (src.offset < src.size) await writeChunks(call, src.read(), src.offset, signal);
      if (signal.aborted) return;
      call.end();
    } catch (err) {
      if (!signal.aborted) call.emit('error', toServiceError(err));
    } finally {
      dispose();
    }
  }

  private async getUploadOffset(call: ServerUnaryCall<UploadOffsetRequest, UploadOffsetResponse>): Promise<UploadOffsetResponse> {
    const node = this.nodeOf(call);
    const task = this.d.tasks.requireCurrent(call.request.taskId, call.request.attempt, node.id);
    if (task.result) return { offset: task.result.size, complete: true, sha256: task.result.sha256 };
    requireUnfinished(task);
    return { offset: await this.d.blobs.resultOffset(task.id), complete: false, sha256: '' };
  }

  /**
   * Receives a result archive into the task's partial file. Every size rule is checked before a
   * byte is written: the declared total against the task's bound at the header, the received
   * bytes against the declared total at each chunk; a breach discards the partial.
   */
  private async uploadResult(call: ServerReadableStream<UploadResultRequest, UploadResultResponse>, cb: sendUnaryData<UploadResultResponse>): Promise<void> {
    let release: (() => void) | undefined;
    try {
      const node = this.nodeOf(call);
      const msgs = messagesOf<UploadResultRequest>(call);
      const first = await msgs.next();
      const header = first.done ? undefined : first.value.part;
      if (header?.$case !== 'header') throw new InvalidArgumentError('an upload must start with a header');
      const h = header.value;
      const task = this.d.tasks.requireCurrent(h.taskId, h.attempt, node.id);
      if (task.result) {
        // Already stored and verified (a retry after a lost ack): drain what the node sends (a
        // resend of the same archive, so no more than its size) and answer the same.
        let drained = 0;
        for await (const m of msgs) {
          if (m.part?.$case === 'chunk' && (drained += m.part.value.length) > task.result.size) {
            throw new InvalidArgumentError(`task ${task.id} already has its ${task.result.size}-byte result; this upload sends more`);
          }
        }
        cb(null, { size: task.result.size, sha256: task.result.sha256 });
        return;
      }
      requireUnfinished(task);
      release = this.d.tasks.beginUpload(task.id, task.attempt, () => call.destroy(new PreconditionError(`attempt ${h.attempt} of task ${h.taskId} was given up or ended; upload stopped`)));
      try {
        cb(null, await this.receiveResult(msgs, node, task, h));
      } catch (err) {
        // Over a size rule: keep nothing of it, so the bytes neither count nor take disk.
        if (err instanceof ResultTooLargeError) await this.d.blobs.discardResult(task.id);
        throw err;
      }
    } catch (err) {
      cb(toServiceError(err));
    } finally {
      release?.();
    }
  }

  private async receiveResult(msgs: AsyncIterable<UploadResultRequest>, node: NodeIdentity, task: TaskRow, h: UploadHeader): Promise<UploadResultResponse> {
    const bound = resultArchiveBound(task.spec.maxOutputBytes);
    const limitName = task.spec.maxOutputBytes > 0 ? `the task's max_output_bytes of ${formatBytes(task.spec.maxOutputBytes)}` : `the default output cap of ${formatBytes(DEFAULT_MAX_OUTPUT_BYTES)}`;
    if (h.totalSize > bound) {
      throw new ResultTooLargeError(`result of task ${task.id}: total_size ${h.totalSize} bytes is over the ${bound}-byte limit for a compressed result (${limitName}, plus 1/128 and 1 MiB for tar headers and gzip)`);
    }
    if (h.offset > h.totalSize) throw new InvalidArgumentError(`result of task ${task.id}: offset ${h.offset} is past the declared total_size ${h.totalSize}`);
    const session = await this.d.blobs.openResultUpload(task.id, h.offset);
    if (h.offset > 0) this.d.log.info({ taskId: task.id, attempt: h.attempt, offset: h.offset, totalSize: h.totalSize }, 'result upload resumed');
    const upload = receiveTrailedUpload(msgs, {
      from: h.offset,
      limit: h.totalSize,
      overLimit: (received) => new ResultTooLargeError(`result of task ${task.id}: received ${received} bytes, more than the ${h.totalSize} bytes the header declared (total_size); upload refused and discarded`),
      chunkName: 'chunk',
      callName: 'an upload',
    });
    // Each received chunk is a fresh buffer; scavenging every few MiB frees them in small
    // steps instead of V8's mark-compacts under external-memory pressure.
    const reclaimer = new BufferReclaimer(BULK_RECLAIM_EVERY_BYTES);
    try {
      for await (const chunk of upload.chunks) {
        await session.write(chunk);
        reclaimer.add(chunk.length);
      }
    } finally {
      await session.close();
    }
    const trailer = upload.trailer();
    if (!trailer) {
      // The client ended early: keep the partial so the next session resumes from it.
      throw new InvalidArgumentError(`upload of task ${h.taskId} ended without a trailer; resume from offset ${await this.d.blobs.resultOffset(task.id)}`);
    }
    if (trailer.size !== h.totalSize) {
      await this.d.blobs.discardResult(task.id);
      throw new InvalidArgumentError(`result of task ${task.id}: the trailer says ${trailer.size} bytes but the header declared ${h.totalSize} (total_size); partial upload discarded, upload again from 0`);
    }
    this.d.tasks.requireCurrent(h.taskId, h.attempt, node.id);
    await this.d.blobs.completeResult(task.id, trailer);
    const stored = this.d.tasks.resultStored(task.id, h.attempt, node.id, { size: trailer.size, sha256: trailer.sha256.toLowerCase() });
    if (stored !== 'stored') {
      await this.d.blobs.discardResult(task.id);
      throw new PreconditionError(stored === 'finished'
        ? `task ${h.taskId} ended during the upload; a result that arrives after the terminal state is not kept`
        : `attempt ${h.attempt} of task ${h.taskId} was superseded during the upload`);
    }
    this.d.log.info({ taskId: task.id, attempt: h.attempt, size: trailer.size }, 'result stored');
    return { size: trailer.size, sha256: trailer.sha256.toLowerCase() };
  }

  private async pushLogs(call: ServerReadableStream<LogChunk, PushLogsAck>, cb: sendUnaryData<PushLogsAck>): Promise<void> {
    let chunks = 0;
    try {
      const node = this.nodeOf(call);
      for await (const c of messagesOf<LogChunk>(call)) {
        chunks++;
        // One indexed lookup that decodes no spec: a flood of tiny chunks costs the master little.
        const t = c.taskId.length <= MAX_TASK_ID_CHARS ? this.d.store.taskPlacements([c.taskId])[0] : undefined;
        const ok = t !== undefined && t.attempt === c.attempt && t.nodeId === node.id;
        // Output of a superseded attempt is dropped: it would interleave with the new attempt's.
        if (!ok || c.data.length === 0) continue;
        if (c.offset === undefined) {
          await this.d.blobs.appendLog(c.taskId, c.data, () => this.d.events.emit('log', c));
          continue;
        }
        const stream = logStreamName(c, node.id);
        const { gap } = await this.d.blobs.appendLogAt(c.taskId, { attempt: c.attempt, stream, offset: c.offset }, c.data, (data) => this.d.events.emit('log', { ...c, data }));
        if (gap > 0) this.d.log.warn({ taskId: c.taskId, attempt: c.attempt, nodeId: node.id, stream, gap }, 'gap in a task log: bytes the node did not resend');
      }
      cb(null, { chunks });
    } catch (err) {
      cb(toServiceError(err));
    }
  }

  private async getLogOffset(call: ServerUnaryCall<LogOffsetRequest, LogOffsetResponse>): Promise<LogOffsetResponse> {
    const node = this.nodeOf(call);
    const task = this.d.tasks.requireCurrent(call.request.taskId, call.request.attempt, node.id);
    return this.d.blobs.logHeld(task.id, call.request.attempt);
  }

  /** Ends every open command stream (master shutdown). */
  close(): void {
    for (const call of this.subscribers) {
      try {
        call.end();
      } catch {
        // already gone
      }
    }
    this.subscribers.clear();
  }
}

/**
 * The stream of a chunk that carries an offset, the offset checked: a node's offsets are
 * untrusted, and one past 2^53 would no longer count bytes exactly.
 */
function logStreamName(c: LogChunk, nodeId: string): 'stdout' | 'stderr' {
  const offset = c.offset ?? 0;
  if (!Number.isSafeInteger(offset) || offset > Number.MAX_SAFE_INTEGER - c.data.length) {
    throw new InvalidArgumentError(`log chunk of task ${c.taskId} from node ${nodeId}: offset ${offset} is out of range (at most 2^53 bytes per stream)`);
  }
  if (c.stream === LogStream.LOG_STREAM_STDOUT) return 'stdout';
  if (c.stream === LogStream.LOG_STREAM_STDERR) return 'stderr';
  throw new InvalidArgumentError(`log chunk of task ${c.taskId} from node ${nodeId}: an offset is only meaningful on stdout or stderr, not on stream ${c.stream}`);
}
