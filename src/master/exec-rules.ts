// The pure rules of an exec session at the master: what a target names, a start and each input
// message held to the bounds both ends share (protocol/exec-rules.ts), and the lines the session
// leaves in the task's events. No I/O here.
import { echoValue } from '../common/echo-value.js';
import { EXEC_BOUNDS, execCommandProblem, execInputProblem, terminalSizeProblem } from '../protocol/exec-rules.js';
import type { ExecInput, ExecStart } from '../protocol/gen/hivemind/v1/common.js';
import { InvalidArgumentError } from './master-errors.js';
import { MAX_REPLICAS, SERVICE_NAME } from './service-rules.js';

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

/** Checks a start's command and size; returns it as the node gets it (no target, a size only with a tty). */
export function validateExecStart(start: ExecStart): ExecStart {
  const bad = execCommandProblem(start.command);
  if (bad) throw new InvalidArgumentError(`exec: ${bad}`);
  if (start.tty) {
    if (!start.size) throw new InvalidArgumentError(`exec start: a terminal size is required (cols and rows, 1..${EXEC_BOUNDS.maxTerminalSide})`);
    const badSize = terminalSizeProblem(start.size);
    if (badSize) throw new InvalidArgumentError(`exec start: ${badSize}`);
  }
  return { target: '', command: start.command, tty: start.tty, stdin: start.stdin, size: start.tty ? start.size : undefined };
}

/**
 * Checks one client message after the start: stdin within its bound and only when the start said
 * so, a resize only with a tty, no second start.
 */
export function validateExecInput(input: ExecInput, start: Pick<ExecStart, 'tty' | 'stdin'>): void {
  const bad = execInputProblem(input, { stdin: start.stdin, tty: start.tty });
  if (bad) throw new InvalidArgumentError(`exec: ${bad}`);
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
