// `hivemind service ...` without a master: the flags → CreateServiceRequest mapping and its
// refusals, the tables and the --json names, the --wait poll, the replica `logs` picks, and the
// client's paging and errors over a fake stub.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Metadata, status } from '@grpc/grpc-js';
import { ConfigError } from '../../src/common/errors.js';
import { MasterCallError } from '../../src/client/admin-client.js';
import { ServiceClient, type ServiceStub } from '../../src/client/service-client.js';
import { replicaTask, NoSuchReplicaError } from '../../src/cli/commands/service-app-commands.js';
import { buildCreateServiceRequest, parseTokenTtl, parseWholeNumber } from '../../src/cli/service-request.js';
import { formatService, formatServiceTable, formatTokenTable, replicaHealth, serviceJson, tokenJson } from '../../src/cli/service-format.js';
import { REMOVAL_MARGIN_MS, RemovalTimeoutError, waitUntilRemoved, type RemovalClock } from '../../src/cli/service-removal.js';
import { parseSpecDataFlags, resolveDataFlags } from '../../src/cli/task-spec-flags.js';
import { terminalSafeJson } from '../../src/cli/terminal-text.js';
import { ReplicaInfo, ServiceInfo, ServiceTokenInfo, type DeepPartial, type ListServicesRequest, type ListServicesResponse } from '../../src/protocol/gen/hivemind/v1/admin.js';
import { DataKind, TaskState } from '../../src/protocol/gen/hivemind/v1/common.js';
import { recordHostile } from '../helpers/fault-ledger.js';

// Window title, clear screen, red, an 8-bit CSI, right-to-left override, a carriage return (as in cli-output.test).
const HOSTILE = '\u001b]0;owned\u0007\u001b[2J\u001b[31mred\u009b31m\u202eevil\rX\u0000\u007f\u2066';
const DIGEST = `sha256:${'ab'.repeat(32)}`;
const RAW_CONTROL = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/;

test('service create flags become the CreateServiceRequest: spec with spec.service, replicas, public, grace', async () => {
  const data = await resolveDataFlags(() => assert.fail('a digest needs no lookup at the master'), parseSpecDataFlags([`${DIGEST}:/models`]));
  const req = buildCreateServiceRequest(
    'web',
    ['httpd', '-f', '-p', '8000'],
    { image: 'hivemind/busybox:1', port: '8000', replicas: '3', health: '/health?deep=1', public: true, grace: '1m30s', cpus: '0.5', memory: '256m', pids: '64', gpus: '1', env: ['A=1', '__proto__=x'] },
    data,
  );
  assert.equal(req.name, 'web');
  assert.equal(req.replicas, 3);
  assert.equal(req.public, true);
  assert.equal(req.graceMs, 90_000);
  const spec = req.spec!;
  assert.equal(spec.image, 'hivemind/busybox:1');
  assert.deepEqual(spec.command, ['httpd', '-f', '-p', '8000']);
  assert.deepEqual([...spec.env], [['A', '1'], ['__proto__', 'x']]);
  assert.deepEqual(spec.limits, { cpus: 0.5, memoryBytes: 256 * 1024 ** 2, pids: 64, gpus: 1, timeoutMs: 0 });
  assert.equal(spec.maxOutputBytes, 0);
  assert.deepEqual(spec.data, [{ sha256: DIGEST, path: '/models', size: 0, kind: DataKind.DATA_KIND_UNSPECIFIED, url: '' }]);
  assert.deepEqual(spec.service, { service: 'web', replica: 0, port: 8000, healthPath: '/health?deep=1', graceMs: 0 });
});

test('service create defaults: one replica, token-only, the master\'s grace, a TCP health check', () => {
  const req = buildCreateServiceRequest('api', [], { image: 'img', port: '80' }, []);
  assert.equal(req.replicas, 1);
  assert.equal(req.public, false);
  assert.equal(req.graceMs, 0);
  assert.equal(req.spec!.service!.healthPath, '');
  assert.deepEqual(req.spec!.command, []);
});

