// AdminService.Exec and NodeService.ExecSession at the master: an admin's exec into a running
// task is checked (target, state, the node's consent, bounds), opened on the task's node with
// NodeCommand.exec, joined with the node's ExecSession when it attaches, relayed (exec-relay.ts)
// and recorded in the task's events.
import type { Readable } from 'node:stream';
import type { Logger } from '../common/logger.js';
import type { Clock } from '../common/clock.js';
import { echoValue } from '../common/echo-value.js';
import { NotFoundError, errorMessage } from '../common/errors.js';
import { toServiceError } from '../protocol/grpc-errors.js';
import { TaskState, type ExecInput } from '../protocol/gen/hivemind/v1/common.js';
import type { ExecNodeMessage } from '../protocol/gen/hivemind/v1/node.js';
import type { MasterAuth } from './auth.js';
import type { MasterStore, NodeRow, TaskRow } from './master-store.js';
import type { NodeRegistry } from './registry.js';
import { EXEC_ATTACH_TIMEOUT_MS, execEndedEvent, execStartedEvent, parseExecTarget, validateExecStart } from './exec-rules.js';
import { ExecSessions, HostileAttachError } from './exec-sessions.js';
import { relayExec, type ClientExecStream, type ExecRelay, type NodeExecStream } from './exec-relay.js';
import { InvalidArgumentError, PreconditionError } from './master-errors.js';

export interface ExecServiceDeps {
  auth: Pick<MasterAuth, 'checkAdmin'>;
  store: Pick<MasterStore, 'getTask' | 'getNode' | 'addEvent'>;
  registry: Pick<NodeRegistry, 'sink' | 'isOnline' | 'allowsExec'>;
  /** A service's replica tasks (live ones and each index's latest): ServiceStore.replicaTasks. */
  replicaTasks(service: string): TaskRow[];
  clock: Clock;
  log: Logger;
  /** How long a session waits for its node to attach (EXEC_ATTACH_TIMEOUT_MS; tests shorten it). */
  attachTimeoutMs?: number;
  sessions?: ExecSessions<NodeExecStream>;
}

const stateName = (s: TaskState) => TaskState[s].replace('TASK_STATE_', '');

/** The first message of a stream, and the stream paused after it (the rest stays buffered). */
function firstMessage<T>(call: Readable, timeoutMs: number, what: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const done = (err: Error | undefined, m?: T) => {
      clearTimeout(timer);
      call.off('data', onData);
      call.off('end', onEnd);
      call.off('cancelled', onEnd);
      call.off('error', onEnd);
      if (err) reject(err);
      else resolve(m as T);
    };
    const onData = (m: T) => {
      call.pause();
      done(undefined, m);
    };
    const onEnd = () => done(new InvalidArgumentError(`${what}: the stream ended before its first message`));
    const timer = setTimeout(() => done(new InvalidArgumentError(`${what}: no first message within ${Math.round(timeoutMs / 1000)} s`)), timeoutMs);
    call.once('data', onData);
    call.once('end', onEnd);
    call.once('cancelled', onEnd);
    call.once('error', onEnd);
  });
}

export class ExecService {
  readonly sessions: ExecSessions<NodeExecStream>;
  private readonly relays = new Set<ExecRelay>();
  /** ExecSession streams per node that have not sent their attach yet. */
  private readonly unattached = new Map<string, number>();
  private readonly attachTimeoutMs: number;

  constructor(private readonly d: ExecServiceDeps) {
    this.sessions = d.sessions ?? new ExecSessions();
    this.attachTimeoutMs = d.attachTimeoutMs ?? EXEC_ATTACH_TIMEOUT_MS;
  }

  /** The task a target names: a task id, or the live task of a service's replica. */
  private resolveTarget(target: string): TaskRow {
    const t = parseExecTarget(target);
    if (t.kind === 'task') {
      const row = this.d.store.getTask(t.taskId);
      if (!row) throw new NotFoundError(`no task ${t.taskId}`);
      return row;
    }
    const tasks = this.d.replicaTasks(t.service).filter((r) => r.spec.service?.replica === t.replica);
    if (tasks.length === 0) throw new NotFoundError(`service ${t.service} has no replica ${t.replica} (no such service, or it has fewer replicas)`);
    // The running one if there is one (a replica being replaced has two tasks), else the latest.
    return tasks.find((r) => r.state === TaskState.TASK_STATE_RUNNING) ?? tasks[tasks.length - 1]!;
  }

  /** Refuses unless the task runs on a connected node whose operator allows exec. */
  private placement(task: TaskRow): NodeRow {
    if (task.state !== TaskState.TASK_STATE_RUNNING || !task.nodeId) {
      throw new PreconditionError(`task ${task.id} is ${stateName(task.state)}; exec needs a RUNNING task`);
    }
    const node = this.d.store.getNode(task.nodeId);
    const label = node?.name ?? task.nodeId;
    if (!this.d.registry.isOnline(task.nodeId) || !this.d.registry.sink(task.nodeId)) {
      throw new PreconditionError(`node ${label} running task ${task.id} is not connected to the master now; retry when it is back`);
    }
    if (!this.d.registry.allowsExec(task.nodeId)) {
      throw new PreconditionError(`node ${label} does not allow exec: its operator runs it with --no-exec`);
    }
    return node ?? ({ id: task.nodeId, name: task.nodeId } as NodeRow);
  }

