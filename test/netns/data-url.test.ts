// An external data set (URL@sha256:HEX) fetched by the node itself from an HTTP server that runs in
// a network namespace of its own, reached over a veth pair on a private /30: a real master and a
// real worker (processes in the root namespace, real Docker) run tasks mounting it. The server cuts
// its first answer half-way and the node resumes with a Range request; a wrong hash fails the task
// as "data rejected:" and leaves nothing in the cache; a redirect to a file: url is refused; an url
// without a hash is refused at submit, by the CLI and by the master.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { status } from '@grpc/grpc-js';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AdminClient, MasterCallError } from '../../src/client/admin-client.js';
import { DataKind } from '../../src/protocol/gen/hivemind/v1/common.js';
import { requireDockerImage, requireNetns } from '../helpers/requirements.js';
import { PeerNamespace } from '../helpers/netns-peer.js';
import { ProcessCluster } from '../helpers/process-cluster.js';
import { waitFor } from '../helpers/cli-process.js';
import { recordHostile } from '../helpers/fault-ledger.js';
import type { ServedRequest } from '../helpers/range-file-server.js';

const IMAGE = 'hivemind/busybox:1';
const SERVER = join(dirname(fileURLToPath(import.meta.url)), '..', 'helpers', 'range-file-server.js');
const PORT = 8080;
const SIZE = 8 * 1024 * 1024;

interface TaskJson {
  state: string;
  outcome?: { message: string };
}

const hexOf = (b: Buffer) => createHash('sha256').update(b).digest('hex');

