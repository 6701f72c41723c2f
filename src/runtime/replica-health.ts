// A service replica's health check: an HTTP GET of its health path (or a bare TCP connect) over a
// fresh connection to its container port, on a schedule, turned into healthy / unhealthy / restart
// by a pure rule with hysteresis, so that one slow answer does not take a replica out of rotation.
import type { Duplex } from 'node:stream';
import { AbortedError, errorMessage } from '../common/errors.js';
import { sleep } from '../common/sleep.js';

export interface HealthTiming {
  /** Before the first check after a start. Default 1 s. */
  firstDelayMs: number;
  /** Between checks. Default 5 s. */
  intervalMs: number;
  /** One check (connect + answer head). Default 2 s. */
  timeoutMs: number;
  /** Failures in a row that make a healthy replica unhealthy. Default 3. */
  unhealthyAfter: number;
  /** Failures in a row after which its container is restarted. Default 6. */
  restartAfter: number;
}

export const HEALTH_DEFAULTS: Readonly<HealthTiming> = Object.freeze({ firstDelayMs: 1_000, intervalMs: 5_000, timeoutMs: 2_000, unhealthyAfter: 3, restartAfter: 6 });

export type CheckResult = { ok: true } | { ok: false; message: string };

export interface HealthState {
  healthy: boolean;
  /** Failed checks in a row. */
  failures: number;
  /** The last failure while not healthy; empty while healthy. */
  message: string;
}

export const INITIAL_HEALTH: Readonly<HealthState> = Object.freeze({ healthy: false, failures: 0, message: '' });

/**
 * The state after one check. Healthy after one success; a healthy replica stays in rotation until
 * `unhealthyAfter` failures in a row; `restart` once `restartAfter` failures in a row.
 */
export function nextHealth(state: HealthState, result: CheckResult, timing: Pick<HealthTiming, 'unhealthyAfter' | 'restartAfter'>): HealthState & { restart: boolean } {
  if (result.ok) return { healthy: true, failures: 0, message: '', restart: false };
  const failures = state.failures + 1;
  const healthy = state.healthy && failures < timing.unhealthyAfter;
  return { healthy, failures, message: healthy ? '' : result.message, restart: failures >= timing.restartAfter };
}

/** The most of an answer's head read before judging it: a status line fits well within. */
const MAX_HEAD_BYTES = 4096;

/**
 * One check over a fresh connection: with a path, `GET path` answered 2xx/3xx; without, the
 * connection being accepted. Never throws.
 */
export async function checkOnce(connect: (signal: AbortSignal) => Promise<Duplex>, path: string, port: number, timeoutMs: number, outer?: AbortSignal): Promise<CheckResult> {
  const what = path ? `GET ${path}` : `TCP connect to port ${port}`;
  const signal = outer ? AbortSignal.any([outer, AbortSignal.timeout(timeoutMs)]) : AbortSignal.timeout(timeoutMs);
  let sock: Duplex | undefined;
  try {
    sock = await connect(signal);
    if (!path) return { ok: true };
    const head = await readStatusLine(sock, `GET ${path} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: hivemind-health\r\nConnection: close\r\n\r\n`, signal);
    const m = /^HTTP\/\d(?:\.\d)? (\d{3})/.exec(head);
    if (!m) return { ok: false, message: `${what}: not an HTTP answer` };
    const status = Number(m[1]);
    return status >= 200 && status < 400 ? { ok: true } : { ok: false, message: `${what}: ${status}` };
  } catch (err) {
    if (outer?.aborted) return { ok: false, message: `${what}: aborted` };
    if (signal.aborted) return { ok: false, message: `${what}: no answer within ${timeoutMs} ms` };
    return { ok: false, message: `${what}: ${failureText(err)}` };
  } finally {
    sock?.destroy();
  }
}

function failureText(err: unknown): string {
  const code = (err as { code?: unknown }).code;
  if (code === 'ECONNREFUSED') return 'connection refused';
  if (code === 'ECONNRESET' || code === 'EPIPE') return 'connection reset';
  const cause = (err as { cause?: { code?: unknown } }).cause;
  if (cause?.code === 'ECONNREFUSED') return 'connection refused';
  return errorMessage(err);
}

function readStatusLine(sock: Duplex, request: string, signal: AbortSignal): Promise<string> {
  return new Promise((resolve, reject) => {
    let head = '';
    const done = (fn: () => void) => {
      sock.off('data', onData);
      sock.off('end', onEnd);
      sock.off('error', onError);
      signal.removeEventListener('abort', onAbort);
      fn();
    };
    const onData = (d: Buffer) => {
      head += d.toString('latin1');
      const eol = head.indexOf('\r\n');
      if (eol >= 0) done(() => resolve(head.slice(0, eol)));
      else if (head.length > MAX_HEAD_BYTES) done(() => resolve(head.slice(0, MAX_HEAD_BYTES)));
    };
    const onEnd = () => done(() => (head ? resolve(head) : reject(new Error('connection closed with no answer'))));
    const onError = (err: Error) => done(() => reject(err));
    const onAbort = () => done(() => reject(new AbortedError('health check aborted')));
    sock.on('data', onData);
    sock.once('end', onEnd);
    sock.once('error', onError);
    signal.addEventListener('abort', onAbort, { once: true });
    sock.write(request);
  });
}

export interface HealthEvents {
  /** The state changed (healthy flipped or the failure message changed). */
  onChange(state: HealthState): void;
  /** `restartAfter` failures in a row: the container should be restarted. Checks stop. */
  onRestart(lastFailure: string): void;
}

/**
 * Checks one running container until `signal` aborts or a restart is asked for. Started anew for
 * each start of the container (its state begins unhealthy).
 */
export async function watchHealth(
  connect: (signal: AbortSignal) => Promise<Duplex>,
  target: { path: string; port: number },
  events: HealthEvents,
  signal: AbortSignal,
  timing: HealthTiming = HEALTH_DEFAULTS,
): Promise<void> {
  let state: HealthState = INITIAL_HEALTH;
  try {
    await sleep(timing.firstDelayMs, signal);
    for (;;) {
      const result = await checkOnce(connect, target.path, target.port, timing.timeoutMs, signal);
      if (signal.aborted) return;
      const next = nextHealth(state, result, timing);
      const changed = next.healthy !== state.healthy || next.message !== state.message;
      state = { healthy: next.healthy, failures: next.failures, message: next.message };
      if (changed) events.onChange(state);
      if (next.restart) {
        events.onRestart(result.ok ? '' : result.message);
        return;
      }
      await sleep(timing.intervalMs, signal);
    }
  } catch (err) {
    if (err instanceof AbortedError || signal.aborted) return;
    throw err;
  }
}