  /** AdminService.Exec. */
  handleClient(call: ClientExecStream): void {
    const ac = new AbortController();
    const abort = () => ac.abort(new InvalidArgumentError('the client went away before the session started'));
    call.once('cancelled', abort);
    void this.runClient(call, ac.signal)
      .catch((err: unknown) => {
        if (!ac.signal.aborted) call.emit('error', toServiceError(err));
      })
      .finally(() => call.off('cancelled', abort));
  }

  private async runClient(call: ClientExecStream, signal: AbortSignal): Promise<void> {
    this.d.auth.checkAdmin(call.metadata);
    const first = await firstMessage<ExecInput>(call, this.attachTimeoutMs, 'exec');
    if (first.input?.$case !== 'start') throw new InvalidArgumentError('exec: the first message must be start (target, command)');
    const start = validateExecStart(first.input.value);
    const task = this.resolveTarget(first.input.value.target);
    const node = this.placement(task);
    const session = this.sessions.open(node.id, task.id);
    const log = this.d.log.child({ taskId: task.id, nodeId: node.id, session: session.id.slice(0, 8) });
    try {
      this.d.registry.sink(node.id)!.send({ command: { $case: 'exec', value: { sessionId: session.id, taskId: task.id, attempt: task.attempt, start } } });
      const nodeCall = await session.attached(this.attachTimeoutMs, signal);
      if (call.cancelled) {
        nodeCall.end();
        return;
      }
      const startedAt = this.d.clock.now();
      const event = (message: string) => this.d.store.addEvent(task.id, { state: task.state, at: this.d.clock.now(), nodeId: node.id, attempt: task.attempt, message });
      event(execStartedEvent(start.command, start.tty));
      log.info({ command: echoValue(start.command.join(' ')), tty: start.tty }, 'exec session started');
      call.write({ output: { $case: 'started', value: { sessionId: session.id, taskId: task.id, attempt: task.attempt, nodeId: node.id } } });
      const relay = relayExec(call, nodeCall, start, node.name);
      this.relays.add(relay);
      const out = await relay.done;
      this.relays.delete(relay);
      event(execEndedEvent(out.code, this.d.clock.now() - startedAt, out.error || undefined));
      if (out.hostileNode) log.warn({ hostile: out.hostileNode }, 'exec session: the node broke the protocol (hostile or faulty node); session cut');
      log.info({ code: out.code, cut: out.cut, error: out.error }, 'exec session ended');
    } finally {
      session.release();
    }
  }

  /**
   * NodeService.ExecSession, for a node already authenticated by NodeService. A node holds at most
   * as many streams before their attach as sessions wait for it (each for at most the attach
   * timeout): one opened with none waiting is refused unread.
   */
  handleNode(call: NodeExecStream, node: Pick<NodeRow, 'id' | 'name'>): void {
    const waiting = this.sessions.waitingFor(node.id);
    const unattached = this.unattached.get(node.id) ?? 0;
    if (unattached >= waiting) {
      this.d.log.warn({ nodeId: node.id, unattached, waiting }, 'refused an ExecSession no exec session waits for (hostile or faulty node)');
      call.emit('error', toServiceError(new PreconditionError(waiting === 0
        ? `no exec session is waiting for node ${node.id}; open ExecSession only for a NodeCommand.exec`
        : `node ${node.id} has ${unattached} ExecSession streams open before their attach, as many as sessions wait for it`)));
      return;
    }
    this.unattached.set(node.id, unattached + 1);
    let counted = true;
    const settled = () => {
      if (!counted) return;
      counted = false;
      const n = (this.unattached.get(node.id) ?? 1) - 1;
      if (n > 0) this.unattached.set(node.id, n);
      else this.unattached.delete(node.id);
    };
    void (async () => {
      const first = await firstMessage<ExecNodeMessage>(call, this.attachTimeoutMs, 'ExecSession');
      if (first.message?.$case !== 'attach') throw new InvalidArgumentError('ExecSession: the first message must be attach (session_id)');
      try {
        settled();
        this.sessions.attach(node.id, first.message.value.sessionId, call);
      } catch (err) {
        if (err instanceof HostileAttachError) {
          this.d.log.warn({ nodeId: node.id, err: err.message }, 'refused an exec attach (hostile or faulty node)');
          throw err.refusal;
        }
        throw err;
      }
    })().catch((err: unknown) => {
      settled();
      if (call.cancelled) return;
      call.emit('error', toServiceError(err));
      this.d.log.debug({ nodeId: node.id, err: errorMessage(err) }, 'exec session of a node refused');
    });
  }

  /** Master shutdown: every open session's client gets exit 255 and its node's stream ends. */
  close(): void {
    for (const r of this.relays) r.stop('the master is shutting down');
    this.relays.clear();
  }
}
