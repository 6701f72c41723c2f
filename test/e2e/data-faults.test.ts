// Faults around data sets in tasks, with a real master, real workers as processes and real Docker:
// a node lost (frozen past the node timeout) in the middle of a data download has its task run on
// another node, once; a data set removed at the master while a node caches it is dropped from that
// node's cache. (kill -9 mid-download and a full disk under the cache are recorded where they are
// tested: e2e/data-in-tasks and integration/data-cache-disk.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { requireDockerImage } from '../helpers/requirements.js';
import { ProcessCluster, registeredNodeId } from '../helpers/process-cluster.js';
import { waitFor } from '../helpers/cli-process.js';
import { recordScenario } from '../helpers/fault-ledger.js';
import { DATA_IMAGE as IMAGE, SUCCEEDED, TERMINAL_STATES, cacheEntries, downloadsLogged, finishTask, mountOf, putData, submitWithData, taskJson } from '../helpers/data-cluster.js';

const MiB = 1024 * 1024;
const NODE_TIMEOUT_S = 5;

/** How many times the master stored a result for the task (one line per verified upload). */
const storedCount = (cluster: ProcessCluster, taskId: string): number =>
  cluster.master.output.split('\n').filter((l) => l.includes('"result stored"') && l.includes(taskId)).length;

/** The size of a file while it is between empty and `whole`, else undefined. */
function partialSize(path: string, whole: number): number | undefined {
  try {
    const n = statSync(path).size;
    return n > 0 && n < whole ? n : undefined;
  } catch {
    return undefined;
  }
}

test('a node lost (frozen past the node timeout) mid data download: the task runs on another node and is stored once', async (t) => {
  if (!requireDockerImage(t, IMAGE)) return;
  // Reports every 1 s; silent for 5 s = offline (--node-timeout), as in faults.test.ts.
  const cluster = await ProcessCluster.start({ masterArgs: ['--node-timeout', `${NODE_TIMEOUT_S}s`], workerArgs: ['--cache-max', '2g', '--name', 'lost'] });
  const a = cluster.worker!;
  try {
    const aId = await waitFor('worker A\'s node id', () => registeredNodeId(a));
    // Large enough that the download from the master on loopback is seen under way.
    const SIZE = 400 * MiB;
    const file = join(cluster.home, 'big.bin');
    await writeFile(file, randomBytes(SIZE));
    const d = await putData(cluster, file);
    const hex = d.sha256.slice('sha256:'.length);
    const id = await submitWithData(cluster, [mountOf(d, '/data/big.bin')], 'wc -c < /data/big.bin > /output/n.txt; echo "$HIVEMIND_ATTEMPT" > /output/attempt.txt');
    const partialA = join(cluster.home, 'worker', 'cache', 'partial', hex);
    const cutAt = await waitFor('A\'s download under way', () => partialSize(partialA, SIZE), 60_000, 5);
    a.child.kill('SIGSTOP');
    const frozenAt = Date.now();
    t.diagnostic(`A frozen with ${(cutAt / MiB).toFixed(2)} of ${SIZE / MiB} MiB`);
    // B comes up only now: attempt 1 was A's.
    const b = await cluster.addWorker({ workerArgs: ['--cache-max', '2g', '--name', 'spare'] });

    const w = await cluster.cli(['wait', id], 180_000);
    const lostAfterMs = Date.now() - frozenAt;
    const info = await taskJson(cluster, id);
    const dir = join(cluster.home, `out-${id}`);
    const got = w.code === 0 && info.state === SUCCEEDED && (await cluster.cli(['result', id, '-o', `${dir}.tar.gz`, '--extract', dir])).code === 0;
    const delivered = got && readFileSync(join(dir, 'n.txt'), 'utf8').trim() === String(SIZE) && readFileSync(join(dir, 'attempt.txt'), 'utf8') === '2\n';
    const stored = storedCount(cluster, id);
    const ends = info.events.filter((e) => TERMINAL_STATES.includes(e.state)).length;
    recordScenario({ name: 'node lost mid data download', faults: 1, submitted: 1, delivered: delivered ? 1 : 0, lost: delivered ? 0 : 1, duplicated: stored > 1 || ends > 1 ? 1 : 0 });
    const logs = () => `A:\n${a.output.slice(-3000)}\nB:\n${b.daemon.output.slice(-3000)}\nmaster:\n${cluster.master.output.slice(-3000)}`;
    assert.ok(delivered, `the result is attempt 2's, with the whole data set: ${JSON.stringify(info)}\n${logs()}`);
    assert.equal(info.attempt, 2);
    assert.equal(info.nodeId, b.nodeId, 'attempt 2 ran on B');
    assert.ok(info.events.some((e) => e.attempt === 1 && e.nodeId === aId && /went offline/.test(e.message)), JSON.stringify(info.events));
    assert.ok(lostAfterMs >= NODE_TIMEOUT_S * 1000, `not requeued before the node timeout (${lostAfterMs} ms)`);
    assert.equal(stored, 1, 'the master stored one result');
    assert.equal(ends, 1, 'one terminal state at the master');
    assert.equal(downloadsLogged(b.daemon.output, hex).length, 1, 'B downloaded the data set once, whole');
    assert.ok(statSync(partialA).size >= cutAt && statSync(partialA).size < SIZE, 'frozen A never finished its download');

    // A resumes: it is told its attempt was given up, and nothing it sends later counts.
    a.child.kill('SIGCONT');
    await waitFor('A told its attempt was given up', () => a.output.split('\n').some((l) => l.includes('"cancel requested by the master"') && l.includes(id)) || undefined, 60_000, 250);
    const after = await taskJson(cluster, id);
    assert.equal(after.state, SUCCEEDED);
    assert.equal(after.attempt, 2);
    assert.equal(storedCount(cluster, id), 1, 'still one result after A resumed');
  } finally {
    a.child.kill('SIGCONT');
    await cluster.close();
  }
});

