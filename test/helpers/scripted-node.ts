// A node driven step by step over the real NodeService protocol, for tests that need a master to
// hold what a hostile node can send: any name, any outcome message, any result archive.
import { createHash } from 'node:crypto';
import { credentials, type ClientReadableStream, type Metadata } from '@grpc/grpc-js';
import { bearerMetadata } from '../../src/protocol/auth-metadata.js';
import type { Capacity, ResourceReport, TaskOutcome, TaskState } from '../../src/protocol/gen/hivemind/v1/common.js';
import { NodeServiceClient, type NodeCommand, type RegisterResponse, type TaskAssignment, type TaskUpdateAck, type UploadResultResponse } from '../../src/protocol/gen/hivemind/v1/node.js';
import { CHUNK_SIZE } from '../../src/protocol/transport.js';

const FREE: Capacity = { cpus: 4, memoryBytes: 8 * 1024 ** 3, gpuIndexes: [], taskSlots: 2 };

export class ScriptedNode {
  readonly client: NodeServiceClient;
  nodeId = '';
  private md: Metadata | undefined;
  private sub: ClientReadableStream<NodeCommand> | undefined;
  private readonly commands: NodeCommand[] = [];
  private seq = 0;

  constructor(address: string) {
    this.client = new NodeServiceClient(address, credentials.createInsecure());
  }

  register(token: string, name: string): Promise<RegisterResponse> {
    return new Promise((resolve, reject) =>
      this.client.register(
        { name, facts: { hostname: 'scripted', os: 'linux', osRelease: '', arch: 'x64', cpuCores: 4, cpuModel: 'fake', memoryBytes: 8 * 1024 ** 3, diskBytes: 0, gpus: [], dockerVersion: '20.10', labels: new Map(), workerVersion: 'test', maxTasks: 2 } },
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

  /** Reports capacity and subscribes, so the master assigns tasks to this node. */
  online(): void {
    const report = this.client.report(this.md!, () => undefined);
    const r: ResourceReport = {
      seq: 1, atMs: Date.now(), cpuPercent: 1, memoryUsedBytes: 0, memoryTotalBytes: 0, diskUsedBytes: 0, diskTotalBytes: 0,
      netRxBytesPerSec: 0, netTxBytesPerSec: 0, gpus: [], dockerOk: true, dockerMessage: '', tasks: [], free: FREE, lifecycleState: 'connected', accepting: true,
    };
    report.write(r);
    report.end();
    this.sub = this.client.subscribe({ running: [], free: FREE, accepting: true }, this.md!);
    this.sub.on('data', (c: NodeCommand) => this.commands.push(c));
    this.sub.on('error', () => undefined);
  }

  async nextAssignment(timeoutMs = 10_000): Promise<TaskAssignment> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const c = this.commands.shift();
      if (c?.command?.$case === 'assign') return c.command.value;
      if (Date.now() > deadline) throw new Error('no assignment from the master');
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  update(taskId: string, attempt: number, state: TaskState, message = '', outcome?: TaskOutcome): Promise<TaskUpdateAck> {
    return new Promise((resolve, reject) =>
      this.client.updateTask({ taskId, attempt, seq: ++this.seq, state, message, atMs: Date.now(), outcome, pull: undefined, accepting: true }, this.md!, (e, r) => (e ? reject(e) : resolve(r))),
    );
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

  close(): void {
    this.sub?.cancel();
    this.client.close();
  }
}
