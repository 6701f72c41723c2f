// Services over real gRPC and SQLite or PostgreSQL: a real Master, the admin service RPCs called as the CLI
// would, and scripted nodes with and without a gateway pipe getting (or not) the replica tasks.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { status, type ServiceError } from '@grpc/grpc-js';
import { bearerMetadata } from '../../src/protocol/auth-metadata.js';
import type { CreateServiceRequest, ServiceInfo } from '../../src/protocol/gen/hivemind/v1/admin.js';
import { OutcomeKind, TaskOutcome, TaskSpec, TaskState } from '../../src/protocol/gen/hivemind/v1/common.js';
import type { NodeCommand } from '../../src/protocol/gen/hivemind/v1/node.js';
import { ScriptedNode } from '../helpers/scripted-node.js';
import { recordHostile } from '../helpers/fault-ledger.js';
import { callAdmin, startServicesMaster, type ServicesMaster } from '../helpers/services-master.js';

type Harness = ServicesMaster;
const startMaster = startServicesMaster;
const call = callAdmin;

async function refused(p: Promise<unknown>, code: status, message: RegExp): Promise<void> {
  await assert.rejects(p, (e: ServiceError) => {
    assert.equal(e.code, code, e.message);
    assert.match(e.details, message);
    return true;
  });
}

const spec = TaskSpec.fromPartial({ image: 'hivemind/busybox:1', command: ['httpd', '-f', '-p', '8080'], service: { port: 8080, healthPath: '/' } });
const create = (h: Harness, over: Partial<CreateServiceRequest> = {}) =>
  call<CreateServiceRequest, ServiceInfo>(h, 'createService', { name: 'web', spec, replicas: 2, public: false, graceMs: 0, ...over });

