import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock } from '../../src/common/clock.js';
import { bearerToken, parseGatewayPath } from '../../src/master/gateway/gateway-path.js';
import { pickReplica } from '../../src/master/gateway/replica-pick.js';
import { GatewayTraffic, LATENCY_WINDOW, percentile, renderTrafficMetrics } from '../../src/master/gateway/gateway-traffic.js';
import { renderGatewayMetrics } from '../../src/master/gateway/gateway-metrics.js';
import { downstreamResponseHeaders, upstreamRequestHeaders } from '../../src/master/gateway/forwarded-headers.js';
import type { GatewayReplica } from '../../src/master/gateway/gateway-directory.js';

test('a gateway path names its service and keeps the rest, query included, for the replica', () => {
  assert.deepEqual(parseGatewayPath('/s/web/api/x?q=1&r=/s/other/', 8192), { kind: 'forward', service: 'web', path: '/api/x?q=1&r=/s/other/', prefix: '/s/web' });
  assert.deepEqual(parseGatewayPath('/s/web/', 8192), { kind: 'forward', service: 'web', path: '/', prefix: '/s/web' });
  assert.deepEqual(parseGatewayPath('/s/a-1/..%2f', 8192), { kind: 'forward', service: 'a-1', path: '/..%2f', prefix: '/s/a-1' });
});

test('/s/NAME without its slash redirects below it, query kept', () => {
  assert.deepEqual(parseGatewayPath('/s/web', 8192), { kind: 'redirect', location: '/s/web/' });
  assert.deepEqual(parseGatewayPath('/s/web?x=1', 8192), { kind: 'redirect', location: '/s/web/?x=1' });
});

test('paths outside /s/, malformed names and overlong targets are refused with their status', () => {
  const status = (t: string) => {
    const r = parseGatewayPath(t, 64);
    return r.kind === 'refuse' ? r.status : r.kind;
  };
  assert.equal(status('/'), 404);
  assert.equal(status('/metrics'), 404);
  assert.equal(status('/s/'), 400);
  assert.equal(status('/s//x'), 400);
  assert.equal(status('/s/Web/'), 400);
  assert.equal(status('/s/%77eb/'), 400);
  assert.equal(status('/s/-web/'), 400);
  assert.equal(status(`/s/${'a'.repeat(64)}/`), 414, 'over the 64-byte bound');
  assert.equal(parseGatewayPath(`/s/${'a'.repeat(64)}/`, 8192).kind, 'refuse', 'a 64-character name is one too many');
  assert.equal(parseGatewayPath(`/s/${'a'.repeat(63)}/`, 8192).kind, 'forward');
  assert.equal(status('http://evil.example/s/web/'), 400);
  assert.equal(status('*'), 400);
});

test('a bearer token is read from its header; anything else is no token', () => {
  assert.equal(bearerToken('Bearer hmsvc_abc'), 'hmsvc_abc');
  assert.equal(bearerToken('bearer  hmsvc_abc '), 'hmsvc_abc');
  for (const h of [undefined, '', 'Basic dXNlcjpwdw==', 'Bearer', 'Bearer a b', 'Bearerhmsvc']) assert.equal(bearerToken(h), undefined, String(h));
});

const replica = (index: number, healthy = true): GatewayReplica => ({ index, taskId: `t${index}`, attempt: 1, nodeId: `n${index}`, healthy });

test('the pick takes the healthy replica with the fewest requests in flight', () => {
  const load: Record<string, number> = { t0: 3, t1: 1, t2: 0 };
  const rs = [replica(0), replica(1), replica(2, false)];
  assert.equal(pickReplica(rs, (id) => load[id] ?? 0, 0)?.taskId, 't1', 't2 is idle but unhealthy');
  assert.equal(pickReplica(rs, (id) => load[id] ?? 0, 0, new Set(['t1']))?.taskId, 't0', 'a replica already tried is passed over');
  assert.equal(pickReplica([replica(0, false)], () => 0, 0), undefined);
  assert.equal(pickReplica([], () => 0, 0), undefined);
});

