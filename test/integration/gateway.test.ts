// The gateway for real: real sockets, a real HTTP replica behind a fake node that speaks the
// gateway pipe protocol (checks the key, answers OK or ERR, then relays bytes), a fake directory.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer } from 'node:http';
import { connect, createServer as createTcpServer, type Server as TcpServer, type Socket } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '../../src/common/logger.js';
import { Master } from '../../src/master/master.js';
import { Gateway } from '../../src/master/gateway/gateway.js';
import type { GatewayDirectory, GatewayService, NodePipeAddress } from '../../src/master/gateway/gateway-directory.js';
import { formatPipeError, parsePipeHello, pipeKeyMatches, PIPE_OK } from '../../src/protocol/gateway-pipe.js';
import { recordHostile } from '../helpers/fault-ledger.js';
import { masterStoreOption } from '../helpers/test-store.js';

const KEY = 'a'.repeat(64);
const GOOD = 'hmsvc_good';
const REVOKED = 'hmsvc_revoked';

/** What the replicas saw. */
const seen = { closedHang: 0, headers: [] as IncomingMessage['headers'][], helloTasks: [] as string[] };

/** A replica: a plain HTTP server named `who`. */
function replicaServer(who: string): HttpServer {
  const server = createHttpServer((req, res) => {
    const url = req.url ?? '/';
    if (url === '/who') {
      setTimeout(() => res.end(who), 300);
    } else if (url === '/stream') {
      res.writeHead(200, { 'Content-Type': 'text/event-stream' });
      let n = 0;
      const timer = setInterval(() => {
        res.write(`data: ${n}\n\n`);
        if (++n === 5) {
          clearInterval(timer);
          res.end();
        }
      }, 100);
      res.on('close', () => clearInterval(timer));
    } else if (url === '/echo') {
      res.writeHead(200, { 'Content-Type': 'application/octet-stream' });
      req.pipe(res);
    } else if (url === '/hang') {
      res.on('close', () => seen.closedHang++);
    } else if (url.startsWith('/headers')) {
      seen.headers.push(req.headers);
      res.end(JSON.stringify({ url }));
    } else if (url === '/die') {
      res.writeHead(200, { 'Content-Length': '1000' });
      res.write('partial');
      setTimeout(() => req.socket.destroy(), 50);
    } else {
      res.writeHead(500);
      res.end('boom');
    }
  });
  server.on('upgrade', (req: IncomingMessage, socket: Socket) => {
    const accept = createHash('sha1').update(`${req.headers['sec-websocket-key']}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
    socket.write(wsFrame(`hello from ${who}${req.headers.authorization ? ' (saw a token!)' : ''}`));
    // Echo the client's first (masked) text frame back, unmasked.
    socket.once('data', (d: Buffer) => socket.write(wsFrame(`echo ${unmask(d)}`)));
  });
  return server;
}

function wsFrame(text: string, mask?: Buffer): Buffer {
  const payload = Buffer.from(text);
  const head = Buffer.from([0x81, (mask ? 0x80 : 0) | payload.length]);
  if (!mask) return Buffer.concat([head, payload]);
  return Buffer.concat([head, mask, Buffer.from(payload.map((b, i) => b ^ mask[i % 4]!))]);
}

function unmask(frame: Buffer): string {
  const len = frame[1]! & 0x7f;
  const mask = frame.subarray(2, 6);
  return Buffer.from(frame.subarray(6, 6 + len).map((b, i) => b ^ mask[i % 4]!)).toString();
}

/** A node's pipe in front of a replica: checks the hello and the key, then relays; or refuses. */
function fakeNode(upstreamPort: () => number, mode: { refuse?: string }): TcpServer {
  return createTcpServer((s) => {
    let buf = Buffer.alloc(0);
    const onData = (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      const nl = buf.indexOf(0x0a);
      if (nl === -1) return;
      s.off('data', onData);
      const hello = parsePipeHello(buf.subarray(0, nl).toString());
      if ('error' in hello) return void s.end(formatPipeError(hello.error));
      if (!pipeKeyMatches(hello.key, KEY)) return void s.end(formatPipeError('wrong key'));
      seen.helloTasks.push(hello.taskId);
      if (mode.refuse) return void s.end(formatPipeError(mode.refuse));
      const up = connect(upstreamPort(), '127.0.0.1', () => {
        s.write(PIPE_OK);
        const rest = buf.subarray(nl + 1);
        if (rest.length) up.write(rest);
        s.pipe(up);
        up.pipe(s);
      });
      up.on('error', () => s.destroy());
      s.on('error', () => up.destroy());
      s.on('close', () => up.destroy());
      up.on('close', () => s.destroy());
    };
    s.on('data', onData);
  });
}

const listenOn = (srv: HttpServer | TcpServer) => new Promise<number>((resolve) => srv.listen(0, '127.0.0.1', () => resolve((srv.address() as { port: number }).port)));

const services = new Map<string, GatewayService>();
const pipes = new Map<string, NodePipeAddress>();
const directory: GatewayDirectory = {
  service: (name) => services.get(name),
  tokenAllows: (_service, token) => token === GOOD,
  pipeOf: (nodeId) => pipes.get(nodeId),
};

let gateway: Gateway;
let base: string;
const closers: (() => Promise<unknown> | void)[] = [];

before(async () => {
  for (const [node, mode] of [['n-a', {}], ['n-b', {}], ['n-refusing', { refuse: 'replica t-r is not running on this node' }]] as const) {
    const upstream = replicaServer(node);
    const upPort = await listenOn(upstream);
    const pipe = fakeNode(() => upPort, mode);
    const pipePort = await listenOn(pipe);
    pipes.set(node, { host: '127.0.0.1', port: pipePort, key: KEY });
    closers.push(() => { upstream.closeAllConnections(); upstream.close(); pipe.close(); });
  }
  // A node whose pipe is closed: connect refused.
  const dead = createTcpServer();
  const deadPort = await listenOn(dead);
  await new Promise((r) => dead.close(r));
  pipes.set('n-dead', { host: '127.0.0.1', port: deadPort, key: KEY });

  // Hostile nodes: one answers a line that never ends, one never answers at all.
  const garbage = createTcpServer((sock) => { sock.on('error', () => undefined); sock.write('X'.repeat(4096)); });
  const silent = createTcpServer((sock) => { sock.on('error', () => undefined); });
  pipes.set('n-garbage', { host: '127.0.0.1', port: await listenOn(garbage), key: KEY });
  pipes.set('n-silent', { host: '127.0.0.1', port: await listenOn(silent), key: KEY });
  closers.push(() => { garbage.close(); silent.close(); });
  services.set('hostile', { name: 'hostile', public: true, replicas: [{ index: 0, taskId: 't-g', attempt: 1, nodeId: 'n-garbage', healthy: true }, { index: 1, taskId: 't-q', attempt: 1, nodeId: 'n-silent', healthy: true }] });

  services.set('web', { name: 'web', public: false, replicas: [{ index: 0, taskId: 't-a', attempt: 1, nodeId: 'n-a', healthy: true }] });
  services.set('pair', { name: 'pair', public: true, replicas: [{ index: 0, taskId: 't-pa', attempt: 1, nodeId: 'n-a', healthy: true }, { index: 1, taskId: 't-pb', attempt: 2, nodeId: 'n-b', healthy: true }] });
  services.set('sick', { name: 'sick', public: true, replicas: [{ index: 0, taskId: 't-s', attempt: 1, nodeId: 'n-a', healthy: false }] });
  services.set('flaky', { name: 'flaky', public: true, replicas: [{ index: 0, taskId: 't-r', attempt: 1, nodeId: 'n-refusing', healthy: true }, { index: 1, taskId: 't-ok', attempt: 1, nodeId: 'n-b', healthy: true }] });
  services.set('down', { name: 'down', public: true, replicas: [{ index: 0, taskId: 't-r2', attempt: 1, nodeId: 'n-refusing', healthy: true }, { index: 1, taskId: 't-d', attempt: 1, nodeId: 'n-dead', healthy: true }] });

  gateway = new Gateway({ directory, logger: silentLogger(), listen: { host: '127.0.0.1', port: 0 }, limits: { headersTimeoutMs: 500, connectionsCheckIntervalMs: 100, maxPathBytes: 2048, dialTimeoutMs: 500 } });
  base = (await gateway.start()).url;
});

after(async () => {
  await gateway.close();
  for (const c of closers) await c();
});

const auth = { Authorization: `Bearer ${GOOD}` };

async function body(res: Response): Promise<string> {
  return await res.text();
}

test('a request reaches the replica under its own path, query kept, token stripped, X-Forwarded-* set', async () => {
  const res = await fetch(`${base}/s/web/headers/x?q=1`, { headers: { ...auth, 'X-Forwarded-Proto': 'https' } });
  assert.equal(res.status, 200);
  assert.deepEqual(JSON.parse(await body(res)), { url: '/headers/x?q=1' });
  const h = seen.headers.at(-1)!;
  assert.equal(h.authorization, undefined, 'the replica never sees the client token');
  assert.equal(h['x-forwarded-prefix'], '/s/web');
  assert.match(String(h['x-forwarded-for']), /127\.0\.0\.1$/);
  assert.ok(seen.helloTasks.includes('t-a'));
  const t = gateway.traffic.replica('t-a');
  assert.ok(t && t.requests >= 1 && t.inFlight === 0);
});

test('a stream arrives chunk by chunk: the first line long before the replica finished', async () => {
  const started = Date.now();
  const res = await fetch(`${base}/s/web/stream`, { headers: auth });
  assert.equal(res.headers.get('content-type'), 'text/event-stream');
  const reader = res.body!.getReader();
  const first = await reader.read();
  const firstAt = Date.now() - started;
  assert.match(new TextDecoder().decode(first.value), /^data: 0\n\n/);
  let all = new TextDecoder().decode(first.value);
  for (;;) {
    const r = await reader.read();
    if (r.done) break;
    all += new TextDecoder().decode(r.value);
  }
  const lastAt = Date.now() - started;
  assert.equal(all, 'data: 0\n\ndata: 1\n\ndata: 2\n\ndata: 3\n\ndata: 4\n\n');
  // The replica takes 400 ms from its first line to its last: buffering would bring them together.
  assert.ok(lastAt - firstAt >= 250, `first chunk at ${firstAt} ms, end at ${lastAt} ms: not buffered`);
});

test('a streamed POST body is echoed back as it goes', async () => {
  const big = Buffer.alloc(3 * 1024 * 1024, 7);
  const res = await fetch(`${base}/s/web/echo`, { method: 'POST', headers: auth, body: new Blob([big]).stream(), duplex: 'half' } as RequestInit);
  assert.equal(res.status, 200);
  const got = Buffer.from(await res.arrayBuffer());
  assert.equal(got.length, big.length);
  assert.ok(got.equals(big));
});

test('a client that goes away closes the replica\'s request', async () => {
  const before = seen.closedHang;
  const ac = new AbortController();
  const pending = fetch(`${base}/s/web/hang`, { headers: auth, signal: ac.signal }).catch((e: unknown) => e);
  await waitFor(() => (gateway.traffic.replica('t-a')?.inFlight ?? 0) > 0);
  ac.abort();
  await pending;
  await waitFor(() => seen.closedHang > before);
  await waitFor(() => gateway.traffic.replica('t-a')?.inFlight === 0);
});

test('a client that aborts its upload closes the replica\'s request', async () => {
  const before = seen.closedHang;
  const ac = new AbortController();
  const upload = new ReadableStream<Uint8Array>({ start: (c) => c.enqueue(new Uint8Array(1024)) }); // and never ends
  const pending = fetch(`${base}/s/web/hang`, { method: 'POST', headers: auth, body: upload, duplex: 'half', signal: ac.signal } as RequestInit).catch((e: unknown) => e);
  await waitFor(() => (gateway.traffic.replica('t-a')?.inFlight ?? 0) > 0);
  ac.abort();
  await pending;
  await waitFor(() => seen.closedHang > before);
});

test('hostile nodes: an answer line that never ends and a pipe that never answers are 502, in bounded time', async () => {
  const started = Date.now();
  const res = await fetch(`${base}/s/hostile/`);
  const message = (JSON.parse(await body(res)) as { error: { message: string } }).error.message;
  recordHostile('gateway: node pipe answers garbage / never answers', res.status !== 502);
  assert.equal(res.status, 502);
  assert.match(message, /no answer line within 512 bytes|did not answer within 500 ms/);
  assert.ok(Date.now() - started < 3000);
  assert.equal(gateway.traffic.replica('t-g')?.errors, 1);
  assert.equal(gateway.traffic.replica('t-q')?.errors, 1);
});

test('past the per-service limit 429, past the gateway\'s 503, both with Retry-After', async () => {
  for (const [limits, status] of [[{ maxServiceRequests: 1 }, 429], [{ maxRequests: 1 }, 503]] as const) {
    const small = new Gateway({ directory, logger: silentLogger(), listen: { host: '127.0.0.1', port: 0 }, limits });
    const url = (await small.start()).url;
    try {
      const ac = new AbortController();
      const held = fetch(`${url}/s/web/hang`, { headers: auth, signal: ac.signal }).catch((e: unknown) => e);
      await waitFor(() => small.traffic.serviceInFlight('web') === 1);
      const res = await fetch(`${url}/s/web/headers`, { headers: auth });
      recordHostile(`gateway: request past the ${status === 429 ? 'per-service' : 'gateway'} limit`, res.status !== status);
      assert.equal(res.status, status);
      assert.equal(res.headers.get('retry-after'), '1');
      ac.abort();
      await held;
    } finally {
      await small.close();
    }
  }
});

test('a replica that dies mid-response cuts the client off, counted as an error', async () => {
  const errorsBefore = gateway.traffic.service('web')?.errors ?? 0;
  const res = await fetch(`${base}/s/web/die`, { headers: auth });
  assert.equal(res.status, 200);
  await assert.rejects(res.arrayBuffer(), 'the body is cut, not complete');
  await waitFor(() => (gateway.traffic.service('web')?.errors ?? 0) > errorsBefore);
});

test('a replica\'s 5xx goes through and counts as an error', async () => {
  const errorsBefore = gateway.traffic.service('web')?.errors ?? 0;
  const res = await fetch(`${base}/s/web/nothing-here`, { headers: auth });
  assert.equal(res.status, 500);
  assert.equal(await body(res), 'boom');
  await waitFor(() => gateway.traffic.service('web')?.errors === errorsBefore + 1);
});

test('missing, wrong and revoked tokens are 401 with a Bearer challenge; public services need none', async () => {
  const cases = [
    { what: 'no token', headers: {} as Record<string, string> },
    { what: 'wrong token', headers: { Authorization: 'Bearer hmsvc_wrong' } },
    { what: 'revoked token', headers: { Authorization: `Bearer ${REVOKED}` } },
    { what: 'Basic credentials', headers: { Authorization: 'Basic dXNlcjpwdw==' } },
  ];
  for (const c of cases) {
    const res = await fetch(`${base}/s/web/headers`, { headers: c.headers });
    recordHostile(`gateway: ${c.what}`, res.status !== 401);
    assert.equal(res.status, 401, c.what);
    assert.match(res.headers.get('www-authenticate') ?? '', /^Bearer /);
    assert.equal((JSON.parse(await body(res)) as { error: { code: string } }).error.code, 'UNAUTHENTICATED');
  }
  assert.equal((await fetch(`${base}/s/pair/headers`)).status, 200);
});

test('unknown service 404, no healthy replica 503 with Retry-After, malformed path 400, bare /s/NAME redirects', async () => {
  assert.equal((await fetch(`${base}/s/nope/`, { headers: auth })).status, 404);
  assert.equal((await fetch(`${base}/`)).status, 404);
  const sick = await fetch(`${base}/s/sick/`);
  assert.equal(sick.status, 503);
  assert.equal(sick.headers.get('retry-after'), '5');
  assert.equal((await fetch(`${base}/s/Bad_Name/`)).status, 400);
  const bare = await fetch(`${base}/s/pair?x=1`, { redirect: 'manual' });
  assert.equal(bare.status, 308);
  assert.equal(bare.headers.get('location'), '/s/pair/?x=1');
});

test('a pipe that refuses is passed over for another replica; when all fail, 502 with the reason', async () => {
  const res = await fetch(`${base}/s/flaky/who`);
  assert.equal(res.status, 200);
  // Whichever was picked first, the answer came from the working node.
  assert.equal(await body(res), 'n-b');
  const down = await fetch(`${base}/s/down/who`);
  assert.equal(down.status, 502);
  const err = (JSON.parse(await body(down)) as { error: { message: string } }).error.message;
  assert.match(err, /cannot be reached|not running on this node/);
  assert.equal(gateway.traffic.service('down')?.errors, 1);
});

test('concurrent requests spread over the replicas by requests in flight', async () => {
  const answers = await Promise.all([0, 1, 2, 3].map(async () => body(await fetch(`${base}/s/pair/who`))));
  assert.deepEqual(answers.sort(), ['n-a', 'n-a', 'n-b', 'n-b']);
});

test('a WebSocket upgrade is relayed both ways, without the client token', async () => {
  const s = connect(Number(new URL(base).port), '127.0.0.1');
  const got: Buffer[] = [];
  s.on('data', (d: Buffer) => got.push(d));
  s.write(`GET /s/web/ws HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer ${GOOD}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`);
  await waitFor(() => Buffer.concat(got).includes('hello from n-a'));
  const text = Buffer.concat(got).toString('latin1');
  assert.match(text, /^HTTP\/1\.1 101 Switching Protocols\r\n/);
  assert.match(text, /Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK\+xOo=/);
  assert.ok(!text.includes('saw a token'), 'the replica never sees the client token');
  s.write(wsFrame('ping', Buffer.from([1, 2, 3, 4])));
  await waitFor(() => Buffer.concat(got).includes('echo ping'));
  s.destroy();
});

test('an upgrade without a token is refused 401 on the raw socket', async () => {
  const answer = await rawExchange(`GET /s/web/ws HTTP/1.1\r\nHost: gw\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n`);
  recordHostile('gateway: upgrade without a token', !answer.startsWith('HTTP/1.1 401'));
  assert.match(answer, /^HTTP\/1\.1 401 Unauthorized\r\n/);
});

test('hostile: a huge path is 414 (or 431 past Node\'s head bound), never forwarded', async () => {
  const before = seen.headers.length;
  const res = await fetch(`${base}/s/web/headers/${'x'.repeat(4000)}`, { headers: auth });
  recordHostile('gateway: 4 KB path', res.status !== 414);
  assert.equal(res.status, 414);
  const huge = await rawExchange(`GET /s/web/headers/${'x'.repeat(40_000)} HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer ${GOOD}\r\n\r\n`);
  recordHostile('gateway: 40 KB path', !huge.startsWith('HTTP/1.1 431'));
  assert.match(huge, /^HTTP\/1\.1 431 /);
  assert.equal(seen.headers.length, before);
});

test('hostile: a client trickling its request head is cut at the headers timeout', async () => {
  const s = connect(Number(new URL(base).port), '127.0.0.1');
  const started = Date.now();
  let answer = '';
  let reset: NodeJS.ErrnoException | undefined;
  const drip = setInterval(() => s.write('X-Slow: 1\r\n'), 100);
  // The drip stops at the answer; one already on its way when the server closes makes its kernel
  // reset the connection, and a reset can take the 408 with it: a cut is a cut either way.
  s.on('data', (d: Buffer) => {
    answer += d.toString();
    clearInterval(drip);
  });
  s.on('error', (err: NodeJS.ErrnoException) => (reset = err));
  s.write('GET /s/web/headers HTTP/1.1\r\n');
  await new Promise<void>((resolve) => s.once('close', () => resolve()));
  clearInterval(drip);
  const heldMs = Date.now() - started;
  recordHostile('gateway: slowloris request head', heldMs > 3000);
  assert.ok(heldMs < 3000, `held ${heldMs} ms`);
  if (answer === '') assert.equal(reset?.code, 'ECONNRESET', `closed with no answer: ${reset?.message ?? 'no 408, no reset'}`);
  else assert.match(answer, /^HTTP\/1\.1 408 /);
});

test('/metrics with a metrics source: per-replica and per-service traffic to the admin token; without one it is no route', async () => {
  const withMetrics = new Gateway({
    directory,
    logger: silentLogger(),
    listen: { host: '127.0.0.1', port: 0 },
    metrics: { isAdminToken: (t) => t === 'hmadm_secret', services: () => [{ name: 'pair', wanted: 3 }, { name: 'sick', wanted: 1 }] },
  });
  const url = (await withMetrics.start()).url;
  try {
    for (let i = 0; i < 4; i++) {
      const r = await fetch(`${url}/s/pair/headers`);
      assert.equal(r.status, 200);
      await r.text();
    }
    const refusedRes = await fetch(`${url}/metrics`, { headers: { authorization: `Bearer ${GOOD}` } });
    recordHostile('gateway /metrics: a service token', refusedRes.status !== 401);
    assert.equal(refusedRes.status, 401);
    await refusedRes.text();
    const res = await fetch(`${url}/metrics?x=1`, { headers: { authorization: 'Bearer hmadm_secret' } });
    const text = await res.text();
    assert.equal(res.status, 200, text);
    const value = (line: string) => Number(new RegExp(`^${line.replace(/[{}()[\]|.+*?^$\\]/g, '\\$&')} (\\S+)$`, 'm').exec(text)?.[1]);
    assert.equal(value('hivemind_gateway_replica_requests_total{service="pair",replica="0",task="t-pa"}') + value('hivemind_gateway_replica_requests_total{service="pair",replica="1",task="t-pb"}'), 4);
    assert.equal(value('hivemind_gateway_requests_total{service="pair"}'), 4);
    assert.equal(value('hivemind_gateway_errors_total{service="pair"}'), 0);
    assert.equal(value('hivemind_gateway_in_flight{service="pair"}'), 0);
    assert.ok(value('hivemind_gateway_latency_p99_ms{service="pair"}') >= 0);
    assert.equal(value('hivemind_service_replicas_wanted{service="pair"}'), 3);
    assert.equal(value('hivemind_service_replicas_placed{service="pair"}'), 2);
    assert.equal(value('hivemind_service_replicas_healthy{service="pair"}'), 2);
    assert.equal(value('hivemind_service_replicas_healthy{service="sick"}'), 0);
  } finally {
    await withMetrics.close();
  }
  const plain = await fetch(`${base}/metrics`, { headers: { authorization: 'Bearer hmadm_secret' } });
  assert.equal(plain.status, 404, 'a gateway without a metrics source has no /metrics');
  await plain.text();
});

test('a master given a directory runs the gateway from start to close; "off" runs none', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'hm-gw-master-'));
  try {
    const m = await Master.create({ dataDir: join(dir, 'a'), listenAddress: '127.0.0.1:0', gatewayListen: '127.0.0.1:0', ...masterStoreOption() }, { gatewayDirectory: directory });
    await m.start();
    const url = m.gatewayUrl!;
    assert.match(url, /^http:\/\/127\.0\.0\.1:\d+$/);
    const res = await fetch(`${url}/s/pair/headers`);
    assert.equal(res.status, 200);
    await res.text();
    await m.close();
    await assert.rejects(fetch(`${url}/s/pair/headers`), 'closed with the master');
    const off = await Master.create({ dataDir: join(dir, 'b'), listenAddress: '127.0.0.1:0', gatewayListen: 'off', ...masterStoreOption() }, { gatewayDirectory: directory });
    await off.start();
    assert.equal(off.gatewayUrl, undefined);
    await off.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

function rawExchange(text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(Number(new URL(base).port), '127.0.0.1');
    let answer = '';
    s.on('data', (d: Buffer) => (answer += d.toString('latin1')));
    s.on('error', reject);
    s.on('close', () => resolve(answer));
    s.write(text);
    setTimeout(() => s.end(), 500);
  });
}

async function waitFor(cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}