async function until<T>(what: string, probe: () => Promise<T | undefined> | T | undefined, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const GATEWAY = { port: 47001, key: 'ab'.repeat(32) };

test('services over gRPC: create, get, list, scale, tokens, remove, and precise refusals', async (t) => {
  const h = await startMaster(t);
  const info = await create(h);
  assert.equal(info.name, 'web');
  assert.equal(info.replicas, 2);
  assert.equal(info.graceMs, 10_000);
  assert.equal(info.endpoint, 'https://gw.example/s/web/');
  assert.deepEqual(info.replicaList.map((r) => [r.index, r.state]), [[0, TaskState.TASK_STATE_QUEUED], [1, TaskState.TASK_STATE_QUEUED]]);
  const task = await h.admin.getTask(info.replicaList[0]!.taskId);
  assert.deepEqual(task.spec!.service, { service: 'web', replica: 0, port: 8080, healthPath: '/', graceMs: 10_000 });

  await refused(create(h), status.ALREADY_EXISTS, /a service named web exists already/);
  await refused(create(h, { name: 'Bad/Name' }), status.INVALID_ARGUMENT, /is not 1 to 63 lowercase letters/);
  await refused(create(h, { name: 'x', spec: { ...spec, service: undefined } }), status.INVALID_ARGUMENT, /spec.service is required/);
  await refused(create(h, { name: 'x', spec: { ...spec, limits: { cpus: 0, memoryBytes: 0, pids: 0, gpus: 0, timeoutMs: 5 } } }), status.INVALID_ARGUMENT, /timeout_ms must be 0/);
  await refused(create(h, { name: 'x', replicas: 65 }), status.INVALID_ARGUMENT, /between 0 and 64/);
  await refused(create(h, { name: 'x', graceMs: 3_600_000 }), status.INVALID_ARGUMENT, /grace_ms/);
  await refused(call(h, 'getService', { name: 'nope' }), status.NOT_FOUND, /no service nope/);
  // A replica is the master's to make: a submitted task claiming to be one is refused.
  await assert.rejects(h.admin.submit({ ...spec, service: { service: 'web', replica: 0, port: 80, healthPath: '', graceMs: 0 } }), /spec.service is set by the master on service replicas/);
  await refused(call(h, 'listServices', { limit: 0, pageToken: '' }, bearerMetadata('wrong')), status.UNAUTHENTICATED, /./);

  await create(h, { name: 'api', replicas: 1, public: true });
  const page1 = await call<unknown, { services: ServiceInfo[]; nextPageToken: string }>(h, 'listServices', { limit: 1, pageToken: '' });
  assert.deepEqual(page1.services.map((s) => s.name), ['api']);
  const page2 = await call<unknown, { services: ServiceInfo[]; nextPageToken: string }>(h, 'listServices', { limit: 1, pageToken: page1.nextPageToken });
  assert.deepEqual(page2.services.map((s) => s.name), ['web']);
  assert.equal(page2.nextPageToken, '');

  const scaled = await call<unknown, ServiceInfo>(h, 'scaleService', { name: 'web', replicas: 1 });
  assert.equal(scaled.replicas, 1);
  const gone = info.replicaList[1]!.taskId;
  assert.equal((await h.admin.getTask(gone)).state, TaskState.TASK_STATE_CANCELLED, 'a queued replica scaled away is cancelled at once');

  // Tokens: the secret once, its hash kept; the gateway's directory admits it until revoked.
  const tok = await call<unknown, { token: string; info: { tokenId: string; service: string; label: string } }>(h, 'createServiceToken', { service: 'web', label: 'ci', ttlMs: 0 });
  assert.match(tok.token, /^hmsvc_[0-9a-f]{64}$/);
  assert.equal(tok.info.service, 'web');
  assert.equal(h.master.gatewayDirectory.tokenAllows('web', tok.token), true);
  assert.equal(h.master.gatewayDirectory.tokenAllows('api', tok.token), false);
  const listed = await call<unknown, { tokens: { tokenId: string; lastUsedMs: number }[] }>(h, 'listServiceTokens', { service: 'web' });
  assert.deepEqual(listed.tokens.map((x) => x.tokenId), [tok.info.tokenId]);
  assert.ok(listed.tokens[0]!.lastUsedMs > 0);
  await refused(call(h, 'createServiceToken', { service: 'nope', label: '', ttlMs: 0 }), status.NOT_FOUND, /no service nope/);
  await refused(call(h, 'revokeServiceToken', { tokenId: 'zz' }), status.INVALID_ARGUMENT, /not 12 hex digits/);
  await refused(call(h, 'revokeServiceToken', { tokenId: '0123456789ab' }), status.NOT_FOUND, /no service token 0123456789ab/);
  const revoked = await call<unknown, { revoked: boolean }>(h, 'revokeServiceToken', { tokenId: tok.info.tokenId });
  assert.equal(revoked.revoked, true);
  assert.equal(h.master.gatewayDirectory.tokenAllows('web', tok.token), false);

  // Nothing runs: removed at once, tokens with it; the name is free again.
  const removed = await call<unknown, ServiceInfo>(h, 'removeService', { name: 'web' });
  assert.equal(removed.removing, true);
  await refused(call(h, 'getService', { name: 'web' }), status.NOT_FOUND, /no service web/);
  assert.equal(h.master.gatewayDirectory.service('web'), undefined);
  const again = await create(h, { replicas: 1 });
  assert.equal(again.replicaList.length, 1);
  assert.deepEqual((await call<unknown, { tokens: unknown[] }>(h, 'listServiceTokens', { service: 'web' })).tokens, []);
});

test('replicas go to a node with a gateway pipe only; its status shows in GetService and the gateway directory; a failed one is replaced; removal stops them', async (t) => {
  const h = await startMaster(t);
  const plain = new ScriptedNode(h.address);
  t.after(() => plain.close());
  await plain.register((await h.admin.createToken()).token, 'plain');
  plain.online();
  await create(h, { replicas: 2 });
  const waiting = await until('the queue reason', async () => {
    const s = await call<unknown, ServiceInfo>(h, 'getService', { name: 'web' });
    return s.replicaList.every((r) => r.queueReason === 'no node hosts services (none announced a gateway pipe)') ? s : undefined;
  });
  assert.equal(waiting.healthy, 0);
  await assert.rejects(plain.nextAssignment(300), /no assign command/);

  const host = new ScriptedNode(h.address);
  t.after(() => host.close());
  await host.register((await h.admin.createToken()).token, 'host');
  host.online({ gateway: GATEWAY });
  const a1 = await host.nextAssignment();
  const a2 = await host.nextAssignment();
  assert.deepEqual([a1.spec!.service!.replica, a2.spec!.service!.replica].sort(), [0, 1]);
  assert.deepEqual(h.master.gatewayDirectory.pipeOf(host.nodeId), { host: '127.0.0.1', port: GATEWAY.port, key: GATEWAY.key });
  assert.equal(h.master.gatewayDirectory.pipeOf(plain.nodeId), undefined);

  const healthy = { healthy: true, restarts: 0, lastExit: '', lastExitAtMs: 0, healthMessage: '', restartAtMs: 0, running: true };
  await host.update(a1.taskId, a1.attempt, TaskState.TASK_STATE_RUNNING, '', undefined, undefined, healthy);
  await host.update(a2.taskId, a2.attempt, TaskState.TASK_STATE_RUNNING, '', undefined, undefined, { ...healthy, healthy: false, healthMessage: 'GET / answered 500' });
  const info = await call<unknown, ServiceInfo>(h, 'getService', { name: 'web' });
  assert.equal(info.healthy, 1);
  const byTask = new Map(info.replicaList.map((r) => [r.taskId, r]));
  assert.equal(byTask.get(a2.taskId)!.status!.healthMessage, 'GET / answered 500');
  assert.equal(byTask.get(a1.taskId)!.nodeId, host.nodeId);
  assert.equal((await h.admin.getTask(a1.taskId)).replica!.healthy, true);
  const dir = h.master.gatewayDirectory.service('web')!;
  assert.deepEqual(dir.replicas.map((r) => [r.taskId, r.healthy]).sort(), [[a1.taskId, true], [a2.taskId, false]].sort());

  // The replica's container cannot start: the task fails, and a fresh task replaces it (after 1 s).
  await host.update(a2.taskId, a2.attempt, TaskState.TASK_STATE_FAILED, 'image missing', TaskOutcome.fromPartial({ kind: OutcomeKind.OUTCOME_KIND_EXITED, exitCode: 1, message: 'image missing' }));
  const a3 = await host.nextAssignment(5000);
  assert.notEqual(a3.taskId, a2.taskId);
  assert.equal(a3.spec!.service!.replica, a2.spec!.service!.replica);

  // Remove: each live replica gets a cancel carrying the grace in its spec; the service goes when they end.
  await call(h, 'removeService', { name: 'web' });
  const cancels = new Set<string>();
  while (cancels.size < 2) cancels.add((await host.nextCommand('cancel')).taskId);
  assert.deepEqual([...cancels].sort(), [a1.taskId, a3.taskId].sort());
  assert.ok(await call(h, 'getService', { name: 'web' }), 'kept while replicas stop');
  await host.update(a1.taskId, a1.attempt, TaskState.TASK_STATE_CANCELLED, 'stopped', TaskOutcome.fromPartial({ kind: OutcomeKind.OUTCOME_KIND_CANCELLED }));
  await host.update(a3.taskId, a3.attempt, TaskState.TASK_STATE_ACCEPTED);
  await host.update(a3.taskId, a3.attempt, TaskState.TASK_STATE_CANCELLED, 'stopped', TaskOutcome.fromPartial({ kind: OutcomeKind.OUTCOME_KIND_CANCELLED }));
  await until('the service to go', async () => {
    try {
      await call(h, 'getService', { name: 'web' });
      return undefined;
    } catch (e) {
      return (e as ServiceError).code === status.NOT_FOUND ? true : undefined;
    }
  });
});

test('a node announcing a malformed gateway pipe is refused with the reason', async (t) => {
  const h = await startMaster(t);
  const node = new ScriptedNode(h.address);
  t.after(() => node.close());
  const reg = await node.register((await h.admin.createToken()).token, 'hostile');
  const cases = [
    { what: 'port 0', gateway: { port: 0, key: GATEWAY.key }, reason: /gateway.port: 0 is not a TCP port/ },
    { what: 'port over 65535', gateway: { port: 70_000, key: GATEWAY.key }, reason: /gateway.port: 70000/ },
    { what: 'short key', gateway: { port: 1, key: 'abc' }, reason: /gateway.key: .* is not 64 lowercase hex digits/ },
    { what: 'key with a newline', gateway: { port: 1, key: `${'a'.repeat(63)}\n` }, reason: /gateway.key/ },
  ];
  for (const c of cases) {
    const err = await new Promise<ServiceError | undefined>((resolve) => {
      const sub = node.client.subscribe({ running: [], free: { cpus: 1, memoryBytes: 1 << 30, gpuIndexes: [], taskSlots: 1 }, accepting: true, exec: false, gateway: c.gateway }, bearerMetadata(reg.nodeCredential));
      sub.on('data', (_: NodeCommand) => undefined);
      sub.on('error', (e: ServiceError) => resolve(e));
      sub.on('end', () => resolve(undefined));
    });
    recordHostile(`node gateway pipe: ${c.what}`, err?.code !== status.INVALID_ARGUMENT);
    assert.equal(err?.code, status.INVALID_ARGUMENT, c.what);
    assert.match(err!.details, c.reason);
  }
  assert.equal(h.master.gatewayDirectory.pipeOf(reg.nodeId), undefined);
});

test('the master\'s /metrics on the gateway listener: the admin token only (never a service token), replicas wanted, placed and healthy', async (t) => {
  const h = await startMaster(t);
  const adminToken = (await readFile(h.master.adminTokenPath, 'utf8')).trim();
  const url = `${h.master.gatewayUrl!}/metrics`;
  const host = new ScriptedNode(h.address);
  t.after(() => host.close());
  await host.register((await h.admin.createToken()).token, 'host');
  host.online({ gateway: GATEWAY });
  await create(h, { replicas: 2 });
  const a1 = await host.nextAssignment();
  await host.nextAssignment();
  await host.update(a1.taskId, a1.attempt, TaskState.TASK_STATE_RUNNING, '', undefined, undefined, { healthy: true, restarts: 0, lastExit: '', lastExitAtMs: 0, healthMessage: '', restartAtMs: 0, running: true });
  const serviceToken = (await call<unknown, { token: string }>(h, 'createServiceToken', { service: 'web', label: 'ci', ttlMs: 0 })).token;

  const get = (authorization?: string) => fetch(url, authorization ? { headers: { authorization } } : {});
  const none = await get();
  assert.equal(none.status, 401);
  assert.match(none.headers.get('www-authenticate') ?? '', /^Bearer realm="hivemind-admin"/);
  assert.match(await none.text(), /metrics need the master's admin token/);
  const withService = await get(`Bearer ${serviceToken}`);
  const serviceBody = await withService.text();
  recordHostile('master /metrics: a service token', withService.status !== 401 || serviceBody.includes('hivemind_'));
  assert.equal(withService.status, 401);
  assert.match(serviceBody, /not the master's admin token \(a service token does not read metrics\)/);
  assert.ok(!serviceBody.includes('hivemind_service'), 'no metric in a refusal');
  const wrong = await get(`Bearer ${adminToken}x`);
  recordHostile('master /metrics: a near-miss admin token', wrong.status !== 401);
  assert.equal(wrong.status, 401);
  await wrong.text();
  const post = await fetch(url, { method: 'POST', headers: { authorization: `Bearer ${adminToken}` } });
  assert.equal(post.status, 405);
  await post.text();

  const res = await until('the running replica in the metrics', async () => {
    const r = await get(`Bearer ${adminToken}`);
    const text = await r.text();
    assert.equal(r.status, 200, text);
    return text.includes('hivemind_service_replicas_healthy{service="web"} 1\n') ? { r, text } : undefined;
  });
  assert.match(res.r.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
  assert.ok(res.text.includes('hivemind_service_replicas_wanted{service="web"} 2\n'), res.text);
  assert.ok(res.text.includes('hivemind_service_replicas_placed{service="web"} 2\n'), res.text);
  assert.ok(res.text.includes(`hivemind_gateway_replica_requests_total{service="web",replica="${a1.spec!.service!.replica}",task="${a1.taskId}"} 0\n`), res.text);
  // The service path space is untouched: /metrics is not a service, /s/metrics/ is one's path.
  const svc = await fetch(`${h.master.gatewayUrl!}/s/metrics/`, { headers: { authorization: `Bearer ${adminToken}` } });
  assert.equal(svc.status, 404);
  await svc.text();
});
