// The node's gateway pipe server over real TCP on loopback, with a fake replica lookup whose
// connect() reaches a local echo server: the hello, the relay both ways, and the hostile callers
// (wrong key, wrong source, malformed, oversized, slow, too many) closed without an answer.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import { systemClock } from '../../src/common/clock.js';
import { ReplicaUnreachableError } from '../../src/common/errors.js';
import { silentLogger } from '../../src/common/logger.js';
import { formatPipeHello, PIPE_MAX_LINE_BYTES } from '../../src/protocol/gateway-pipe.js';
import { GatewayPipeServer, plainAddress, type GatewayPipeServerOptions } from '../../src/worker/gateway-pipe-server.js';
import { recordHostile } from '../helpers/fault-ledger.js';

const KEY = 'a'.repeat(64);
const OTHER_KEY = 'b'.repeat(64);

async function echoServer(t: TestContext): Promise<{ port: number; accepted: () => number }> {
  let accepted = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    accepted++;
    sockets.add(s);
    s.on('error', () => undefined);
    s.on('close', () => sockets.delete(s));
    s.pipe(s);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(async () => {
    for (const s of sockets) s.destroy();
    await new Promise((r) => server.close(r));
  });
  return { port: (server.address() as net.AddressInfo).port, accepted: () => accepted };
}

async function pipeServer(t: TestContext, echoPort: number, opts: Partial<GatewayPipeServerOptions> = {}, running = new Set(['task-1#1'])): Promise<{ server: GatewayPipeServer; connects: string[] }> {
  const connects: string[] = [];
  const server = new GatewayPipeServer(
    { host: '127.0.0.1', port: 0, key: KEY, ...opts },
    {
      isReplica: (taskId, attempt) => running.has(`${taskId}#${attempt}`),
      connect: (taskId, attempt) => {
        connects.push(`${taskId}#${attempt}`);
        if (taskId === 'task-deaf') return Promise.reject(new ReplicaUnreachableError('replica task-deaf#1: port 8080 refused the connection'));
        return new Promise<Duplex>((resolve, reject) => {
          const s = net.connect(echoPort, '127.0.0.1', () => resolve(s));
          s.once('error', reject);
        });
      },
      clock: systemClock,
      logger: silentLogger(),
    },
  );
  await server.listen();
  t.after(() => server.close());
  return { server, connects };
}

/** Connects, writes `hello` (and `extra`), and collects everything until the node closes (or `until` matches). */
function call(port: number, hello: string | Buffer, extra?: Buffer, until?: (got: Buffer) => boolean, timeoutMs = 3_000): Promise<{ got: Buffer; closed: boolean }> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    let done = false;
    const finish = (closed: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      s.destroy();
      resolve({ got: Buffer.concat(chunks), closed });
    };
    const timer = setTimeout(() => finish(false), timeoutMs);
    s.on('error', () => finish(true));
    s.on('data', (c: Buffer) => {
      chunks.push(c);
      if (until?.(Buffer.concat(chunks))) finish(false);
    });
    s.on('close', () => finish(true));
    s.on('connect', () => {
      s.write(hello);
      if (extra) s.write(extra);
    });
  });
}

test('gateway pipe: a good hello is answered OK and bytes flow both ways, including those sent with the hello', async (t) => {
  const echo = await echoServer(t);
  const { server, connects } = await pipeServer(t, echo.port);
  const payload = Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
  const expected = Buffer.concat([Buffer.from('OK\n'), payload]);
  const r = await call(server.port, formatPipeHello({ key: KEY, taskId: 'task-1', attempt: 1 }), payload, (got) => got.length >= expected.length);
  assert.equal(r.got.toString(), expected.toString());
  assert.deepEqual(connects, ['task-1#1']);
  assert.equal(server.counters().relayed, 1);
});

test('gateway pipe: a large transfer is relayed whole both ways (backpressure, no loss)', async (t) => {
  const echo = await echoServer(t);
  const { server } = await pipeServer(t, echo.port);
  const big = Buffer.alloc(8 * 1024 * 1024);
  for (let i = 0; i < big.length; i++) big[i] = i % 251;
  const r = await call(server.port, formatPipeHello({ key: KEY, taskId: 'task-1', attempt: 1 }), big, (got) => got.length >= 3 + big.length, 20_000);
  assert.equal(r.got.length, 3 + big.length);
  assert.ok(r.got.subarray(3).equals(big), 'the echoed bytes are the ones sent');
});

test('gateway pipe: closing the caller closes the replica connection, and close() cuts open pipes', async (t) => {
  const echo = await echoServer(t);
  const { server } = await pipeServer(t, echo.port);
  const s = net.connect(server.port, '127.0.0.1');
  s.on('error', () => undefined);
  await new Promise((r) => s.once('connect', r));
  s.write(formatPipeHello({ key: KEY, taskId: 'task-1', attempt: 1 }));
  await new Promise((r) => s.once('data', r));
  assert.equal(server.counters().open, 1);
  s.destroy();
  await waitFor(() => server.counters().open === 0);

  const s2 = net.connect(server.port, '127.0.0.1');
  s2.on('error', () => undefined);
  await new Promise((r) => s2.once('connect', r));
  s2.write(formatPipeHello({ key: KEY, taskId: 'task-1', attempt: 1 }));
  await new Promise((r) => s2.once('data', r));
  const closed = new Promise((r) => s2.once('close', r));
  await server.close();
  await closed;
  assert.equal(server.listening, false);
});

