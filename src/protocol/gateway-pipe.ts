// The gateway pipe (node.proto, GatewayPipe): how the master's gateway reaches a service replica on
// a node. One TCP connection carries one replica connection: the master writes the hello line, the
// node answers "OK\n" (then relays bytes both ways to the replica's container port) or
// "ERR <reason>\n" and closes. Both ends use these helpers, so the line has one definition.
import { timingSafeEqual } from 'node:crypto';

export const PIPE_MAGIC = 'HIVEMIND-PIPE/1';
/** A hello or answer line longer than this is refused: the line is read before anything is trusted. */
export const PIPE_MAX_LINE_BYTES = 512;
/** The node closes a connection whose hello has not arrived whole within this time. */
export const PIPE_HELLO_TIMEOUT_MS = 5_000;

export interface PipeHello {
  key: string;
  taskId: string;
  attempt: number;
}

const KEY = /^[0-9a-f]{64}$/;
// Task ids are the master's own (uuid-like); bounded and plain so that the line stays a line.
const TASK_ID = /^[A-Za-z0-9._-]{1,128}$/;

export function formatPipeHello(h: PipeHello): string {
  return `${PIPE_MAGIC} ${h.key} ${h.taskId} ${h.attempt}\n`;
}

/** The hello line (without its newline), or a reason it is not one. */
export function parsePipeHello(line: string): PipeHello | { error: string } {
  const parts = line.split(' ');
  if (parts.length !== 4 || parts[0] !== PIPE_MAGIC) return { error: 'not a gateway pipe hello' };
  const [, key, taskId, attemptText] = parts as [string, string, string, string];
  if (!KEY.test(key)) return { error: 'malformed key' };
  if (!TASK_ID.test(taskId)) return { error: 'malformed task id' };
  if (!/^[1-9][0-9]{0,8}$/.test(attemptText)) return { error: 'malformed attempt' };
  return { key, taskId, attempt: Number(attemptText) };
}

/** Compares a presented key with the node's own in constant time. */
export function pipeKeyMatches(presented: string, own: string): boolean {
  const a = Buffer.from(presented);
  const b = Buffer.from(own);
  return a.length === b.length && timingSafeEqual(a, b);
}

export const PIPE_OK = 'OK\n';

/** The node's refusal line: the reason is single-line and bounded. */
export function formatPipeError(reason: string): string {
  return `ERR ${reason.replace(/[\r\n]+/g, ' ').slice(0, PIPE_MAX_LINE_BYTES - 8)}\n`;
}

/** The node's answer (without its newline): ok, or the reason it refused. */
export function parsePipeAnswer(line: string): { ok: true } | { ok: false; reason: string } {
  if (line === 'OK') return { ok: true };
  if (line.startsWith('ERR ')) return { ok: false, reason: line.slice(4) };
  return { ok: false, reason: 'the node answered something that is not a gateway pipe answer' };
}
