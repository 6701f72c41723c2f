// Attached to a task, as `docker run` is to its container: the task's output streamed live
// (stdout to stdout, stderr to stderr) while its state is watched, until it ends or the user
// detaches. Shared by `hivemind run` and `hivemind submit --wait`; the Ctrl-C rules are here too.
import { once } from 'node:events';
import type { AdminClient } from '../client/admin-client.js';
import { errorMessage } from '../common/errors.js';
import { LogStream, TaskState, type LogChunk } from '../protocol/gen/hivemind/v1/common.js';
import type { TaskInfo } from '../protocol/gen/hivemind/v1/admin.js';
import { stateName } from './task-format.js';
import { terminalSafe } from './terminal-text.js';

/** What attaching needs of the master. */
export type AttachClient = Pick<AdminClient, 'streamLogs' | 'watchTask' | 'getTask'>;

export interface AttachOptions {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  /** Aborted = detach: stop following, leave the task alone. */
  signal: AbortSignal;
  /** Each change of state (a one-line note on stderr, for `submit --wait`). */
  onState?(t: TaskInfo): void;
  /** How long the log stream may lag behind the terminal state before it is cut (default 10 s). */
  logGraceMs?: number;
}

const TERMINAL = new Set([TaskState.TASK_STATE_SUCCEEDED, TaskState.TASK_STATE_FAILED, TaskState.TASK_STATE_CANCELLED]);

/**
 * Follows the task's output and state until it is terminal (returns its last TaskInfo) or the
 * signal detaches (returns undefined). A failed log stream (a master restarting) costs the rest of
 * the output, not the attachment: a note on stderr and the watch goes on.
 */
export async function attachTask(client: AttachClient, taskId: string, o: AttachOptions): Promise<TaskInfo | undefined> {
  const logs = new AbortController();
  const stopLogs = () => logs.abort();
  o.signal.addEventListener('abort', stopLogs, { once: true });
  const following = followLogs(client, taskId, o, logs.signal);
  try {
    const end = await watchUntilEnd(client, taskId, { signal: o.signal, onState: o.onState });
    if (end === undefined) return undefined;
    // The master ends a followed log once the task is terminal; the last bytes may still be on the way.
    const grace = setTimeout(stopLogs, o.logGraceMs ?? 10_000);
    await following;
    clearTimeout(grace);
    return end;
  } finally {
    o.signal.removeEventListener('abort', stopLogs);
    logs.abort();
    await following;
  }
}

async function followLogs(client: AttachClient, taskId: string, o: AttachOptions, signal: AbortSignal): Promise<void> {
  try {
    await printLogs(client.streamLogs(taskId, { follow: true }, signal), o.stdout, o.stderr, signal);
  } catch (err) {
    if (signal.aborted) return;
    o.stderr.write(`hivemind: ${terminalSafe(`lost the output of task ${taskId} (${errorMessage(err)}); still waiting for it to end; \`hivemind logs ${taskId}\` prints it all`)}\n`);
  }
}

/**
 * A task's log chunks, raw as the task wrote them (like `docker logs`): stdout to `stdout`, stderr
 * to `stderr`. A slow reader (a pager, a pipe) is waited for rather than the whole log buffered
 * here. Used by `logs`, `service logs` and attached runs.
 */
export async function printLogs(chunks: AsyncIterable<LogChunk>, stdout: NodeJS.WritableStream, stderr: NodeJS.WritableStream, signal?: AbortSignal): Promise<void> {
  for await (const chunk of chunks) {
    const out = chunk.stream === LogStream.LOG_STREAM_STDERR ? stderr : stdout;
    if (!out.write(chunk.data)) {
      await once(out, 'drain', { signal }).catch((err: unknown) => {
        if (!signal?.aborted) throw err;
      });
    }
    if (signal?.aborted) return;
  }
}

export function isTerminal(state: TaskState): boolean {
  return TERMINAL.has(state);
}

/**
 * The task's terminal TaskInfo, or undefined once `signal` is aborted. `onState` sees each change
 * of state, `onEvery` every TaskInfo the watch sends (progress included). Shared by `wait` and
 * attached runs.
 */
export async function watchUntilEnd(
  client: AttachClient,
  taskId: string,
  o: { signal?: AbortSignal; onState?: (t: TaskInfo) => void; onEvery?: (t: TaskInfo) => void } = {},
): Promise<TaskInfo | undefined> {
  let last: TaskInfo | undefined;
  for await (const t of client.watchTask(taskId, o.signal)) {
    if (!last || last.state !== t.state) o.onState?.(t);
    o.onEvery?.(t);
    last = t;
    if (isTerminal(t.state)) return t;
  }
  if (o.signal?.aborted) return undefined;
  // The watch ended without a terminal state (a master restarting): ask once more.
  const t = await client.getTask(taskId);
  if (!isTerminal(t.state)) throw new Error(`lost the watch on task ${taskId} while it was ${stateName(t.state)}; run \`hivemind wait ${taskId}\` or \`hivemind logs -f ${taskId}\``);
  return t;
}