test('service create refuses bad flags with a message naming the flag', () => {
  const base = { image: 'img', port: '8000' };
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ port: '0' }, /--port: "0" is not a whole number from 1 to 65535/],
    [{ port: '65536' }, /--port: "65536"/],
    [{ port: '80x' }, /--port: "80x"/],
    [{ port: '8.5' }, /--port/],
    [{ replicas: '0' }, /--replicas: "0" is not a whole number from 1 to 64/],
    [{ replicas: '65' }, /--replicas: "65"/],
    [{ replicas: '-1' }, /--replicas/],
    [{ health: 'health' }, /--health: "health" is not an HTTP path: it must start with \//],
    [{ health: '/a b' }, /--health/],
    [{ health: '/a\r\nHost: x' }, /--health/],
    [{ grace: '0' }, /--grace: 0 is not a grace period/],
    [{ grace: 'soon' }, /--grace: "soon" is not a duration/],
    [{ timeout: '10m' }, /no --timeout/],
    [{ env: ['NOEQUALS'] }, /--env "NOEQUALS" is not KEY=VALUE/],
    [{ cpus: 'many' }, /--cpus: "many"/],
  ];
  for (const [flags, message] of cases) {
    assert.throws(() => buildCreateServiceRequest('web', [], { ...base, ...flags } as never, []), (err: unknown) => err instanceof ConfigError && message.test(err.message), JSON.stringify(flags));
  }
  assert.throws(() => parseSpecDataFlags(['models']), /names no container path/);
});

test('scale counts, replica indexes and token lifetimes', () => {
  assert.equal(parseWholeNumber('0', 'replicas', 0, 64), 0);
  assert.equal(parseWholeNumber('64', 'replicas', 0, 64), 64);
  assert.throws(() => parseWholeNumber('65', 'replicas', 0, 64), /replicas: "65" is not a whole number from 0 to 64/);
  assert.throws(() => parseWholeNumber('', '--replica', 0), /--replica/);
  assert.equal(parseTokenTtl(undefined), 0);
  assert.equal(parseTokenTtl('never'), 0);
  assert.equal(parseTokenTtl('30d'), 30 * 86_400_000);
  assert.throws(() => parseTokenTtl('0s'), /--ttl: 0 is not a lifetime/);
  assert.throws(() => parseTokenTtl('forever'), /--ttl: "forever" is not a duration/);
});

const NOW = Date.UTC(2026, 11, 6, 12, 0, 0);

function replica(index: number, over: DeepPartial<ReplicaInfo> = {}): ReplicaInfo {
  return ReplicaInfo.fromPartial({
    index,
    taskId: `task${index}`,
    attempt: 1,
    nodeId: `node-${index}-0123456789abcdef`,
    state: TaskState.TASK_STATE_RUNNING,
    status: { healthy: true, running: true, restarts: 0 },
    traffic: { requests: 10, errors: 1, inFlight: 0, latencyP50Ms: 2.5, latencyP99Ms: 40 },
    ...over,
  });
}

function sampleService(): ServiceInfo {
  return ServiceInfo.fromPartial({
    name: 'web',
    endpoint: 'http://127.0.0.1:8088/s/web/',
    replicas: 4,
    healthy: 1,
    graceMs: 10_000,
    createdAtMs: NOW - 1000,
    spec: { image: 'hivemind/busybox:1', command: ['httpd', '-f'], env: new Map([['K', 'v']]), limits: { cpus: 1, memoryBytes: 1024 ** 3 }, data: [{ sha256: DIGEST, path: '/m', size: 5, kind: DataKind.DATA_KIND_DIR }], service: { service: 'web', port: 8000, healthPath: '/health' } },
    traffic: { requests: 30, errors: 2, inFlight: 1, latencyP50Ms: 3, latencyP99Ms: 50 },
    replicaList: [
      replica(2, { status: { healthy: false, running: false, restarts: 3, lastExit: 'exited with code 3', restartAtMs: NOW + 4000 } }),
      replica(0),
      replica(1, { status: { healthy: false, running: true, restarts: 1, lastExit: 'OOM killed', healthMessage: 'GET /health: 503' } }),
      replica(3, { state: TaskState.TASK_STATE_QUEUED, nodeId: '', status: undefined, queueReason: 'no node with a gateway has 1 free cpu', traffic: undefined }),
    ],
  });
}

