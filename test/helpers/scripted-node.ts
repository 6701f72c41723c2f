// A node driven step by step over the real NodeService protocol, for tests that need a master to
// hold what a hostile node can send: any name, any outcome message, any result archive.
import { createHash } from 'node:crypto';
import { credentials, type ClientDuplexStream, type ClientReadableStream, type Metadata } from '@grpc/grpc-js';
import { bearerMetadata } from '../../src/protocol/auth-metadata.js';
import type { Capacity, DataCacheStatus, DataChunk, ExecInput, DataProgress, ReplicaStatus, ResourceReport, TaskOutcome, TaskState } from '../../src/protocol/gen/hivemind/v1/common.js';
import { NodeServiceClient, type ExecNodeMessage, type NodeCommand, type RegisterResponse, type TaskAssignment, type TaskUpdateAck, type UploadResultResponse } from '../../src/protocol/gen/hivemind/v1/node.js';
import { CHUNK_SIZE } from '../../src/protocol/transport.js';

type Command = NonNullable<NodeCommand['command']>;
type CommandValue<K extends Command['$case']> = Extract<Command, { $case: K }> extends { value: infer V } ? V : never;

const FREE: Capacity = { cpus: 4, memoryBytes: 8 * 1024 ** 3, gpuIndexes: [], taskSlots: 2 };

export class ScriptedNode {
  readonly client: NodeServiceClient;
  nodeId = '';
  private md: Metadata | undefined;
  private sub: ClientReadableStream<NodeCommand> | undefined;
  private readonly commands: NodeCommand[] = [];
  private seq = 0;
  /** What its reports and updates say of accepting tasks (false: paused or draining). */
  accepting = true;

  constructor(address: string) {
    this.client = new NodeServiceClient(address, credentials.createInsecure());
  }

  register(token: string, name: string): Promise<RegisterResponse> {
    return new Promise((resolve, reject) =>
      this.client.register(
        { name, facts: { hostname: 'scripted', os: 'linux', osRelease: '', arch: 'x64', cpuCores: 4, cpuModel: 'fake', memoryBytes: 8 * 1024 ** 3, diskBytes: 0, gpus: [], dockerVersion: '20.10', labels: new Map(), workerVersion: 'test', allowsEgress: false, maxTasks: 2, isolations: [], engine: '', unenforcedLimits: [] } },
        bearerMetadata(token),
        (err, res) => {
          if (err) return reject(err);
          this.nodeId = res.nodeId;
          this.md = bearerMetadata(res.nodeCredential);
          resolve(res);
        },
      ),
    );
  }

  /**
   * One report on a stream of its own, ended at once; resolves with how the master answered the
   * stream (its ack, or the error a bad report ends it with).
   */
  report(opts: { free?: Capacity; cache?: DataCacheStatus } = {}): Promise<Error | undefined> {
    const r: ResourceReport = {
      seq: ++this.seq, atMs: Date.now(), cpuPercent: 1, memoryUsedBytes: 0, memoryTotalBytes: 0, diskUsedBytes: 0, diskTotalBytes: 0,
      netRxBytesPerSec: 0, netTxBytesPerSec: 0, gpus: [], dockerOk: true, dockerMessage: '', tasks: [], free: opts.free ?? FREE, lifecycleState: this.accepting ? 'connected' : 'draining', accepting: this.accepting,
      ...(opts.cache ? { cache: opts.cache } : {}),
    };
    return new Promise((resolve) => {
      const call = this.client.report(this.md!, (err) => resolve(err ?? undefined));
      call.write(r);
      call.end();
    });
  }

  /** Reports capacity (and a data cache, if given) and subscribes, so the master assigns tasks to this node. */
  online(opts: { free?: Capacity; cache?: DataCacheStatus; gateway?: { port: number; key: string }; exec?: boolean } = {}): void {
    void this.report(opts);
    const free = opts.free ?? FREE;
    this.sub = this.client.subscribe({ running: [], free, accepting: true, exec: opts.exec ?? false, ...(opts.gateway ? { gateway: opts.gateway } : {}) }, this.md!);
    this.sub.on('data', (c: NodeCommand) => this.commands.push(c));
    this.sub.on('error', () => undefined);
  }

  /** The next command of a kind from the command stream (others before it are skipped). */
  async nextCommand<K extends Command['$case']>(kind: K, timeoutMs = 10_000): Promise<CommandValue<K>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const c = this.commands.shift()?.command;
      if (c?.$case === kind) return c.value as CommandValue<K>;
      if (Date.now() > deadline) throw new Error(`no ${kind} command from the master`);
      if (!c) await new Promise((r) => setTimeout(r, 25));
    }
  }

  nextAssignment(timeoutMs = 10_000): Promise<TaskAssignment> {
    return this.nextCommand('assign', timeoutMs);
  }

  update(taskId: string, attempt: number, state: TaskState, message = '', outcome?: TaskOutcome, data?: DataProgress, replica?: ReplicaStatus): Promise<TaskUpdateAck> {
    return new Promise((resolve, reject) =>
      this.client.updateTask({ taskId, attempt, seq: ++this.seq, state, message, atMs: Date.now(), outcome, pull: undefined, accepting: this.accepting, data, replica }, this.md!, (e, r) => (e ? reject(e) : resolve(r))),
    );
  }

  /** A data set of an assigned task through DownloadData, whole. */
  async downloadData(taskId: string, attempt: number, sha256: string, offset = 0): Promise<Buffer> {
    const parts: Buffer[] = [];
    for await (const c of this.client.downloadData({ taskId, attempt, sha256, offset }, this.md!)) parts.push((c as DataChunk).data);
    return Buffer.concat(parts);
  }

  /** Uploads `data` as the attempt's result; returns its size and sha256 for the outcome. */
  upload(taskId: string, attempt: number, data: Buffer): Promise<UploadResultResponse> {
    return new Promise((resolve, reject) => {
      const call = this.client.uploadResult(this.md!, (e, r) => (e ? reject(e) : resolve(r)));
      call.write({ part: { $case: 'header', value: { taskId, attempt, offset: 0, totalSize: data.length } } });
      for (let i = 0; i < data.length; i += CHUNK_SIZE) call.write({ part: { $case: 'chunk', value: data.subarray(i, i + CHUNK_SIZE) } });
      call.write({ part: { $case: 'trailer', value: { size: data.length, sha256: createHash('sha256').update(data).digest('hex') } } });
      call.end();
    });
  }

  /** Opens an ExecSession stream (the node's side of an exec session); the caller sends attach first. */
  execSession(): ClientDuplexStream<ExecNodeMessage, ExecInput> {
    return this.client.execSession(this.md!);
  }

  close(): void {
    this.sub?.cancel();
    this.client.close();
  }
}
