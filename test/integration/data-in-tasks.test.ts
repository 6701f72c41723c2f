// Data sets in tasks through a real master (gRPC, SQLite or PostgreSQL, its data dir), the real `hivemind` CLI as
// a process, and scripted nodes speaking the node protocol: submit --data by name and by digest
// (the stored spec holds digest, size and kind), unknown data refused, `data rm` refused while the
// task is queued, placement by the node's cache (no cache, no room, the node holding the data
// preferred), DownloadData for the node's own task only, data progress in `get`, drop_data after
// `data rm`, and hostile specs and cache reports.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { createLogger } from '../../src/common/logger.js';
import { status, type ServiceError } from '@grpc/grpc-js';
import { AdminClient, MasterCallError } from '../../src/client/admin-client.js';
import { DataClient } from '../../src/client/data-client.js';
import { Master } from '../../src/master/master.js';
import { DataKind, OutcomeKind, TaskState, type DataCacheStatus, type DataMount } from '../../src/protocol/gen/hivemind/v1/common.js';
import { runCli, waitFor as until } from '../helpers/cli-process.js';
import { recordHostile } from '../helpers/fault-ledger.js';
import { ScriptedNode } from '../helpers/scripted-node.js';
import { masterStoreOption } from '../helpers/test-store.js';

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function harness(t: TestContext) {
  const dir = await mkdtemp(join(tmpdir(), 'hm-data-tasks-'));
  // The master's log tells when a node's command stream is attached (it is then schedulable).
  const subscribed = new Set<string>();
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n')) {
        if (!l.trim()) continue;
        const line = JSON.parse(l) as { msg: string; nodeId?: string };
        if (line.msg === 'node subscribed' && line.nodeId) subscribed.add(line.nodeId);
      }
      cb();
    },
  });
  const logger = createLogger({ level: 'info', destination: sink });
  const master = await Master.create({ listenAddress: '127.0.0.1:0', gatewayListen: '127.0.0.1:0', dataDir: join(dir, 'master'), shutdownGraceMs: 200, reportIntervalMs: 60_000, ...masterStoreOption() }, { logger });
  const address = await master.start();
  const adminToken = (await readFile(master.adminTokenPath, 'utf8')).trim();
  const admin = AdminClient.connect(address, adminToken);
  const data = DataClient.connect(address, adminToken);
  const nodes: ScriptedNode[] = [];
  t.after(async () => {
    for (const n of nodes) n.close();
    data.close();
    admin.close();
    await master.close();
    await rm(dir, { recursive: true, force: true });
  });
  const env = { ...process.env, HOME: dir, HIVEMIND_CONFIG: '' };
  // The connection flags right after the command: after a "--" they would be the task's arguments.
  const cli = ([command, ...rest]: string[]) => runCli([command!, '--master', address, '--admin-token', adminToken, ...rest], env);
  /** Puts `bytes` as a file data set named `name`; returns its digest. */
  const put = async (name: string, bytes: Buffer): Promise<string> => {
    const file = join(dir, `${name}.bin`);
    await writeFile(file, bytes);
    const r = await data.put({ file, sha256: sha256(bytes), size: bytes.length, kind: DataKind.DATA_KIND_FILE, name });
    return r.info.sha256;
  };
  const node = async (name: string): Promise<ScriptedNode> => {
    const n = new ScriptedNode(address);
    nodes.push(n);
    await n.register((await admin.createToken()).token, name);
    return n;
  };
  const taskOf = (id: string) => admin.getTask(id);
  const attached = (...ns: ScriptedNode[]) => until('the nodes\' command streams', async () => (ns.every((n) => subscribed.has(n.nodeId)) ? true : undefined));
  return { admin, data, cli, put, node, taskOf, attached };
}

const cacheOf = (held: { sha256: string; size: number }[], free: number, evictable = 0): DataCacheStatus => ({ held, budgetBytes: 1024 ** 3, freeBytes: free, evictableBytes: evictable });