test('replica health in one word', () => {
  const s = sampleService();
  assert.deepEqual(s.replicaList.map((r) => [r.index, replicaHealth(r)]), [[2, 'restarting'], [0, 'healthy'], [1, 'unhealthy'], [3, 'pending']]);
  assert.equal(replicaHealth(replica(5, { status: { healthy: false, running: false } })), 'down');
});

test('service get: the endpoint, the healthy count and a replica table in index order', () => {
  const text = formatService(sampleService(), NOW);
  assert.match(text, /^service {3}web$/m);
  assert.match(text, /^endpoint  http:\/\/127\.0\.0\.1:8088\/s\/web\/ \(needs a token/m);
  assert.match(text, /^port {6}8000, health GET \/health, grace 10s$/m);
  assert.match(text, /^replicas  1 healthy of 4 wanted$/m);
  assert.match(text, /^traffic {3}30 requests, 2 errors, 1 in flight, p50 3\.0ms, p99 50ms$/m);
  const table = text.split('\n\n')[1]!.split('\n');
  assert.match(table[0]!, /^REPLICA +TASK +NODE +STATE +HEALTH +RESTARTS +LAST EXIT +REQUESTS +ERRORS +P50 +P99 +NOTE$/);
  assert.deepEqual(table.slice(1).map((row) => row.split(/ {2,}/)), [
    ['0', 'task0', 'node-0-01234', 'running', 'healthy', '0', '-', '10', '1', '2.5ms', '40ms'],  // no note: no trailing blanks
    ['1', 'task1', 'node-1-01234', 'running', 'unhealthy', '1', 'OOM killed', '10', '1', '2.5ms', '40ms', 'GET /health: 503'],
    ['2', 'task2', 'node-2-01234', 'running', 'restarting', '3', 'exited with code 3', '10', '1', '2.5ms', '40ms', 'restart in 4s'],
    ['3', 'task3', '-', 'queued', 'pending', '0', '-', '0', '0', '-', '-', 'no node with a gateway has 1 free cpu'],
  ]);
  assert.match(formatService(ServiceInfo.fromPartial({ name: 'idle', public: true, endpoint: 'http://h/s/idle/' }), NOW), /\(public: no token needed\)[\s\S]*\n\nno replicas$/);
});

test('service ls and token ls tables', () => {
  const ls = formatServiceTable([sampleService(), ServiceInfo.fromPartial({ name: 'gone', public: true, removing: true, spec: { image: 'x', service: { port: 1 } } })]).split('\n');
  assert.deepEqual(ls.map((row) => row.split(/ {2,}/)), [
    ['NAME', 'HEALTHY', 'IMAGE', 'PORT', 'ACCESS', 'REQUESTS', 'ERRORS', 'ENDPOINT'],
    ['web', '1/4', 'hivemind/busybox:1', '8000', 'token', '30', '2', 'http://127.0.0.1:8088/s/web/'],
    ['gone', '0/0 removing', 'x', '1', 'public', '0', '0', '-'],
  ]);
  assert.equal(formatServiceTable([]), 'no services');
  const tokens = [
    ServiceTokenInfo.fromPartial({ tokenId: 'aaaaaaaaaaaa', service: 'web', label: 'ci', createdAtMs: NOW - 5000, expiresAtMs: 0, lastUsedMs: NOW - 1000 }),
    ServiceTokenInfo.fromPartial({ tokenId: 'bbbbbbbbbbbb', service: 'web', createdAtMs: NOW - 5000, expiresAtMs: NOW - 1 }),
    ServiceTokenInfo.fromPartial({ tokenId: 'cccccccccccc', service: 'web', createdAtMs: NOW - 5000, expiresAtMs: NOW + 1000, revoked: true }),
  ];
  assert.deepEqual(formatTokenTable(tokens, NOW).split('\n').map((row) => row.split(/ {2,}/).slice(0, 3)), [
    ['TOKEN ID', 'STATE', 'LABEL'],
    ['aaaaaaaaaaaa', 'valid', 'ci'],
    ['bbbbbbbbbbbb', 'expired', '-'],
    ['cccccccccccc', 'revoked', '-'],
  ]);
  assert.match(formatTokenTable(tokens, NOW).split('\n')[1]!, /never {2,}2026-12-06T11:59:59\.000Z$/);
  assert.equal(formatTokenTable([], NOW), 'no tokens');
});

test('--json names are stable and enums are words', () => {
  const json = JSON.parse(terminalSafeJson(serviceJson(sampleService())));
  assert.deepEqual(Object.keys(json), [
    'name', 'endpoint', 'public', 'replicas', 'healthy', 'removing', 'graceMs', 'createdAtMs', 'image', 'command', 'env', 'port', 'healthPath', 'limits', 'data', 'traffic', 'replicaList',
  ]);
  assert.deepEqual(json.env, { K: 'v' });
  assert.deepEqual(json.data, [{ sha256: DIGEST, path: '/m', size: 5, kind: 'dir', url: '' }]);
  assert.deepEqual(json.limits, { cpus: 1, memoryBytes: 1024 ** 3, pids: 0, gpus: 0 });
  assert.deepEqual(json.replicaList.map((r: { index: number; state: string; health: string }) => [r.index, r.state, r.health]), [[0, 'running', 'healthy'], [1, 'running', 'unhealthy'], [2, 'running', 'restarting'], [3, 'queued', 'pending']]);
  assert.deepEqual(json.replicaList[2], {
    index: 2, taskId: 'task2', attempt: 1, nodeId: 'node-2-0123456789abcdef', state: 'running', health: 'restarting', healthy: false, running: false, restarts: 3,
    lastExit: 'exited with code 3', lastExitAtMs: 0, healthMessage: '', restartAtMs: NOW + 4000, queueReason: '', stopping: false,
    traffic: { requests: 10, errors: 1, inFlight: 0, latencyP50Ms: 2.5, latencyP99Ms: 40 },
  });
  const token = tokenJson(ServiceTokenInfo.fromPartial({ tokenId: 't', service: 'web', expiresAtMs: NOW }), NOW);
  assert.deepEqual(Object.keys(token), ['tokenId', 'service', 'label', 'state', 'createdAtMs', 'expiresAtMs', 'revoked', 'lastUsedMs']);
  assert.equal(token.state, 'expired');
});

test('service get and ls render hostile names, exits and messages escaped', () => {
  const s = sampleService();
  s.name = `web${HOSTILE}`;
  s.endpoint = HOSTILE;
  s.spec!.image = HOSTILE;
  s.replicaList[0]!.status!.lastExit = HOSTILE;
  s.replicaList[2]!.status!.healthMessage = `x\nFAKE ROW${HOSTILE}`;  // replica 1, unhealthy
  s.replicaList[3]!.queueReason = HOSTILE;
  const token = ServiceTokenInfo.fromPartial({ tokenId: HOSTILE, label: `a\nFAKE${HOSTILE}` });
  const outputs = { get: formatService(s, NOW), ls: formatServiceTable([s]), tokens: formatTokenTable([token], NOW), json: terminalSafeJson(serviceJson(s)) };
  const leaked = Object.entries(outputs).filter(([, text]) => RAW_CONTROL.test(text.replace(/\n/g, '')));
  recordHostile('CLI: terminal controls in service names, endpoints, replica exits and health messages (unit)', leaked.length, Object.keys(outputs).length);
  assert.deepEqual(leaked, []);
  // One line per replica: a newline in a message cannot forge a row.
  assert.equal(outputs.get.split('\n\n')[1]!.split('\n').length, 5);
  assert.equal(outputs.tokens.split('\n').length, 2);
  assert.match(outputs.get, /x\\nFAKE ROW\\x1b\]0;owned/);
});

