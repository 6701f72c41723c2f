// The node's exec sessions (docs/exec.md, "On the node"): on NodeCommand.exec it opens
// NodeService.ExecSession to the master, attaches, runs the command in the task's container and
// relays its output, stdin and window size until the command exits. Each session is bounded (per
// task, per node, argv and message sizes) and never outlives its task nor the master's stream.
import type { Clock } from '../common/clock.js';
import { errorMessage } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { execCommandProblem, execInputProblem, terminalSizeProblem } from '../protocol/exec-rules.js';
import type { ExecInput, ExecStart } from '../protocol/gen/hivemind/v1/common.js';
import type { ExecNodeMessage, ExecOpen } from '../protocol/gen/hivemind/v1/node.js';
import type { ExecProcess } from '../runtime/exec-process.js';
import type { ExecRequest } from './contracts.js';
import type { ExecChannel } from './master-connection.js';

export type { ExecChannel } from './master-connection.js';

/** The node's own bounds; those of the command and its messages are protocol/exec-rules.ts's. */
export const EXEC_LIMITS = {
  perTask: 4,
  perNode: 16,
  maxOutputChunk: 64 * 1024,
} as const;

/** The exit code of a command that could not run (as a shell says it). */
export const EXEC_CANNOT_RUN = 126;
export const EXEC_OFF_MESSAGE = "this node's operator does not allow exec (--no-exec)";
export const TASK_ENDED_MESSAGE = 'the task ended';

/** One session as the node's history keeps it. */
export interface ExecSessionRecord {
  sessionId: string;
  taskId: string;
  attempt: number;
  startedAt: number;
  command: string[];
  tty: boolean;
}

export interface ExecSessionEnd {
  endedAt: number;
  exitCode: number;
  /** Why it could not run or was cut; empty when the command exited by itself. */
  error: string;
}

export interface ExecRecorder {
  started(record: ExecSessionRecord): void;
  ended(sessionId: string, end: ExecSessionEnd): void;
}

export interface ExecSessionsDeps {
  /** The operator allows exec on this node (the `exec` setting, --no-exec). */
  allowed: boolean;
  logger: Logger;
  clock: Clock;
  /** The attempt running here, its signal aborting when it ends; undefined when it is not running here. */
  task(taskId: string, attempt: number): { signal: AbortSignal } | undefined;
  /** Starts the command in the attempt's container (undefined: the executor has no exec). */
  exec: ((taskId: string, attempt: number, request: ExecRequest, signal: AbortSignal) => Promise<ExecProcess>) | undefined;
  /** A new ExecSession stream to the master; undefined when no session to the master is up. */
  openChannel(): ExecChannel | undefined;
  recorder?: ExecRecorder;
}

export interface ExecCounters {
  started: number;
  refused: number;
  active: number;
}

/** Why the session may not run, or undefined. Pure: the node's setting, the task, the bounds, the counts. */
export function execRefusal(
  start: ExecStart | undefined,
  ctx: { allowed: boolean; taskRunning: boolean; canExec: boolean; taskSessions: number; nodeSessions: number; taskId: string },
): string | undefined {
  if (!ctx.allowed) return EXEC_OFF_MESSAGE;
  if (!ctx.canExec) return "this node's runtime does not support exec";
  if (!ctx.taskRunning) return `task ${ctx.taskId} is not running on this node`;
  if (!start) return 'the exec request has no command';
  const bad = execCommandProblem(start.command) ?? (start.tty && start.size ? terminalSizeProblem(start.size) : undefined);
  if (bad) return bad;
  if (ctx.taskSessions >= EXEC_LIMITS.perTask) return `task ${ctx.taskId} already has ${ctx.taskSessions} exec sessions; at most ${EXEC_LIMITS.perTask} at a time`;
  if (ctx.nodeSessions >= EXEC_LIMITS.perNode) return `this node already has ${ctx.nodeSessions} exec sessions; at most ${EXEC_LIMITS.perNode} at a time`;
  return undefined;
}

/** What is wrong with a message of the master's in a running session, or undefined. */
export function inputProblem(input: ExecInput, session: { stdin: boolean; stdinClosed: boolean }): string | undefined {
  // No `tty` given: a resize in a session without a terminal is ignored (see listen), not refused.
  const bad = execInputProblem(input, session);
  return bad && `protocol error: ${bad}`;
}

export class ExecSessions {
  private readonly sessions = new Map<string, { taskKey: string; kill: (why: string) => void }>();
  private started = 0;
  private refused = 0;

  constructor(private readonly deps: ExecSessionsDeps) {}

  get active(): number {
    return this.sessions.size;
  }

  get counters(): ExecCounters {
    return { started: this.started, refused: this.refused, active: this.sessions.size };
  }

  /** Ends every session (the worker closes). */
  closeAll(why: string): void {
    for (const s of this.sessions.values()) s.kill(why);
  }