/** The gRPC status a call failed with (and its details), recorded as a hostile case first. */
async function refusedWith(name: string, call: Promise<unknown>, code: status, re: RegExp): Promise<void> {
  let err: unknown;
  try {
    await call;
  } catch (e) {
    err = e;
  }
  const st = err instanceof MasterCallError ? err.status : (err as ServiceError | undefined)?.code;
  recordHostile(name, !(st === code && re.test(String((err as Error | undefined)?.message))));
  assert.equal(st, code, `${name}: ${String(err)}`);
  assert.match(String((err as Error).message), re, name);
}

test('tasks mount data sets: submit by name and digest, placement by cache, DownloadData, progress, reclaim', async (t) => {
  const h = await harness(t);
  const bytesA = randomBytes(300_000);
  const bytesB = randomBytes(1000);
  const bytesC = randomBytes(2000);
  const A = await h.put('model-a', bytesA);
  const B = await h.put('model-b', bytesB);
  const C = await h.put('model-c', bytesC);

  // By name and by digest through the CLI: the stored spec holds digests, sizes and kinds.
  const sub = await h.cli(['submit', '--image', 'hivemind/busybox:1', '--data', 'model-a:/models/a', '--data', `${B}:/models/b`, '--json', '--', 'true']);
  assert.equal(sub.code, 0, sub.stderr);
  const queuedId = (JSON.parse(sub.stdout) as { taskId: string }).taskId;
  const queued = await h.taskOf(queuedId);
  assert.deepEqual(queued.spec?.data, [
    { sha256: A, path: '/models/a', size: bytesA.length, kind: DataKind.DATA_KIND_FILE, url: '' },
    { sha256: B, path: '/models/b', size: bytesB.length, kind: DataKind.DATA_KIND_FILE, url: '' },
  ]);

  // Unknown data: refused by the CLI (a name) and by the master (a digest), nothing stored.
  const unknownName = await h.cli(['submit', '--image', 'hivemind/busybox:1', '--data', 'no-such-model:/m']);
  assert.notEqual(unknownName.code, 0);
  assert.match(unknownName.stderr, /no-such-model/);
  const missing = `sha256:${'0'.repeat(64)}`;
  const unknownDigest = await h.cli(['submit', '--image', 'hivemind/busybox:1', '--data', `${missing}:/m`]);
  assert.notEqual(unknownDigest.code, 0);
  assert.match(unknownDigest.stderr, new RegExp(`spec\\.data\\[0\\]: no data set ${missing} at this master; put it with \`hivemind data put\``));
  await refusedWith('submit: a data set the master does not hold', h.admin.submit({ image: 'hivemind/busybox:1', data: [{ sha256: missing, path: '/m', size: 0, kind: 0, url: '' }] }),
    status.INVALID_ARGUMENT, /no data set sha256:0{64} at this master/);

  // rm is refused while the queued task references the data set.
  await refusedWith('data rm of a data set a queued task mounts', h.data.remove('model-a'), status.FAILED_PRECONDITION, new RegExp(`used by 1 queued or running task\\(s\\): ${queuedId} \\(queued, at /models/a\\)`));

  // Placement: no cache → no node; no room → the reason names the room.
  const plain = await h.node('plain');
  plain.online();
  await until('the no-cache reason', async () => ((await h.taskOf(queuedId)).queueReason === 'no node has a data cache (the task mounts data sets)' ? true : undefined));
  const tight = await h.node('tight');
  tight.online({ cache: cacheOf([], 1000) });
  await until('the no-room reason', async () => (/^no node has room for its data sets \(needs 293\.9 KiB; the most room is 1000 B on node tight\)$/.test((await h.taskOf(queuedId)).queueReason) ? true : undefined));
  await h.admin.cancelTask(queuedId, 'placement is tested with the next task');

  // Two nodes with room; the one holding the data is preferred over one with more free slots.
  const roomy = await h.node('roomy');
  const holder = await h.node('holder');
  roomy.online({ free: { cpus: 4, memoryBytes: 8 * 1024 ** 3, gpuIndexes: [], taskSlots: 4 }, cache: cacheOf([], 10 * 1024 ** 2) });
  holder.online({ cache: cacheOf([{ sha256: A, size: bytesA.length }], 10_000) });
  await h.attached(roomy, holder);
  const taskId = await h.admin.submit({ image: 'hivemind/busybox:1', data: [{ sha256: A, path: '/models/a', size: 0, kind: 0, url: '' }, { sha256: B, path: '/models/b', size: 0, kind: 0, url: '' }] });
  const assigned = await holder.nextAssignment();
  assert.equal(assigned.taskId, taskId);
  assert.deepEqual(assigned.spec?.data.map((m: DataMount) => [m.sha256, m.size]), [[A, bytesA.length], [B, bytesB.length]]);

  // DownloadData: the node's own task's data sets, from any offset; nothing else.
  assert.ok((await holder.downloadData(taskId, 1, B)).equals(bytesB));
  assert.ok((await holder.downloadData(taskId, 1, A, 100_000)).equals(bytesA.subarray(100_000)));
  await refusedWith('DownloadData of a data set the task does not mount', holder.downloadData(taskId, 1, C), status.INVALID_ARGUMENT, new RegExp(`task ${taskId} mounts no data set ${C} from the master`));
  await refusedWith('DownloadData of another node\'s task', roomy.downloadData(taskId, 1, A), status.FAILED_PRECONDITION, /held by another node/);
  await refusedWith('DownloadData of a superseded attempt', holder.downloadData(taskId, 2, A), status.FAILED_PRECONDITION, /superseded/);
  await refusedWith('DownloadData past the end', holder.downloadData(taskId, 1, B, bytesB.length + 1), status.INVALID_ARGUMENT, /past the end of the 1000-byte data set/);
  await refusedWith('DownloadData of a malformed digest', holder.downloadData(taskId, 1, 'sha256:../../etc/passwd'), status.INVALID_ARGUMENT, /is not a digest/);
  const other = await h.admin.submit({ image: 'hivemind/busybox:1', data: [{ sha256: C, path: '/c', size: 0, kind: 0, url: '' }] });
  const otherAssigned = await roomy.nextAssignment();
  assert.equal(otherAssigned.taskId, other);
  await refusedWith('DownloadData of another task\'s data set', holder.downloadData(other, 1, C), status.FAILED_PRECONDITION, /held by another node/);

  // Progress while fetching: kept by the master, shown by `get` and `tasks`.
  await holder.update(taskId, 1, TaskState.TASK_STATE_ACCEPTED, '', undefined, { receivedBytes: bytesA.length / 2, totalBytes: bytesA.length + bytesB.length });
  assert.deepEqual((await h.taskOf(taskId)).dataProgress, { receivedBytes: bytesA.length / 2, totalBytes: bytesA.length + bytesB.length });
  const shown = await h.cli(['get', taskId]);
  assert.match(shown.stdout, /^fetching data: 49% \(146\.5 KiB of 293\.9 KiB\)$/m);
  assert.match(shown.stdout, new RegExp(`^data {6}/models/a  ${A} \\(293\\.0 KiB, file\\)$`, 'm'));
  assert.match((await h.cli(['tasks'])).stdout, new RegExp(`^${taskId} +accepted .* fetching data 49%$`, 'm'));
  await holder.update(taskId, 1, TaskState.TASK_STATE_RUNNING);
  assert.equal((await h.taskOf(taskId)).dataProgress, undefined, 'no progress once the task runs');

  // Reclaim: once no live task mounts B, rm succeeds and a node reporting B is told to drop it.
  await holder.update(taskId, 1, TaskState.TASK_STATE_FAILED, 'done', { kind: OutcomeKind.OUTCOME_KIND_EXITED, exitCode: 1, message: '', durationMs: 1, resultSize: 0, resultSha256: '' } as never);
  await h.data.remove('model-b');
  assert.equal(await holder.report({ cache: cacheOf([{ sha256: A, size: bytesA.length }, { sha256: B, size: bytesB.length }], 0) }), undefined);
  assert.deepEqual((await holder.nextCommand('dropData')).sha256, [B]);
  // Put again, B is no longer removed: nothing to drop.
  await h.put('model-b', bytesB);
  await holder.report({ cache: cacheOf([{ sha256: B, size: bytesB.length }], 0) });
  await assert.rejects(holder.nextCommand('dropData', 500), /no dropData command/);
});