test('service logs picks the replica\'s current task, or says which replicas there are', () => {
  const s = sampleService();
  assert.deepEqual(replicaTask(s, 1), { taskId: 'task1', nodeId: 'node-1-0123456789abcdef', state: 'running' });
  assert.throws(() => replicaTask(s, 7), (err: unknown) => err instanceof NoSuchReplicaError && err.message === 'service web has no replica 7 (it has replica 0, 1, 2, 3)');
  assert.throws(() => replicaTask(ServiceInfo.fromPartial({ name: 'z', replicas: 0 }), 0), /service z has no replica 0 \(it has no replicas now; 0 wanted\)/);
  assert.throws(() => replicaTask(ServiceInfo.fromPartial({ name: 'z', replicaList: [{ index: 0 }] }), 0), /replica 0 of service z has no task yet/);
});

class FakeClock implements RemovalClock {
  t = 0;
  sleeps: number[] = [];
  now(): number {
    return this.t;
  }
  async sleep(ms: number): Promise<void> {
    this.sleeps.push(ms);
    this.t += ms;
  }
}

const notFound = () => new MasterCallError('service web', Object.assign(new Error('no service web'), { code: status.NOT_FOUND, details: 'no service web' }));

test('rm --wait polls until the master no longer knows the service', async () => {
  const removed = ServiceInfo.fromPartial({ name: 'web', graceMs: 5000, removing: true, replicaList: [replica(0, { stopping: true })] });
  const clock = new FakeClock();
  let calls = 0;
  await waitUntilRemoved(async () => {
    if (++calls < 4) return removed;
    throw notFound();
  }, removed, clock);
  assert.equal(calls, 4);
  assert.deepEqual(clock.sleeps, [1000, 1000, 1000]);
});