test('gateway pipe: a replica not running here, or whose port does not answer, gets ERR with the reason', async (t) => {
  const echo = await echoServer(t);
  const { server, connects } = await pipeServer(t, echo.port, {}, new Set(['task-1#1', 'task-deaf#1']));
  const unknown = await call(server.port, formatPipeHello({ key: KEY, taskId: 'task-1', attempt: 2 }));
  assert.equal(unknown.got.toString(), 'ERR replica task-1#2 is not running on this node\n');
  assert.equal(unknown.closed, true);
  const deaf = await call(server.port, formatPipeHello({ key: KEY, taskId: 'task-deaf', attempt: 1 }));
  assert.equal(deaf.got.toString(), 'ERR replica task-deaf#1: port 8080 refused the connection\n');
  assert.deepEqual(connects, ['task-deaf#1'], 'no connect for a replica not running here');
  assert.equal(server.counters().errors, 2);
});

test('gateway pipe: hostile callers are closed without a word', async (t) => {
  const echo = await echoServer(t);
  const { server, connects } = await pipeServer(t, echo.port, { helloTimeoutMs: 300 });
  const cases: [string, string | Buffer, keyof ReturnType<GatewayPipeServer['counters']>['refused']][] = [
    ['gateway pipe: wrong key', formatPipeHello({ key: OTHER_KEY, taskId: 'task-1', attempt: 1 }), 'key'],
    ['gateway pipe: malformed hello', 'GET / HTTP/1.1\r\n\r\n', 'malformed'],
    ['gateway pipe: oversized hello line', Buffer.alloc(PIPE_MAX_LINE_BYTES * 4, 0x41), 'malformed'],
    ['gateway pipe: hello never finished (slow)', 'HIVEMIND-PIPE/1 ', 'timeout'],
    ['gateway pipe: task id with a newline trick', `HIVEMIND-PIPE/1 ${KEY} task-1 1 extra\n`, 'malformed'],
  ];
  for (const [name, hello, why] of cases) {
    const before = server.counters().refused[why];
    const r = await call(server.port, hello);
    const escaped = r.got.length > 0 || !r.closed;
    recordHostile(name, escaped);
    assert.equal(r.got.length, 0, `${name}: no answer`);
    assert.equal(r.closed, true, `${name}: closed`);
    assert.equal(server.counters().refused[why], before + 1, `${name}: counted as ${why}`);
  }
  assert.deepEqual(connects, [], 'no hostile caller reached a replica');
  assert.equal(echo.accepted(), 0);
});

test('gateway pipe: a caller other than the master (tunnel mode) is closed without reading its hello', async (t) => {
  const echo = await echoServer(t);
  const { server, connects } = await pipeServer(t, echo.port, { allowedRemote: '10.8.0.1' });
  const r = await call(server.port, formatPipeHello({ key: KEY, taskId: 'task-1', attempt: 1 }));
  recordHostile('gateway pipe: caller is not the master', r.got.length > 0 || !r.closed);
  assert.equal(r.got.length, 0);
  assert.equal(r.closed, true);
  assert.equal(server.counters().refused.source, 1);
  assert.deepEqual(connects, []);
});

test('gateway pipe: v4-mapped addresses compare as plain IPv4', () => {
  assert.equal(plainAddress('::ffff:10.8.0.1'), '10.8.0.1');
  assert.equal(plainAddress('10.8.0.1'), '10.8.0.1');
  assert.equal(plainAddress('::1'), '::1');
  assert.equal(plainAddress(undefined), '');
});

test('gateway pipe: many concurrent pipes all relay; over the connection bound, the surplus is closed', async (t) => {
  const echo = await echoServer(t);
  const { server } = await pipeServer(t, echo.port);
  const n = 200;
  const results = await Promise.all(
    Array.from({ length: n }, (_, i) => {
      const msg = Buffer.from(`hello from pipe ${i}\n`);
      return call(server.port, formatPipeHello({ key: KEY, taskId: 'task-1', attempt: 1 }), msg, (got) => got.length >= 3 + msg.length, 10_000).then((r) => r.got.toString() === `OK\n${msg.toString()}`);
    }),
  );
  assert.equal(results.filter(Boolean).length, n);

  const small = await pipeServer(t, echo.port, { maxConnections: 3, helloTimeoutMs: 2_000 });
  const holders = await Promise.all([0, 1, 2].map(() => openSocket(small.server.port)));
  await waitFor(() => small.server.counters().refused['over-limit'] === 0);
  const surplus = await call(small.server.port, formatPipeHello({ key: KEY, taskId: 'task-1', attempt: 1 }));
  recordHostile('gateway pipe: connections over the bound', surplus.got.length > 0 || !surplus.closed);
  assert.equal(surplus.got.length, 0);
  assert.equal(surplus.closed, true);
  assert.equal(small.server.counters().refused['over-limit'], 1);
  for (const h of holders) h.destroy();
});