  /** Handles NodeCommand.exec. Never throws: every failure ends the session with exit 126 and the reason. */
  open(cmd: ExecOpen): void {
    const log = this.deps.logger.child({ taskId: cmd.taskId, attempt: cmd.attempt, execSession: cmd.sessionId });
    if (!/^[0-9a-f]{32}$/.test(cmd.sessionId) || this.sessions.has(cmd.sessionId)) {
      log.warn('exec request with a malformed or repeated session id; ignored');
      return;
    }
    const channel = this.deps.openChannel();
    if (!channel) {
      log.warn('exec request while no session to the master is up; ignored (the master times it out)');
      return;
    }
    channel.write({ message: { $case: 'attach', value: { sessionId: cmd.sessionId } } });
    const taskKey = `${cmd.taskId}#${cmd.attempt}`;
    const task = this.deps.task(cmd.taskId, cmd.attempt);
    const refusal = execRefusal(cmd.start, {
      allowed: this.deps.allowed,
      canExec: this.deps.exec !== undefined,
      taskRunning: task !== undefined && !task.signal.aborted,
      taskSessions: [...this.sessions.values()].filter((s) => s.taskKey === taskKey).length,
      nodeSessions: this.sessions.size,
      taskId: cmd.taskId,
    });
    const record: ExecSessionRecord = { sessionId: cmd.sessionId, taskId: cmd.taskId, attempt: cmd.attempt, startedAt: this.deps.clock.now(), command: cmd.start?.command ?? [], tty: cmd.start?.tty ?? false };
    this.safely(log, () => this.deps.recorder?.started(record));
    if (refusal || !task || !cmd.start || !this.deps.exec) {
      this.refused++;
      const reason = refusal ?? 'cannot run';
      log.info({ reason }, 'exec refused');
      this.finish(log, channel, cmd.sessionId, EXEC_CANNOT_RUN, reason);
      return;
    }
    this.started++;
    this.run(cmd.sessionId, taskKey, cmd, cmd.start, task.signal, channel, log);
  }

  private run(sessionId: string, taskKey: string, cmd: ExecOpen, start: ExecStart, taskSignal: AbortSignal, channel: ExecChannel, log: Logger): void {
    const ctl = new AbortController();
    let proc: ExecProcess | undefined;
    let cut = '';
    let stdinClosed = !start.stdin;
    // Stdin and its end wait for the command to run, then go in order.
    let running!: (p: ExecProcess | undefined) => void;
    let writing: Promise<unknown> = new Promise<ExecProcess | undefined>((resolve) => (running = resolve));
    const kill = (why: string) => {
      if (!cut) cut = why;
      ctl.abort(why);
      proc?.kill().catch((err: unknown) => log.warn({ err: errorMessage(err) }, 'killing the exec failed; it ends with its task'));
    };
    this.sessions.set(sessionId, { taskKey, kill });
    const onTaskEnd = () => kill(TASK_ENDED_MESSAGE);
    taskSignal.addEventListener('abort', onTaskEnd, { once: true });
    let over = false;
    channel.listen(
      (input) => {
        const bad = inputProblem(input, { stdin: start.stdin, stdinClosed });
        if (bad) {
          log.warn({ problem: bad }, 'exec session input refused; the command is killed');
          return kill(bad);
        }
        const i = input.input!;
        if (i.$case === 'stdin') {
          channel.pause();
          writing = writing.then(async () => {
            await proc?.writeStdin(Buffer.from(i.value));
            channel.resume();
          });
        } else if (i.$case === 'stdinEof') {
          stdinClosed = true;
          writing = writing.then(() => proc?.closeStdin());
        } else if (i.$case === 'resize' && start.tty) {
          // In order with stdin: what is typed after a resize sees the new size (`stty size`).
          writing = writing.then(() => proc?.resize(i.value, ctl.signal).catch((err: unknown) => log.debug({ err: errorMessage(err) }, 'exec resize failed')));
        }
      },
      (err) => {
        if (!over) kill(`the master's stream ended${err ? ` (${errorMessage(err)})` : ''}`);
      },
    );
    // Input arriving before the command runs waits in the stream.
    channel.pause();
    void (async () => {
      let code = EXEC_CANNOT_RUN;
      try {
        if (taskSignal.aborted) throw new Error(TASK_ENDED_MESSAGE);
        proc = await this.deps.exec!(cmd.taskId, cmd.attempt, { argv: start.command, tty: start.tty, stdin: start.stdin, ...(start.tty && start.size ? { size: start.size } : {}) }, ctl.signal);
        log.info({ command: start.command, tty: start.tty }, 'exec session started');
        if (ctl.signal.aborted) void proc.kill().catch(() => undefined);
        const p = proc;
        running(p);
        p.readOutput({
          output: (stream, data) => {
            for (let at = 0; at < data.length; at += EXEC_LIMITS.maxOutputChunk) {
              const value = data.subarray(at, at + EXEC_LIMITS.maxOutputChunk);
              const msg: ExecNodeMessage = { message: { $case: 'output', value: { output: stream === 'stdout' ? { $case: 'stdout', value } : { $case: 'stderr', value } } } };
              if (!channel.write(msg)) {
                p.pause();
                channel.onDrain(() => p.resume());
              }
            }
          },
        });
        channel.resume();
        code = await p.exitCode;
      } catch (err) {
        if (!cut) cut = errorMessage(err);
      } finally {
        running(undefined);
        taskSignal.removeEventListener('abort', onTaskEnd);
        over = true;
        this.sessions.delete(sessionId);
      }
      log.info({ exitCode: code, error: cut || undefined }, 'exec session ended');
      this.finish(log, channel, sessionId, code, cut);
    })();
  }

  private finish(log: Logger, channel: ExecChannel, sessionId: string, code: number, error: string): void {
    try {
      channel.write({ message: { $case: 'output', value: { output: { $case: 'exit', value: { code, error } } } } });
      channel.end();
    } catch (err) {
      log.debug({ err: errorMessage(err) }, 'the exec stream is gone');
      channel.cancel();
    }
    this.safely(log, () => this.deps.recorder?.ended(sessionId, { endedAt: this.deps.clock.now(), exitCode: code, error }));
  }

  private safely(log: Logger, fn: () => void): void {
    try {
      fn();
    } catch (err) {
      log.warn({ err: errorMessage(err) }, 'cannot record the exec session in the history');
    }
  }
}