test('rm --wait gives up after the grace period plus 30 s, naming the replicas left; other errors pass through', async () => {
  const removed = ServiceInfo.fromPartial({ name: 'web', graceMs: 5000, removing: true, replicaList: [replica(0, { stopping: true }), replica(2, { stopping: true })] });
  const clock = new FakeClock();
  await assert.rejects(
    waitUntilRemoved(async () => removed, removed, clock),
    (err: unknown) => err instanceof RemovalTimeoutError && /^service web is still being removed after 35s \(replica 0, 2 not stopped yet\)/.test(err.message),
  );
  assert.equal(clock.t, 5000 + REMOVAL_MARGIN_MS);
  const denied = new MasterCallError('service web', Object.assign(new Error('bad token'), { code: status.UNAUTHENTICATED }));
  await assert.rejects(waitUntilRemoved(async () => { throw denied; }, removed, new FakeClock()), (err) => err === denied);
});

/** A stub serving ListServices from `pages` and failing the other calls as a master would. */
function fakeStub(pages: Map<string, ListServicesResponse>, seen: ListServicesRequest[]): ServiceStub {
  const fail = (_req: unknown, _md: Metadata, cb: (err: unknown) => void) => cb(Object.assign(new Error('12 UNIMPLEMENTED: services are not implemented'), { code: status.UNIMPLEMENTED, details: 'services are not implemented' }));
  return {
    listServices: ((req: ListServicesRequest, _md: Metadata, cb: (err: unknown, res?: ListServicesResponse) => void) => {
      seen.push(req);
      cb(null, pages.get(req.pageToken));
    }) as never,
    createService: fail as never, getService: fail as never, scaleService: fail as never, removeService: fail as never,
    createServiceToken: fail as never, listServiceTokens: fail as never, revokeServiceToken: fail as never,
    close: () => undefined,
  };
}

test('ServiceClient.list reads every page; a failed call is a MasterCallError keeping the status', async () => {
  const seen: ListServicesRequest[] = [];
  const pages = new Map<string, ListServicesResponse>([
    ['', { services: [ServiceInfo.fromPartial({ name: 'a' }), ServiceInfo.fromPartial({ name: 'b' })], nextPageToken: 'p2' }],
    ['p2', { services: [ServiceInfo.fromPartial({ name: 'c' })], nextPageToken: '' }],
  ]);
  const client = new ServiceClient(fakeStub(pages, seen), new Metadata());
  assert.deepEqual((await client.list()).map((s) => s.name), ['a', 'b', 'c']);
  assert.deepEqual(seen.map((r) => r.pageToken), ['', 'p2']);
  await assert.rejects(client.scale('web', 2), (err: unknown) => err instanceof MasterCallError && err.status === status.UNIMPLEMENTED && err.code === 'MASTER_UNIMPLEMENTED' && /^scale service web: /.test(err.message));
  client.close();
});
