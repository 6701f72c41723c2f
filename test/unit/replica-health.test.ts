// The replica health check and restart rules without Docker: the hysteresis rule, one check over
// a fake connection (a scripted HTTP answer, a refusal, silence), the scheduled watcher with short
// intervals, and the restart backoff.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Duplex } from 'node:stream';
import { INITIAL_HEALTH, checkOnce, nextHealth, watchHealth, type HealthState, type HealthTiming } from '../../src/runtime/replica-health.js';
import { describeExit, nextRestart } from '../../src/runtime/replica-restart.js';

const RULE = { unhealthyAfter: 3, restartAfter: 6 };
const fail = (message: string) => ({ ok: false as const, message });

/** A connection that answers every request with `answer` (or never, or closes at once). */
function fakeServer(answer: string | 'silent' | 'close', seen: string[] = []): Duplex {
  const d: Duplex = new Duplex({
    read() {},
    write(chunk: Buffer, _enc, cb) {
      seen.push(chunk.toString());
      if (answer === 'close') d.push(null);
      else if (answer !== 'silent') {
        d.push(Buffer.from(answer));
        d.push(null);
      }
      cb();
    },
  });
  return d;
}

test('healthy after one success; a healthy replica stays in rotation until 3 failures in a row', () => {
  let s: HealthState = INITIAL_HEALTH;
  s = nextHealth(s, { ok: true }, RULE);
  assert.deepEqual({ ...s }, { healthy: true, failures: 0, message: '', restart: false });
  s = nextHealth(s, fail('GET /h: 500'), RULE);
  s = nextHealth(s, fail('GET /h: 500'), RULE);
  assert.equal(s.healthy, true, 'two failures keep it healthy');
  assert.equal(s.message, '', 'no message while healthy');
  s = nextHealth(s, fail('GET /h: 503'), RULE);
  assert.equal(s.healthy, false);
  assert.equal(s.message, 'GET /h: 503', 'the last failure');
  s = nextHealth(s, { ok: true }, RULE);
  assert.equal(s.healthy, true);
  assert.equal(s.failures, 0);
});

test('restart asked for at the 6th failure in a row, not before; a never-healthy replica shows each failure', () => {
  let s = { ...INITIAL_HEALTH, restart: false };
  for (let i = 1; i <= 5; i++) {
    s = nextHealth(s, fail(`connection refused ${i}`), RULE);
    assert.equal(s.restart, false, `failure ${i}`);
    assert.equal(s.healthy, false);
    assert.equal(s.message, `connection refused ${i}`);
  }
  s = nextHealth(s, fail('connection refused 6'), RULE);
  assert.equal(s.restart, true);
});

test('checkOnce: GET of the path, 2xx/3xx healthy, other status named, silence timed out, refusal worded', async () => {
  const seen: string[] = [];
  assert.deepEqual(await checkOnce(async () => fakeServer('HTTP/1.1 204 No Content\r\n\r\n', seen), '/health', 8000, 500), { ok: true });
  assert.match(seen[0]!, /^GET \/health HTTP\/1\.1\r\nHost: localhost\r\n/);
  assert.deepEqual(await checkOnce(async () => fakeServer('HTTP/1.0 302 Found\r\n\r\n'), '/h', 8000, 500), { ok: true });
  assert.deepEqual(await checkOnce(async () => fakeServer('HTTP/1.1 500 Oops\r\n\r\n'), '/h', 8000, 500), { ok: false, message: 'GET /h: 500' });
  assert.deepEqual(await checkOnce(async () => fakeServer('SSH-2.0-x\r\n'), '/h', 8000, 500), { ok: false, message: 'GET /h: not an HTTP answer' });
  assert.deepEqual(await checkOnce(async () => fakeServer('close'), '/h', 8000, 500), { ok: false, message: 'GET /h: connection closed with no answer' });
  const t0 = Date.now();
  assert.deepEqual(await checkOnce(async () => fakeServer('silent'), '/h', 8000, 200), { ok: false, message: 'GET /h: no answer within 200 ms' });
  assert.ok(Date.now() - t0 < 2000, 'the timeout bounds the check');
  const refused = Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
  assert.deepEqual(await checkOnce(() => Promise.reject(refused), '/h', 8000, 500), { ok: false, message: 'GET /h: connection refused' });
});

