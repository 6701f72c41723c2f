// Data sets in tasks, end to end: a real master and worker as processes, real Docker. A directory
// put with `hivemind data put` is mounted read-only at /models by two tasks: both read its files,
// neither can write there, the second is a cache hit (downloaded once); kill -9 of the worker in the
// middle of a download resumes from its partial file after the restart; an external data set is
// fetched by the node from an HTTP server on loopback.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { DataKind, type DataMount } from '../../src/protocol/gen/hivemind/v1/common.js';
import { requireDockerImage } from '../helpers/requirements.js';
import { ProcessCluster } from '../helpers/process-cluster.js';
import { waitFor } from '../helpers/cli-process.js';
import { recordScenario } from '../helpers/fault-ledger.js';
import { DATA_IMAGE as IMAGE, cacheEntries, downloadsLogged as logged, finishTask as finish, putData as put, submitWithData as submit } from '../helpers/data-cluster.js';

const MiB = 1024 * 1024;
const downloadsLogged = (cluster: ProcessCluster, hex: string) => logged(cluster.worker?.output, hex);

const READS = 'cat /models/config.json > /output/config.txt; ls /models /models/weights > /output/ls.txt; ' +
  'if (echo x > /models/new) 2>/dev/null || (echo x >> /models/config.json) 2>/dev/null; then echo writable; else echo read-only; fi > /output/write.txt';

test('a data set mounted by two tasks: files visible, read-only, downloaded once (the second is a cache hit)', async (t) => {
  if (!requireDockerImage(t, IMAGE)) return;
  const cluster = await ProcessCluster.start({ workerArgs: ['--cache-max', '1g'] });
  try {
    const model = join(cluster.home, 'model');
    await mkdir(join(model, 'weights'), { recursive: true });
    await writeFile(join(model, 'config.json'), '{"layers":2}\n');
    await writeFile(join(model, 'weights', 'w.bin'), randomBytes(3 * MiB));
    const d = await put(cluster, model);
    const mount: DataMount = { sha256: d.sha256, path: '/models', size: d.size, kind: d.kind, url: '' };
    for (const n of [1, 2]) {
      const { dir } = await finish(cluster, await submit(cluster, [mount], READS));
      assert.equal(readFileSync(join(dir, 'config.txt'), 'utf8'), '{"layers":2}\n', `task ${n} reads the data set`);
      assert.match(readFileSync(join(dir, 'ls.txt'), 'utf8'), /config\.json[\s\S]*w\.bin/);
      assert.equal(readFileSync(join(dir, 'write.txt'), 'utf8'), 'read-only\n', `task ${n} cannot change the data set`);
    }
    const hex = d.sha256.slice('sha256:'.length);
    assert.equal(downloadsLogged(cluster, hex).length, 1, 'downloaded once: the second task was a cache hit');
    const entries = await cacheEntries(cluster, join(cluster.home, 'worker'));
    assert.deepEqual(entries.map((e) => [e.sha256, e.state, e.uses, e.inUse]), [[d.sha256, 'ready', 2, 0]], 'two uses, no lease left');
    const entry = join(cluster.home, 'worker', 'cache', 'entries', hex);
    assert.equal(statSync(join(entry, 'config.json')).mode & 0o777, 0o444);
    assert.equal(statSync(entry).mode & 0o777, 0o555);
  } finally {
    await cluster.close();
  }
});

test('kill -9 of the worker in the middle of a data download: the restarted worker resumes it from its partial file', async (t) => {
  if (!requireDockerImage(t, IMAGE)) return;
  const cluster = await ProcessCluster.start({ workerArgs: ['--cache-max', '2g'], reportInterval: '2s' });
  try {
    const file = join(cluster.home, 'big.bin');
    const SIZE = 400 * MiB;
    await writeFile(file, randomBytes(SIZE));
    const d = await put(cluster, file);
    const hex = d.sha256.slice('sha256:'.length);
    const id = await submit(cluster, [{ sha256: d.sha256, path: '/data/big.bin', size: d.size, kind: d.kind, url: '' }], 'wc -c < /data/big.bin > /output/n.txt');
    const partial = join(cluster.home, 'worker', 'cache', 'partial', hex);
    const cutAt = await waitFor('the download under way', () => {
      try {
        const n = statSync(partial).size;
        return n > 0 && n < SIZE ? n : undefined;
      } catch {
        return undefined;
      }
    }, 60_000, 5);
    await cluster.worker!.stop('SIGKILL');
    const atKill = statSync(partial).size;
    await cluster.startWorker({ workerArgs: ['--cache-max', '2g'], reportInterval: '2s' });
    const { dir } = await finish(cluster, id);
    assert.equal(readFileSync(join(dir, 'n.txt'), 'utf8').trim(), String(SIZE));
    const logged = downloadsLogged(cluster, hex);
    assert.equal(logged.length, 1);
    const resumedFrom = logged[0]!.resumedFrom;
    recordScenario({ name: 'kill -9 mid data download', faults: 1, submitted: 1, delivered: 1, lost: 0, duplicated: 0 });
    assert.ok(resumedFrom > 0 && resumedFrom >= cutAt, `resumed from ${resumedFrom} (cut at ${cutAt}, ${atKill} on disk at the kill)`);
    // bytes served by the master: what reached the disk before the kill, then the rest once
    assert.ok(atKill + (SIZE - resumedFrom) < 2 * SIZE);
  } finally {
    await cluster.close();
  }
});

test('an external data set (url with a pinned sha256) is fetched by the node from an HTTP server', async (t) => {
  if (!requireDockerImage(t, IMAGE)) return;
  const body = randomBytes(2 * MiB);
  const served: string[] = [];
  const server = createServer((req, res) => {
    served.push(`${req.method} ${req.headers.range ?? ''}`);
    res.writeHead(200, { 'content-length': body.length });
    res.end(req.method === 'HEAD' ? undefined : body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => new Promise<void>((r) => server.close(() => r())));
  const cluster = await ProcessCluster.start({ workerArgs: ['--cache-max', '1g'] });
  try {
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/w.bin`;
    const sha256 = `sha256:${createHash('sha256').update(body).digest('hex')}`;
    // the size left out (0), as `submit --data URL@sha256:…` sends it: the node asks the server
    const id = await submit(cluster, [{ sha256, path: '/data/w.bin', size: 0, kind: DataKind.DATA_KIND_FILE, url }], 'sha256sum /data/w.bin > /output/sum.txt');
    const { dir } = await finish(cluster, id);
    assert.equal(readFileSync(join(dir, 'sum.txt'), 'utf8').split(' ')[0], sha256.slice(7));
    assert.deepEqual(served, ['HEAD ', 'GET '], 'its size asked, then its bytes fetched once');
  } finally {
    await cluster.close();
  }
});
