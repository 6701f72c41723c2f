// The exec sessions the master holds: each reserved under the bounds (MAX_EXEC_SESSIONS in all,
// MAX_EXEC_SESSIONS_PER_TASK per task), waiting for its node's ExecSession, then relayed until it
// ends. Only the node the session was opened on may attach to it, once.
import { randomBytes } from 'node:crypto';
import { echoValue } from '../common/echo-value.js';
import { NotFoundError } from '../common/errors.js';
import { PermissionDeniedError, PreconditionError, ResourceExhaustedError } from './master-errors.js';
import { MAX_EXEC_SESSIONS, MAX_EXEC_SESSIONS_PER_TASK } from './exec-rules.js';

/** A session's attach was refused: the node sent what only a faulty or hostile node sends. */
export class HostileAttachError extends Error {
  constructor(readonly refusal: NotFoundError | PermissionDeniedError | PreconditionError) {
    super(refusal.message);
  }
}

interface Entry<T> {
  nodeId: string;
  taskId: string;
  attached: boolean;
  deliver: (stream: T) => void;
}

export interface ExecSession<T> {
  readonly id: string;
  /** The node's stream once it attaches; rejects after `timeoutMs` or when `signal` fires. */
  attached(timeoutMs: number, signal: AbortSignal): Promise<T>;
  /** Frees the session's place (idempotent); a late attach to it is refused as unknown. */
  release(): void;
}

export class ExecSessions<T> {
  private readonly sessions = new Map<string, Entry<T>>();

  constructor(private readonly limits = { total: MAX_EXEC_SESSIONS, perTask: MAX_EXEC_SESSIONS_PER_TASK }) {}

  get size(): number {
    return this.sessions.size;
  }

  /** Reserves a session into `taskId` on `nodeId`; RESOURCE_EXHAUSTED past the bounds. */
  open(nodeId: string, taskId: string): ExecSession<T> {
    if (this.sessions.size >= this.limits.total) {
      throw new ResourceExhaustedError(`${this.sessions.size} exec sessions are open on this master, the most it holds; retry when one ends`);
    }
    const inTask = [...this.sessions.values()].filter((s) => s.taskId === taskId).length;
    if (inTask >= this.limits.perTask) {
      throw new ResourceExhaustedError(`task ${taskId} has ${inTask} exec sessions open, the most one task takes; end one first`);
    }
    const id = randomBytes(16).toString('hex');
    let arrived: T | undefined;
    let waiter: ((stream: T) => void) | undefined;
    const entry: Entry<T> = {
      nodeId, taskId, attached: false,
      deliver: (stream) => {
        arrived = stream;
        waiter?.(stream);
      },
    };
    this.sessions.set(id, entry);
    return {
      id,
      attached: (timeoutMs, signal) => new Promise<T>((resolve, reject) => {
        if (arrived !== undefined) return resolve(arrived);
        const done = (err?: Error, stream?: T) => {
          clearTimeout(timer);
          signal.removeEventListener('abort', onAbort);
          waiter = undefined;
          if (err) reject(err);
          else resolve(stream!);
        };
        const onAbort = () => done(signal.reason instanceof Error ? signal.reason : new Error('exec session aborted'));
        const timer = setTimeout(() => done(new PreconditionError(`node ${nodeId} did not open exec session ${id.slice(0, 8)} within ${Math.round(timeoutMs / 1000)} s (is its worker too old for exec, or is it overloaded?)`)), timeoutMs);
        waiter = (stream) => done(undefined, stream);
        if (signal.aborted) onAbort();
        else signal.addEventListener('abort', onAbort, { once: true });
      }),
      release: () => {
        if (this.sessions.get(id) === entry) this.sessions.delete(id);
      },
    };
  }

  /** Sessions opened on `nodeId` that its ExecSession has not claimed yet. */
  waitingFor(nodeId: string): number {
    let n = 0;
    for (const e of this.sessions.values()) if (e.nodeId === nodeId && !e.attached) n++;
    return n;
  }

  /**
   * A node's ExecSession claims `sessionId`. Refused (HostileAttachError) when the id is unknown
   * (never opened, timed out, ended), was opened on another node, or is attached already.
   */
  attach(nodeId: string, sessionId: string, stream: T): { taskId: string } {
    const e = this.sessions.get(sessionId);
    if (!e) throw new HostileAttachError(new NotFoundError(`no exec session ${echoValue(sessionId)} is waiting for a node (unknown, timed out or ended)`));
    if (e.nodeId !== nodeId) throw new HostileAttachError(new PermissionDeniedError(`exec session ${sessionId.slice(0, 8)} was opened on another node, not on node ${nodeId}`));
    if (e.attached) throw new HostileAttachError(new PreconditionError(`exec session ${sessionId.slice(0, 8)} is attached already`));
    e.attached = true;
    e.deliver(stream);
    return { taskId: e.taskId };
  }
}