/** What a Ctrl-C (or SIGTERM/SIGHUP) does while attached. */
export type InterruptAction = 'detach' | 'cancel' | 'exit-now';

/**
 * The first interrupt detaches (the task goes on), or with --rm cancels the task and waits for the
 * cancellation to land; a second one exits at once, whatever the first did.
 */
export function interruptAction(count: number, removeOnExit: boolean): InterruptAction {
  if (count > 1) return 'exit-now';
  return removeOnExit ? 'cancel' : 'detach';
}

/** How to get back to a task left running. */
export function reattachHint(taskId: string): string {
  return `detached from task ${taskId}; it goes on. Follow its output with \`hivemind logs -f ${taskId}\`, wait for it with \`hivemind wait ${taskId}\``;
}

/** Where signals come from: `process`, or a fake in tests. */
export interface SignalSource {
  on(sig: NodeJS.Signals, fn: (sig: NodeJS.Signals) => void): unknown;
  off(sig: NodeJS.Signals, fn: (sig: NodeJS.Signals) => void): unknown;
}

const INTERRUPTS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

/** Calls `act` with the action of each interrupt while attached; returns the uninstaller. */
export function onInterrupts(source: SignalSource, removeOnExit: boolean, act: (a: InterruptAction, sig: NodeJS.Signals) => void): () => void {
  let count = 0;
  const handler = (sig: NodeJS.Signals) => act(interruptAction(++count, removeOnExit), sig);
  for (const s of INTERRUPTS) source.on(s, handler);
  return () => {
    for (const s of INTERRUPTS) source.off(s, handler);
  };
}

export interface InterruptibleAttach extends Omit<AttachOptions, 'signal'> {
  /** --rm: the task is tied to the command; an interrupt cancels it. */
  removeOnExit: boolean;
  signals?: SignalSource;
  /** The second interrupt: leave now with this code. */
  exitNow(code: number): void;
}

/**
 * attachTask with the interrupt rules: returns the terminal TaskInfo (also of a task an interrupt
 * cancelled, once the cancellation landed), or undefined when the user detached.
 */
export async function attachInterruptibly(client: AttachClient & Pick<AdminClient, 'cancelTask'>, taskId: string, o: InterruptibleAttach): Promise<TaskInfo | undefined> {
  const detach = new AbortController();
  const uninstall = onInterrupts(o.signals ?? process, o.removeOnExit, (action) => {
    if (action === 'exit-now') {
      o.stderr.write(`\nhivemind: ${terminalSafe(o.removeOnExit ? `exiting without waiting; the cancel of task ${taskId} was sent` : reattachHint(taskId))}\n`);
      o.exitNow(130);
    } else if (action === 'detach') {
      detach.abort();
    } else {
      o.stderr.write(`\nhivemind: ${terminalSafe(`cancelling task ${taskId} (--rm); waiting for it to stop (Ctrl-C again to exit at once)`)}\n`);
      client.cancelTask(taskId, 'cancelled from the CLI (--rm, interrupted)').catch((err: unknown) => {
        o.stderr.write(`hivemind: ${terminalSafe(`cancel of task ${taskId} failed: ${errorMessage(err)}`)}\n`);
      });
    }
  });
  try {
    return await attachTask(client, taskId, { ...o, signal: detach.signal });
  } finally {
    uninstall();
  }
}