test('an external data set from an HTTP server in a network namespace: resumed, verified, refused without a hash', async (t) => {
  if (!requireNetns(t) || !requireDockerImage(t, IMAGE)) return;
  const files = mkdtempSync(join(tmpdir(), 'hm-data-url-'));
  t.after(() => rmSync(files, { recursive: true, force: true }));
  const body = randomBytes(SIZE);
  writeFileSync(join(files, 'w.bin'), body);
  const sha256 = `sha256:${hexOf(body)}`;

  const peer = PeerNamespace.create();
  t.after(() => peer.destroy());
  const server = peer.spawn(process.execPath, [SERVER, files, peer.address, String(PORT)]);
  let out = '';
  server.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  server.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  t.after(() => {
    server.kill('SIGKILL');
  });
  await waitFor('the server in the namespace', () => {
    if (server.exitCode !== null) throw new Error(`the server exited: ${out}`);
    return out.includes('"listening":true') || undefined;
  }, 15_000);
  const served = (): ServedRequest[] => out.split('\n').filter((l) => l.startsWith('{"method"')).map((l) => JSON.parse(l) as ServedRequest);
  const base = `http://${peer.address}:${PORT}`;

  const cluster = await ProcessCluster.start({ workerArgs: ['--cache-max', '1g'] });
  t.after(() => cluster.close());
  const workerDir = join(cluster.home, 'worker');
  const submit = async (ref: string, script: string): Promise<string> => {
    const r = await cluster.cli(['submit', '--image', IMAGE, '--data', `${ref}:/data/w.bin`, '--json', '--', 'sh', '-c', script]);
    assert.equal(r.code, 0, r.stderr);
    return (JSON.parse(r.stdout) as { taskId: string }).taskId;
  };
  const finish = async (id: string): Promise<TaskJson> => {
    await cluster.cli(['wait', id], 120_000);
    return JSON.parse((await cluster.cli(['get', id, '--json'])).stdout) as TaskJson;
  };
  const cached = async (): Promise<{ sha256: string; state: string }[]> => {
    const ls = await cluster.cli(['worker', 'cache', 'ls', '--json', '--data-dir', workerDir]);
    assert.equal(ls.code, 0, ls.stderr);
    return JSON.parse(ls.stdout) as { sha256: string; state: string }[];
  };

  await t.test('an url without a hash is refused at submit, by the CLI and by the master', async () => {
    const r = await cluster.cli(['submit', '--image', IMAGE, '--data', `${base}/w.bin:/data/w.bin`, '--', 'true']);
    recordHostile('data url: submit --data without a sha256', r.code === 0);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /an external data set needs its sha256: URL@sha256:HEX:\/path/);
    const admin = AdminClient.connect(cluster.address, cluster.adminToken);
    try {
      const err = await admin.submit({ image: IMAGE, command: ['true'], data: [{ sha256: '', path: '/data/w.bin', size: 0, kind: DataKind.DATA_KIND_FILE, url: `${base}/w.bin` }] }).then(
        () => undefined,
        (e: unknown) => e,
      );
      const refused = err instanceof MasterCallError && err.status === status.INVALID_ARGUMENT && /spec\.data\[0\]\.sha256 "" is not a digest.*an external data set needs its sha256/.test(err.message);
      recordHostile('data url: a spec with an url and no sha256', !refused);
      assert.ok(refused, String(err));
    } finally {
      admin.close();
    }
    assert.deepEqual(served(), [], 'the master and the CLI never reached the server');
  });

  await t.test('the first answer is cut half-way: the node resumes with a Range request; the task reads the file', async () => {
    const id = await submit(`${base}/cut/w.bin@${sha256}`, 'sha256sum /data/w.bin > /output/sum.txt');
    const info = await finish(id);
    assert.equal(info.state, 'succeeded', `${JSON.stringify(info)}\nserver:\n${out}\nworker:\n${cluster.worker?.output.slice(-4000)}`);
    const dir = join(cluster.home, `out-${id}`);
    const r = await cluster.cli(['result', id, '-o', `${dir}.tar.gz`, '--extract', dir]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(readFileSync(join(dir, 'sum.txt'), 'utf8').split(' ')[0], hexOf(body), 'the task read the whole file');
    const gets = served().filter((s) => s.method === 'GET' && s.path === '/cut/w.bin');
    assert.equal(gets[0]?.cut, true, JSON.stringify(gets));
    const resumed = gets.slice(1).map((g) => Number(/^bytes=(\d+)-$/.exec(g.range ?? '')?.[1]));
    assert.ok(resumed.length >= 1 && resumed.every((from) => from > 0), `resumed with a Range from past byte 0: ${JSON.stringify(gets)}`);
    const sent = gets.reduce((n, g) => n + g.sent, 0);
    assert.ok(sent < 2 * SIZE, `${sent} bytes served for a ${SIZE}-byte file`);
    assert.deepEqual((await cached()).filter((e) => e.sha256 === sha256).map((e) => e.state), ['ready']);
  });

  await t.test('a wrong hash fails the task as "data rejected:" and nothing is cached', async () => {
    const wrong = `sha256:${hexOf(randomBytes(16))}`;
    const info = await finish(await submit(`${base}/w.bin@${wrong}`, 'cat /data/w.bin > /dev/null'));
    const rejected = info.state === 'failed' && /^data rejected: /.test(info.outcome?.message ?? '');
    recordHostile('data url: bytes that do not hash to the pinned sha256', !rejected);
    assert.equal(info.state, 'failed', JSON.stringify(info));
    assert.match(info.outcome?.message ?? '', new RegExp(`^data rejected: data set ${wrong}: the bytes hash to ${hexOf(body)}; the download was discarded`));
    assert.deepEqual((await cached()).filter((e) => e.sha256 === wrong), [], 'no cache entry');
    assert.equal(existsSync(join(workerDir, 'cache', 'partial', wrong.slice(7))), false, 'no partial file left');
    assert.equal(existsSync(join(workerDir, 'cache', 'entries', wrong.slice(7))), false, 'no entry');
  });

  await t.test('a redirect to a file: url fails the task as "data rejected:" without following it', async () => {
    const info = await finish(await submit(`${base}/redirect/w.bin@sha256:${hexOf(randomBytes(16))}`, 'true'));
    const rejected = info.state === 'failed' && /^data rejected: .*redirects to a file address/.test(info.outcome?.message ?? '');
    recordHostile('data url: a redirect to file:///etc/passwd', !rejected);
    assert.equal(info.state, 'failed', JSON.stringify(info));
    assert.match(info.outcome?.message ?? '', /^data rejected: the data set url ".*\/redirect\/w\.bin" redirects to a file address \("file:\/\/\/etc\/passwd"\): only http and https are fetched/);
  });
});