test('a data set removed at the master while a node caches it is dropped from that node\'s cache', async (t) => {
  if (!requireDockerImage(t, IMAGE)) return;
  const cluster = await ProcessCluster.start({ workerArgs: ['--cache-max', '1g'] });
  try {
    const model = join(cluster.home, 'model');
    await mkdir(model, { recursive: true });
    await writeFile(join(model, 'config.json'), '{"layers":2}\n');
    await writeFile(join(model, 'w.bin'), randomBytes(2 * MiB));
    const d = await putData(cluster, model);
    const hex = d.sha256.slice('sha256:'.length);
    const workerDir = join(cluster.home, 'worker');
    const { dir } = await finishTask(cluster, await submitWithData(cluster, [mountOf(d, '/models')], 'cat /models/config.json > /output/c.txt'));
    assert.equal(readFileSync(join(dir, 'c.txt'), 'utf8'), '{"layers":2}\n');
    assert.deepEqual((await cacheEntries(cluster, workerDir)).map((e) => [e.sha256, e.state, e.inUse]), [[d.sha256, 'ready', 0]], 'cached, no task holds it');
    const entry = join(workerDir, 'cache', 'entries', hex);
    assert.ok(existsSync(entry));

    const rm = await cluster.cli(['data', 'rm', d.sha256, '--json']);
    assert.equal(rm.code, 0, rm.stderr);
    const removedAt = Date.now();
    // The worker's next report lists the digest; the master answers with drop_data.
    const dropped = await waitFor('the entry dropped from the worker\'s cache', async () => ((await cacheEntries(cluster, workerDir)).length === 0 && !existsSync(entry)) || undefined, 30_000, 250).catch(() => false);
    recordScenario({ name: 'data set removed at the master while cached on a node', faults: 1, submitted: 1, delivered: dropped ? 1 : 0, lost: dropped ? 0 : 1, duplicated: 0 });
    assert.ok(dropped, `the worker dropped ${d.sha256}:\n${cluster.worker!.output.slice(-4000)}\nmaster:\n${cluster.master.output.slice(-3000)}`);
    t.diagnostic(`dropped ${Date.now() - removedAt} ms after data rm`);
    assert.match(cluster.worker!.output, /data cache: removed \(the master dropped the data set\)/);
    // And the node keeps serving: the data set put again is downloaded anew.
    const again = await putData(cluster, model);
    assert.equal(again.sha256, d.sha256);
    const { dir: dir2 } = await finishTask(cluster, await submitWithData(cluster, [mountOf(again, '/models')], 'cat /models/config.json > /output/c.txt'));
    assert.equal(readFileSync(join(dir2, 'c.txt'), 'utf8'), '{"layers":2}\n');
    assert.equal(downloadsLogged(cluster.worker!.output, hex).length, 2, 'downloaded again after the drop');
  } finally {
    await cluster.close();
  }
});
