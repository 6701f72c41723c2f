// The pure rules of an exec session at the master: what a target names, the bounds of a start and
// of each input message, and the lines the session leaves in the task's events. No I/O here.
import { echoValue } from '../common/echo-value.js';
import type { ExecInput, ExecStart, TerminalSize } from '../protocol/gen/hivemind/v1/common.js';
import { InvalidArgumentError } from './master-errors.js';
import { MAX_REPLICAS, SERVICE_NAME } from './service-rules.js';

export const MAX_EXEC_ARGS = 64;
export const MAX_EXEC_COMMAND_BYTES = 8 * 1024;
export const MAX_EXEC_STDIN_BYTES = 64 * 1024;
export const MAX_TERMINAL_SIDE = 1000;
/** Sessions open at once on the master, and into one task: each holds two streams and a container process. */
export const MAX_EXEC_SESSIONS = 64;
export const MAX_EXEC_SESSIONS_PER_TASK = 4;
/** How long a session id waits for its node's ExecSession (ExecOpen says the same to the node). */
export const EXEC_ATTACH_TIMEOUT_MS = 10_000;
/** The exit code the client gets when the session was cut rather than the command ending (as ssh). */
export const EXEC_CUT_EXIT_CODE = 255;
/** Characters of the command kept in the task's event line. */
const EVENT_COMMAND_CHARS = 120;

export type ExecTarget =
  | { kind: 'task'; taskId: string }
  | { kind: 'replica'; service: string; replica: number };

const TASK_ID = /^[0-9a-f]{16}$/;

/**
 * A task id (16 hex digits), a service NAME (its replica 0) or NAME/REPLICA. A bare name that is
 * also 16 hex digits reads as a task id: NAME/0 names such a service's replica.
 */
export function parseExecTarget(target: string): ExecTarget {
  const t = target.trim();
  if (TASK_ID.test(t)) return { kind: 'task', taskId: t };
  const slash = t.indexOf('/');
  const name = slash < 0 ? t : t.slice(0, slash);
  const replicaText = slash < 0 ? '0' : t.slice(slash + 1);
  if (!SERVICE_NAME.test(name) || !/^(0|[1-9][0-9]{0,2})$/.test(replicaText) || Number(replicaText) >= MAX_REPLICAS) {
    throw new InvalidArgumentError(`exec target "${echoValue(target)}" is neither a task id (16 hex digits) nor a service NAME or NAME/REPLICA (e.g. web/1, replicas 0..${MAX_REPLICAS - 1})`);
  }
  return { kind: 'replica', service: name, replica: Number(replicaText) };
}

function checkSize(what: string, size: TerminalSize | undefined): void {
  if (!size) throw new InvalidArgumentError(`${what}: a terminal size is required (cols and rows, 1..${MAX_TERMINAL_SIDE})`);
  for (const [side, v] of [['cols', size.cols], ['rows', size.rows]] as const) {
    if (v < 1 || v > MAX_TERMINAL_SIDE) throw new InvalidArgumentError(`${what}: ${side} ${v} is outside 1..${MAX_TERMINAL_SIDE}`);
  }
}

/** Checks a start's command and size; returns it as the node gets it (no target, a size only with a tty). */
export function validateExecStart(start: ExecStart): ExecStart {
  const n = start.command.length;
  if (n < 1 || n > MAX_EXEC_ARGS) throw new InvalidArgumentError(`exec: the command has ${n} arguments; 1..${MAX_EXEC_ARGS} are allowed`);
  const bytes = start.command.reduce((sum, a) => sum + Buffer.byteLength(a), 0);
  if (bytes > MAX_EXEC_COMMAND_BYTES) throw new InvalidArgumentError(`exec: the command is ${bytes} bytes, over the limit of ${MAX_EXEC_COMMAND_BYTES}`);
  if (start.command[0] === '') throw new InvalidArgumentError('exec: the command\'s first argument (the program) is empty');
  if (start.command.some((a) => a.includes('\0'))) throw new InvalidArgumentError('exec: an argument of the command contains a NUL byte');
  if (start.tty) checkSize('exec start', start.size);
  return { target: '', command: start.command, tty: start.tty, stdin: start.stdin, size: start.tty ? start.size : undefined };
}

/**
 * Checks one client message after the start: stdin within its bound and only when the start said
 * so, a resize only with a tty, no second start.
 */
export function validateExecInput(input: ExecInput, start: Pick<ExecStart, 'tty' | 'stdin'>): void {
  const i = input.input;
  switch (i?.$case) {
    case 'start':
      throw new InvalidArgumentError('exec: a second start message; start comes once, first');
    case 'stdin':
      if (!start.stdin) throw new InvalidArgumentError('exec: stdin sent, but the start did not ask for stdin (-i)');
      if (i.value.length > MAX_EXEC_STDIN_BYTES) throw new InvalidArgumentError(`exec: a stdin message of ${i.value.length} bytes, over the limit of ${MAX_EXEC_STDIN_BYTES} per message`);
      return;
    case 'stdinEof':
      return;
    case 'resize':
      if (!start.tty) throw new InvalidArgumentError('exec: a resize without a terminal (-t)');
      checkSize('exec resize', i.value);
      return;
    default:
      throw new InvalidArgumentError('exec: an empty input message');
  }
}

/** The task event when a session starts: "exec started: top -d 1 (tty)". */
export function execStartedEvent(command: readonly string[], tty: boolean): string {
  const text = command.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : JSON.stringify(a))).join(' ');
  return `exec started: ${echoValue(text, EVENT_COMMAND_CHARS)}${tty ? ' (tty)' : ''}`;
}

/** The task event when a session ends: "exec ended: exit 0 after 3.2 s", or why it was cut. */
export function execEndedEvent(code: number, durationMs: number, error?: string): string {
  const why = error ? ` (${echoValue(error, EVENT_COMMAND_CHARS)})` : '';
  return `exec ended: exit ${code} after ${(durationMs / 1000).toFixed(1)} s${why}`;
}