test('equal loads take turns as the cursor advances', () => {
  const rs = [replica(0), replica(1), replica(2)];
  const picks = [0, 1, 2, 3, 4, 5].map((c) => pickReplica(rs, () => 0, c)?.taskId);
  assert.deepEqual(picks, ['t0', 't1', 't2', 't0', 't1', 't2']);
});

test('percentiles are nearest-rank; none is 0', () => {
  assert.equal(percentile([], 0.5), 0);
  assert.equal(percentile([7], 0.99), 7);
  const hundred = Array.from({ length: 100 }, (_, i) => i + 1);
  assert.equal(percentile(hundred, 0.5), 50);
  assert.equal(percentile(hundred, 0.99), 99);
});

test('traffic counts requests, errors, in flight and head latency per replica and per service', () => {
  const clock = new ManualClock();
  const t = new GatewayTraffic(clock);
  assert.equal(t.replica('t0'), undefined);
  const s = t.startService('web');
  const r = t.startReplica('t0');
  assert.equal(t.inFlight('t0'), 1);
  assert.equal(t.serviceInFlight('web'), 1);
  clock.advance(40);
  r.head();
  s.head();
  clock.advance(1000);
  r.head(); // once only
  r.end(true);
  s.end(true);
  r.end(false); // once only
  assert.deepEqual(t.replica('t0'), { requests: 1, errors: 1, inFlight: 0, latencyP50Ms: 40, latencyP99Ms: 40 });
  assert.deepEqual(t.service('web'), { requests: 1, errors: 1, inFlight: 0, latencyP50Ms: 40, latencyP99Ms: 40 });
});

test('latency covers the last 1024 requests only', () => {
  const clock = new ManualClock();
  const t = new GatewayTraffic(clock);
  const one = (ms: number) => {
    const r = t.startReplica('t0');
    clock.advance(ms);
    r.head();
    r.end(false);
  };
  for (let i = 0; i < LATENCY_WINDOW; i++) one(1000);
  for (let i = 0; i < LATENCY_WINDOW; i++) one(5);
  assert.equal(t.replica('t0')?.latencyP99Ms, 5, 'the slow ones fell out of the window');
  assert.equal(t.replica('t0')?.requests, 2 * LATENCY_WINDOW);
});

test('traffic forgets idle replicas past its bound, never one with requests in flight', () => {
  const t = new GatewayTraffic(new ManualClock(), 2);
  const busy = t.startReplica('a');
  t.startReplica('b').end(false);
  t.startReplica('c').end(false);
  assert.ok(t.replica('a'), 'a is busy: kept');
  assert.equal(t.replica('b'), undefined, 'b was the idle least recently used');
  assert.ok(t.replica('c'));
  busy.end(false);
});