test('checkOnce without a path: the connection being accepted is healthy', async () => {
  assert.deepEqual(await checkOnce(async () => fakeServer('silent'), '', 9000, 500), { ok: true });
  const refused = Object.assign(new Error('x'), { code: 'ECONNREFUSED' });
  assert.deepEqual(await checkOnce(() => Promise.reject(refused), '', 9000, 500), { ok: false, message: 'TCP connect to port 9000: connection refused' });
});

test('watchHealth: first check after firstDelay, reports changes only, asks for a restart after 6 failures and stops', async () => {
  const timing: HealthTiming = { firstDelayMs: 20, intervalMs: 10, timeoutMs: 200, unhealthyAfter: 3, restartAfter: 6 };
  // Healthy twice, then failing for good.
  const answers = ['HTTP/1.1 200 OK\r\n\r\n', 'HTTP/1.1 200 OK\r\n\r\n', ...Array(10).fill('HTTP/1.1 500 Bad\r\n\r\n')];
  let calls = 0;
  const changes: HealthState[] = [];
  let restartWith: string | undefined;
  const ctl = new AbortController();
  const t0 = Date.now();
  let firstAt = 0;
  await watchHealth(
    async () => {
      firstAt ||= Date.now() - t0;
      return fakeServer(answers[calls++]!);
    },
    { path: '/health', port: 8000 },
    { onChange: (s) => changes.push({ ...s }), onRestart: (m) => (restartWith = m) },
    ctl.signal,
    timing,
  );
  assert.ok(firstAt >= 15, `first check waited firstDelayMs (${firstAt} ms)`);
  assert.equal(calls, 8, '2 successes + 6 failures, then no more checks');
  assert.deepEqual(changes, [
    { healthy: true, failures: 0, message: '' },
    { healthy: false, failures: 3, message: 'GET /health: 500' },
  ]);
  assert.equal(restartWith, 'GET /health: 500');
});

test('watchHealth ends promptly when its signal aborts, without a restart', async () => {
  const ctl = new AbortController();
  let restarted = false;
  const done = watchHealth(async () => fakeServer('HTTP/1.1 200 OK\r\n\r\n'), { path: '/', port: 1 }, { onChange: () => {}, onRestart: () => (restarted = true) }, ctl.signal, {
    firstDelayMs: 10,
    intervalMs: 60_000,
    timeoutMs: 100,
    unhealthyAfter: 3,
    restartAfter: 6,
  });
  await new Promise((r) => setTimeout(r, 50));
  const t0 = Date.now();
  ctl.abort();
  await done;
  assert.ok(Date.now() - t0 < 100);
  assert.equal(restarted, false);
});

test('restart backoff: 1 s doubling to 60 s; reset after a run healthy for 60 s', () => {
  let streak = 0;
  const delays: number[] = [];
  for (let i = 0; i < 9; i++) {
    const n = nextRestart(streak, 0);
    delays.push(n.delayMs);
    streak = n.streak;
  }
  assert.deepEqual(delays, [1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000, 60000]);
  assert.equal(nextRestart(streak, 59_999).delayMs, 60_000, 'healthy for less than 60 s: no reset');
  assert.deepEqual(nextRestart(streak, 60_000), { delayMs: 1000, streak: 1 });
});

test('exit wording', () => {
  assert.equal(describeExit({ exitCode: 3, oomKilled: false }), 'exited with code 3');
  assert.equal(describeExit({ exitCode: 137, oomKilled: true }), 'OOM killed (exit code 137)');
  assert.equal(describeExit({ exitCode: 143, oomKilled: false, unhealthy: '6 health checks failed' }), 'unhealthy: 6 health checks failed');
});