test('gateway pipe: new connections over the per-second rate are closed at once', async (t) => {
  const echo = await echoServer(t);
  const { server } = await pipeServer(t, echo.port, { maxNewPerSecond: 5 });
  const results = await Promise.all(Array.from({ length: 12 }, () => call(server.port, formatPipeHello({ key: KEY, taskId: 'task-1', attempt: 2 }))));
  const refused = server.counters().refused['over-limit'];
  recordHostile('gateway pipe: connection flood', refused < 7 ? 12 - 5 - refused : 0, 12);
  // Five (or, across a second boundary, a few more) were answered; the rest closed unanswered.
  assert.ok(refused >= 1, `some were refused (${refused})`);
  assert.equal(results.filter((r) => r.got.length > 0).length + refused, 12);
});

async function openSocket(port: number): Promise<net.Socket> {
  const s = net.connect(port, '127.0.0.1');
  s.on('error', () => undefined);
  await new Promise((r) => s.once('connect', r));
  return s;
}

async function waitFor(pred: () => boolean, timeoutMs = 3_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 5));
  }
}

test('gateway pipe: per-replica counters: connections, open now and bytes each way, for relayed connections only', async (t) => {
  const echo = await echoServer(t);
  const { server } = await pipeServer(t, echo.port, {}, new Set(['task-1#1', 'task-2#3']));
  const payload = Buffer.alloc(10_000, 7);
  for (let i = 0; i < 2; i++) {
    const r = await call(server.port, formatPipeHello({ key: KEY, taskId: 'task-1', attempt: 1 }), payload, (got) => got.length >= 3 + payload.length);
    assert.equal(r.got.length, 3 + payload.length);
  }
  await call(server.port, formatPipeHello({ key: KEY, taskId: 'task-2', attempt: 3 }), Buffer.from('hi'), (got) => got.length >= 5);
  // Refused and ERR-answered callers never reach a replica: not its traffic.
  await call(server.port, formatPipeHello({ key: OTHER_KEY, taskId: 'task-1', attempt: 1 }));
  await call(server.port, formatPipeHello({ key: KEY, taskId: 'task-9', attempt: 1 }));
  await waitFor(() => server.counters().open === 0);
  const byTask = new Map(server.counters().replicas.map((r) => [`${r.taskId}#${r.attempt}`, r]));
  assert.deepEqual([...byTask.keys()].sort(), ['task-1#1', 'task-2#3']);
  assert.deepEqual(byTask.get('task-1#1'), { taskId: 'task-1', attempt: 1, connections: 2, open: 0, bytesIn: 2 * payload.length, bytesOut: 2 * payload.length });
  assert.deepEqual(byTask.get('task-2#3'), { taskId: 'task-2', attempt: 3, connections: 1, open: 0, bytesIn: 2, bytesOut: 2 });
});

test('gateway pipe: an open connection shows in its replica counters until it closes', async (t) => {
  const echo = await echoServer(t);
  const { server } = await pipeServer(t, echo.port);
  const s = net.connect(server.port, '127.0.0.1');
  s.on('error', () => undefined);
  await new Promise((r) => s.once('connect', r));
  s.write(formatPipeHello({ key: KEY, taskId: 'task-1', attempt: 1 }));
  await new Promise((r) => s.once('data', r));
  assert.equal(server.counters().replicas[0]?.open, 1);
  s.destroy();
  await waitFor(() => server.counters().replicas[0]?.open === 0);
  assert.equal(server.counters().replicas[0]?.connections, 1);
});

test('gateway pipe: per-replica counters are bounded; idle attempts are forgotten first, never one with a connection open', async (t) => {
  const echo = await echoServer(t);
  const { server } = await pipeServer(t, echo.port, { maxTrackedReplicas: 2 }, new Set(['a#1', 'b#1', 'c#1']));
  const busy = net.connect(server.port, '127.0.0.1');
  busy.on('error', () => undefined);
  t.after(() => busy.destroy());
  await new Promise((r) => busy.once('connect', r));
  busy.write(formatPipeHello({ key: KEY, taskId: 'a', attempt: 1 }));
  await new Promise((r) => busy.once('data', r));
  for (const id of ['b', 'c']) await call(server.port, formatPipeHello({ key: KEY, taskId: id, attempt: 1 }), Buffer.from('x'), (got) => got.length >= 4);
  await waitFor(() => server.counters().open === 1);
  assert.deepEqual(server.counters().replicas.map((r) => r.taskId).sort(), ['a', 'c'], 'b was idle and least recently used; a is open');
});