test('hostile data mounts and cache reports are refused with the field and the limit; the master keeps serving', async (t) => {
  const h = await harness(t);
  const A = await h.put('d', randomBytes(10));
  const mount = (p: Partial<DataMount>): DataMount => ({ sha256: A, path: '/data', size: 0, kind: 0, url: '', ...p });
  const cases: [string, DataMount[], RegExp][] = [
    ['a mount over /etc', [mount({ path: '/etc' })], /spec\.data\[0\]\.path "\/etc" is the system path \/etc/],
    ['a mount over /output', [mount({ path: '/output' })], /which the task itself uses/],
    ['a mount at /', [mount({ path: '/' })], /cannot replace the container's root/],
    ['a mount path with ..', [mount({ path: '/data/../etc' })], /"\." or "\.\." segment/],
    ['17 mounts', Array.from({ length: 17 }, (_, i) => mount({ path: `/d${i}` })), /spec\.data has 17 data sets, over the maximum of 16/],
    ['nested mounts', [mount({ path: '/d' }), mount({ path: '/d/e' })], /mounts may not nest/],
    ['a file:// url', [mount({ url: 'file:///etc/shadow' })], /only http:\/\/ and https:\/\/ are fetched/],
    ['an url with credentials', [mount({ url: 'https://u:p@example.com/x' })], /user:password@/],
    ['an url without a hash', [mount({ url: 'https://example.com/x', sha256: '' })], /an external data set needs its sha256/],
  ];
  for (const [name, data, re] of cases) {
    await refusedWith(`submit: ${name}`, h.admin.submit({ image: 'hivemind/busybox:1', data }), status.INVALID_ARGUMENT, re);
  }
  const cli = await h.cli(['submit', '--image', 'hivemind/busybox:1', '--data', 'https://example.com/model.bin:/m']);
  recordHostile('submit --data: an url without a hash', cli.code === 0);
  assert.notEqual(cli.code, 0);
  assert.match(cli.stderr, /an external data set needs its sha256: URL@sha256:HEX:\/path/);

  const n = await h.node('liar');
  const many = Array.from({ length: 4097 }, (_, i) => ({ sha256: `sha256:${i.toString(16).padStart(64, '0')}`, size: 1 }));
  const tooMany = await n.report({ cache: cacheOf(many, 0) });
  recordHostile('report: a cache of 4097 entries', (tooMany as ServiceError | undefined)?.code !== status.INVALID_ARGUMENT);
  assert.equal((tooMany as ServiceError).code, status.INVALID_ARGUMENT);
  assert.match((tooMany as ServiceError).details, /^cache\.held: 4097 entries, over the limit of 4096$/);
  const badDigest = await n.report({ cache: cacheOf([{ sha256: 'sha256:zz', size: 1 }], 0) });
  recordHostile('report: a cache entry that is no digest', (badDigest as ServiceError | undefined)?.code !== status.INVALID_ARGUMENT);
  assert.match((badDigest as ServiceError).details, /cache\.held\[0\]\.sha256/);
  // Still serving: a good submission goes through.
  assert.match(await h.admin.submit({ image: 'hivemind/busybox:1', data: [mount({})] }), /^[0-9a-f]{16}$/);
});