test('metrics render per service in the Prometheus text format', () => {
  const t = new GatewayTraffic(new ManualClock());
  t.startService('web').end(true);
  const text = renderTrafficMetrics(t);
  assert.match(text, /^# TYPE hivemind_gateway_requests_total counter$/m);
  assert.match(text, /^hivemind_gateway_requests_total\{service="web"\} 1$/m);
  assert.match(text, /^hivemind_gateway_errors_total\{service="web"\} 1$/m);
  assert.match(text, /^hivemind_gateway_in_flight\{service="web"\} 0$/m);
});

test('the replica never sees the client token; hop-by-hop headers stop; X-Forwarded-* are the gateway\'s', () => {
  const raw = ['Host', 'gw.example', 'Authorization', 'Bearer hmsvc_secret', 'Connection', 'keep-alive, X-Drop', 'X-Drop', '1', 'Keep-Alive', '5', 'X-Forwarded-For', '10.0.0.9', 'X-Forwarded-Proto', 'https', 'X-Forwarded-Prefix', '/evil', 'Content-Type', 'text/plain', 'Transfer-Encoding', 'chunked'];
  const out = upstreamRequestHeaders(raw, { remoteAddress: '192.0.2.1', host: 'gw.example', prefix: '/s/web', trustForwarded: false, upgrade: false });
  const get = (name: string) => { const vals: string[] = []; for (let i = 0; i < out.length; i += 2) if (out[i]!.toLowerCase() === name) vals.push(out[i + 1]!); return vals; };
  assert.deepEqual(get('authorization'), []);
  assert.deepEqual(get('connection'), []);
  assert.deepEqual(get('x-drop'), [], 'named in Connection: hop-by-hop');
  assert.deepEqual(get('keep-alive'), []);
  assert.deepEqual(get('x-forwarded-for'), ['10.0.0.9, 192.0.2.1']);
  assert.deepEqual(get('x-forwarded-proto'), ['http'], 'an untrusted peer cannot claim https');
  assert.deepEqual(get('x-forwarded-host'), ['gw.example']);
  assert.deepEqual(get('x-forwarded-prefix'), ['/s/web']);
  assert.deepEqual(get('content-type'), ['text/plain']);
  assert.deepEqual(get('transfer-encoding'), ['chunked'], 'the body is re-framed the same way');

  const proxied = upstreamRequestHeaders(raw, { remoteAddress: '127.0.0.1', host: 'gw.example', prefix: '/s/web', trustForwarded: true, upgrade: false });
  assert.ok(proxied.includes('https'), 'a local TLS proxy\'s X-Forwarded-Proto is kept');

  const up = upstreamRequestHeaders(['Host', 'h', 'Connection', 'Upgrade', 'Upgrade', 'websocket', 'Authorization', 'Bearer x'], { remoteAddress: '192.0.2.1', host: 'h', prefix: '/s/web', trustForwarded: false, upgrade: true });
  assert.ok(up.includes('Upgrade') && up.includes('websocket'), 'an upgrade keeps Connection and Upgrade');
  assert.ok(!up.includes('Bearer x'));
});

test('response headers lose their hop-by-hop ones only', () => {
  const out = downstreamResponseHeaders(['Content-Type', 'text/event-stream', 'Connection', 'close', 'Keep-Alive', 'timeout=5', 'Set-Cookie', 'a=1', 'Set-Cookie', 'b=2']);
  assert.deepEqual(out, ['Content-Type', 'text/event-stream', 'Set-Cookie', 'a=1', 'Set-Cookie', 'b=2']);
});

test('master metrics: replicas wanted, placed and healthy per service; per-replica traffic with zeros before the first request; service families kept', () => {
  const t = new GatewayTraffic(new ManualClock());
  const r = t.startReplica('t-b');
  r.head();
  r.end(true);
  t.startService('web').end(true);
  const text = renderGatewayMetrics(t, [
    { name: 'web', wanted: 3, replicas: [{ index: 1, taskId: 't-b', attempt: 1, nodeId: 'n', healthy: false }, { index: 0, taskId: 't-a', attempt: 2, nodeId: 'n', healthy: true }] },
    { name: 'api', wanted: 0, replicas: [] },
  ]);
  for (const line of [
    '# TYPE hivemind_service_replicas_wanted gauge',
    'hivemind_service_replicas_wanted{service="api"} 0',
    'hivemind_service_replicas_wanted{service="web"} 3',
    'hivemind_service_replicas_placed{service="web"} 2',
    'hivemind_service_replicas_healthy{service="web"} 1',
    '# TYPE hivemind_gateway_replica_requests_total counter',
    'hivemind_gateway_replica_requests_total{service="web",replica="0",task="t-a"} 0',
    'hivemind_gateway_replica_requests_total{service="web",replica="1",task="t-b"} 1',
    'hivemind_gateway_replica_errors_total{service="web",replica="1",task="t-b"} 1',
    'hivemind_gateway_replica_in_flight{service="web",replica="1",task="t-b"} 0',
    'hivemind_gateway_replica_latency_p50_ms{service="web",replica="1",task="t-b"} 0',
    'hivemind_gateway_requests_total{service="web"} 1',
  ]) {
    assert.ok(text.split('\n').includes(line), `has ${line}\n${text}`);
  }
  assert.ok(text.indexOf('task="t-a"') < text.indexOf('task="t-b"'), 'replicas by index');
  assert.ok(text.endsWith('\n'));
  // Every sample line belongs to a declared family (a scraper rejects one that does not).
  const declared = new Set([...text.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]));
  for (const line of text.split('\n').filter((l) => l && !l.startsWith('#'))) assert.ok(declared.has(line.split(/[{ ]/)[0]!), line);
});
