// A data set in a task run by the worker's own Docker image: `hivemind dev` in the image. A task's
// data mount is a bind of the worker's cache entry, which the Docker daemon resolves on the host, so
// this passes only if the worker maps its cache path to the host path of the volume or bind holding
// it (src/runtime/host-paths.ts; its pure part is in test/unit/host-paths.test.ts). Passed as it is,
// the path does not exist on the host and the task fails to start. Three layouts: the data dir on a
// named volume (as docs/docker-image.md runs it); the worker's dir on a host directory bound inside
// that volume (the deepest mount decides); no volume at all, where the task fails with a message
// saying to add one.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { requireDockerImage, requireWorkerImage } from '../helpers/requirements.js';
import { WORKER_IMAGE, WorkerContainer, docker, startDev } from '../helpers/worker-container.js';

const TASK_IMAGE = 'hivemind/busybox:1';
/** Where `hivemind dev` keeps its worker's data dir (and so the cache) under HIVEMIND_HOME. */
const DEV_WORKER_DIR = '/var/lib/hivemind/dev/worker';

interface CacheEntryJson {
  sha256: string;
  kind: string;
  state: string;
  inUse: number;
}

const requirements = (t: TestContext) => requireWorkerImage(t, WORKER_IMAGE) && requireDockerImage(t, TASK_IMAGE);

/** Puts a small directory (made in the container, where the CLI reads it) at the dev master as `image-model`. */
async function putModel(c: WorkerContainer): Promise<{ sha256: string; weightsSum: string }> {
  const mk = await c.sh('mkdir -p /tmp/model/weights && echo \'{"layers":2}\' > /tmp/model/config.json && head -c 65536 /dev/urandom > /tmp/model/weights/w.bin && sha256sum /tmp/model/weights/w.bin');
  assert.equal(mk.code, 0, mk.stderr);
  const put = await c.hivemind(['data', 'put', '/tmp/model', '--name', 'image-model', '--json']);
  assert.equal(put.code, 0, `${put.stdout}\n${put.stderr}`);
  const { sha256 } = JSON.parse(put.stdout) as { sha256: string };
  assert.match(sha256, /^sha256:[0-9a-f]{64}$/);
  return { sha256, weightsSum: mk.stdout.trim().split(/\s+/)[0]! };
}

/**
 * Runs a task mounting the put directory read-only at /models, and checks what the task saw and the
 * cache entry `worker cache ls` lists; its digest.
 */
async function roundTrip(c: WorkerContainer): Promise<string> {
  const { sha256, weightsSum } = await putModel(c);
  const script = 'cat /models/config.json > /output/config.txt; sha256sum /models/weights/w.bin > /output/sum.txt; ' +
    'if (echo x > /models/new) 2>/dev/null; then echo writable; else echo read-only; fi > /output/write.txt';
  const sub = await c.hivemind(['submit', '--image', TASK_IMAGE, '--data', 'image-model:/models', '--wait', '--', 'sh', '-c', script], 180_000);
  assert.equal(sub.code, 0, `${sub.stdout}\n${sub.stderr}\n${(await c.logs()).slice(-6000)}`);
  const taskId = sub.stdout.trim().split(/\s+/)[0]!;
  const res = await c.hivemind(['result', taskId, '-o', '/tmp/r.tar.gz', '--extract', '/tmp/r']);
  assert.equal(res.code, 0, res.stderr);
  const seen = await c.sh('cat /tmp/r/config.txt /tmp/r/sum.txt /tmp/r/write.txt');
  assert.equal(seen.code, 0, seen.stderr);
  assert.equal(seen.stdout, `{"layers":2}\n${weightsSum}  /models/weights/w.bin\nread-only\n`);

  // The entry as the operator sees it from inside the container.
  const ls = await c.hivemind(['worker', 'cache', 'ls', '--data-dir', DEV_WORKER_DIR, '--json']);
  assert.equal(ls.code, 0, ls.stderr);
  const entry = (JSON.parse(ls.stdout) as CacheEntryJson[]).find((e) => e.sha256 === sha256);
  assert.ok(entry, `${sha256} is not in the cache: ${ls.stdout}`);
  assert.deepEqual({ kind: entry.kind, state: entry.state, inUse: entry.inUse }, { kind: 'dir', state: 'ready', inUse: 0 });
  return sha256;
}

const entryFile = (sha256: string, file: string) => `cache/entries/${sha256.slice('sha256:'.length)}/${file}`;

test('the worker Docker image: a data set put at the master is mounted read-only into a task', { timeout: 300_000 }, async (t) => {
  if (!requirements(t)) return;

  await t.test('the data dir on a named volume, as the non-root user', async (t) => {
    const volume = `hm-image-data-test-${process.pid}-${Date.now().toString(36)}`;
    let c: WorkerContainer | undefined;
    // One hook, in this order: a volume in use by a container cannot be removed.
    t.after(async () => {
      await c?.close();
      await docker(['volume', 'rm', '-f', volume]);
    });
    ({ c } = await startDev(['--user', 'hivemind', '--group-add', String(statSync('/var/run/docker.sock').gid), '-v', `${volume}:/var/lib/hivemind`]));
    const sha256 = await roundTrip(c);
    // The entry is in the volume's directory on the host: where the task's bind mount came from.
    const host = await docker(['run', '--rm', '-v', `${volume}:/v:ro`, TASK_IMAGE, 'cat', `/v/dev/worker/${entryFile(sha256, 'config.json')}`]);
    assert.equal(host.stdout, '{"layers":2}\n', host.stderr);
  });

  await t.test("the worker's dir on a host directory bound inside the data volume, as root", async (t) => {
    const volume = `hm-image-data-test-${process.pid}-${Date.now().toString(36)}`;
    const hostDir = await mkdtemp(join(tmpdir(), 'hm-image-data-'));
    let c: WorkerContainer | undefined;
    t.after(async () => {
      await c?.close();
      await docker(['volume', 'rm', '-f', volume]);
      await rm(hostDir, { recursive: true, force: true });
    });
    ({ c } = await startDev(['--user', '0:0', '-v', `${volume}:/var/lib/hivemind`, '-v', `${hostDir}:${DEV_WORKER_DIR}`]));
    const sha256 = await roundTrip(c);
    assert.equal(statSync(join(hostDir, entryFile(sha256, 'config.json'))).size, '{"layers":2}\n'.length);
  });

  await t.test('the data dir in the container\'s own layer (no volume): the task fails to start, saying to use a volume', async (t) => {
    let c: WorkerContainer | undefined;
    t.after(async () => c?.close());
    ({ c } = await startDev(['--user', 'hivemind', '--group-add', String(statSync('/var/run/docker.sock').gid)]));
    await putModel(c);
    const sub = await c.hivemind(['submit', '--image', TASK_IMAGE, '--data', 'image-model:/models', '--wait', '--', 'true'], 180_000);
    assert.notEqual(sub.code, 0, sub.stdout);
    assert.match(sub.stdout, /failed start_failed, \/var\/lib\/hivemind\/dev\/worker\/cache\/entries\/[0-9a-f]{64} is inside the worker's container but on no volume or bind mount, so Docker cannot mount it into a task: put the worker's data dir on a volume \(-v hivemind-data:\/var\/lib\/hivemind\)/);
  });
});
