// Data sets through a real master (gRPC, SQLite or PostgreSQL, its data dir) and the real `hivemind data` CLI as
// a process: put, a second put that sends nothing (counted by the bytes the master received), a put
// killed with SIGKILL mid-upload and resumed from the master's partial, get verified and extracted,
// rm refused while a live task references the data set, and hostile puts over a raw client.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { status, type Metadata, type ServiceError } from '@grpc/grpc-js';
import { AdminClient } from '../../src/client/admin-client.js';
import { createLogger } from '../../src/common/logger.js';
import { DataStore } from '../../src/master/data-store.js';
import { Master } from '../../src/master/master.js';
import { bearerMetadata } from '../../src/protocol/auth-metadata.js';
import { DataServiceChunkClient } from '../../src/protocol/chunk-codec.js';
import { DATA_LIMITS } from '../../src/protocol/data-rules.js';
import { channelOptions, insecureTransport } from '../../src/protocol/transport.js';
import { type DataServiceClient, type DataSetInfo, type ListDataResponse, type PutDataHeader } from '../../src/protocol/gen/hivemind/v1/data.js';
import { DataKind } from '../../src/protocol/gen/hivemind/v1/common.js';
import { CLI, runCli, type CliResult } from '../helpers/cli-process.js';
import { recordHostile } from '../helpers/fault-ledger.js';
import { masterStoreOption } from '../helpers/test-store.js';

const MiB = 1024 * 1024;
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

interface PutLog {
  msg: string;
  sha256?: string;
  offset?: number;
  received?: number;
  alreadyHeld?: boolean;
  err?: string;
}

async function harness(t: TestContext, opts: { maxDataBytes?: number } = {}) {
  const dir = await mkdtemp(join(tmpdir(), 'hm-data-'));
  const lines: PutLog[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n')) if (l.trim()) lines.push(JSON.parse(l) as PutLog);
      cb();
    },
  });
  const dataDir = join(dir, 'master');
  // One store for the harness's life: a restarted master finds its data sets again.
  const storeOpt = masterStoreOption();
  const logger = createLogger({ level: 'info', destination: sink });
  const start = async () => {
    const master = await Master.create({ listenAddress: '127.0.0.1:0', gatewayListen: '127.0.0.1:0', dataDir, shutdownGraceMs: 200, ...opts, ...storeOpt }, { logger });
    const address = await master.start();
    const adminToken = (await readFile(master.adminTokenPath, 'utf8')).trim();
    const admin = AdminClient.connect(address, adminToken);
    const raw = new DataServiceChunkClient(address, insecureTransport.clientCredentials(), channelOptions);
    return { master, address, adminToken, admin, raw, md: bearerMetadata(adminToken), auth: ['--master', address, '--admin-token', adminToken] };
  };
  let s = await start();
  const stop = async () => {
    s.raw.close();
    s.admin.close();
    await s.master.close();
  };
  t.after(async () => {
    await stop();
    await rm(dir, { recursive: true, force: true });
  });
  const env = { ...process.env, HOME: dir, HIVEMIND_CONFIG: '' };
  const cli = (args: string[]): Promise<CliResult> => runCli([...args, ...s.auth], env, 120_000);
  /** The master's log lines about puts of `hex`, in order. */
  const puts = (hex: string) => lines.filter((l) => l.msg.startsWith('data put:') && l.sha256 === `sha256:${hex}`);
  const partialOf = (hex: string) => join(dataDir, 'data', 'sha256', `${hex}.partial`);
  return {
    dir, dataDir, cli, env, puts, partialOf, lines,
    /** Where the master keeps its state, for a test that writes a row the API cannot. */
    storeLocation: storeOpt.store ?? join(dataDir, 'master.db'),
    get admin() { return s.admin; },
    get raw() { return s.raw; },
    get md() { return s.md; },
    get auth() { return s.auth; },
    /** A master restart on the same data dir (a new port). */
    restart: async () => {
      await stop();
      s = await start();
    },
  };
}

test('put stores a file once: a second put sends nothing, ls lists it, get verifies it, rm removes it', async (t) => {
  const h = await harness(t);
  const bytes = randomBytes(3 * MiB + 17);
  const file = join(h.dir, 'weights.bin');
  await writeFile(file, bytes);
  const hex = sha256(bytes);

  const first = await h.cli(['data', 'put', file, '--name', 'weights']);
  assert.equal(first.code, 0, first.stderr);
  assert.equal(first.stdout.trim(), `sha256:${hex}`);
  assert.equal(h.puts(hex)[0]?.received, bytes.length);

  const second = await h.cli(['data', 'put', file, '--name', 'weights-copy', '--json']);
  assert.equal(second.code, 0, second.stderr);
  const out = JSON.parse(second.stdout) as { sha256: string; alreadyHeld: boolean; hashed: boolean; sentBytes: number; names: string[] };
  assert.equal(out.alreadyHeld, true);
  assert.equal(out.hashed, false, 'unchanged since the first put: not hashed again');
  assert.equal(out.sentBytes, 0);
  assert.deepEqual(out.names, ['weights', 'weights-copy']);
  // Measured where it counts: the master received no byte of the second put.
  const second_ = h.puts(hex)[1];
  assert.equal(second_?.received, 0);
  assert.equal(second_?.alreadyHeld, true);
  assert.deepEqual(await readdir(join(h.dataDir, 'data', 'sha256')), [hex], 'stored once, no partial left');
  // The same file with one byte changed (same size) is hashed again and is another data set.
  const changed = join(h.dir, 'weights-2.bin');
  const bytes2 = Buffer.from(bytes);
  bytes2[7] = bytes2[7]! ^ 1;
  await writeFile(changed, bytes2);
  const memoHit = await h.cli(['data', 'put', changed, '--json']);
  assert.equal(memoHit.code, 0, memoHit.stderr);
  assert.equal((JSON.parse(memoHit.stdout) as { hashed: boolean }).hashed, true, 'a file never put is hashed');
  await writeFile(changed, bytes);
  const third = await h.cli(['data', 'put', changed, '--json']);
  assert.equal(third.code, 0, third.stderr);
  const t3 = JSON.parse(third.stdout) as { sha256: string; hashed: boolean; alreadyHeld: boolean };
  assert.deepEqual([t3.sha256, t3.hashed, t3.alreadyHeld], [`sha256:${hex}`, true, true], 'rewritten since its last put: hashed again, not taken from the memo');
  const removeChanged = await h.cli(['data', 'rm', `sha256:${sha256(bytes2)}`]);
  assert.equal(removeChanged.code, 0, removeChanged.stderr);

  const ls = await h.cli(['data', 'ls', '--json']);
  assert.equal(ls.code, 0, ls.stderr);
  const listed = JSON.parse(ls.stdout) as { sha256: string; names: string[]; size: number; kind: string; createdAt: string }[];
  assert.deepEqual(listed.map((d) => ({ sha256: d.sha256, names: d.names, size: d.size, kind: d.kind })), [{ sha256: `sha256:${hex}`, names: ['weights', 'weights-copy'], size: bytes.length, kind: 'file' }]);
  const human = await h.cli(['data', 'ls']);
  assert.match(human.stdout, new RegExp(`sha256:${hex}\\s+weights,weights-copy\\s+3\\.0 MiB\\s+file`));

  const got = join(h.dir, 'got.bin');
  const get = await h.cli(['data', 'get', 'weights', '-o', got]);
  assert.equal(get.code, 0, get.stderr);
  assert.deepEqual(await readFile(got), bytes);
  assert.equal(existsSync(`${got}.partial`), false);
  // An interrupted get resumes from its partial file; a partial of other bytes fails the check and is deleted.
  const again = join(h.dir, 'again.bin');
  await writeFile(`${again}.partial`, bytes.subarray(0, MiB));
  const resumed = await h.cli(['data', 'get', `sha256:${hex}`, '-o', again, '--json']);
  assert.equal(resumed.code, 0, resumed.stderr);
  assert.equal((JSON.parse(resumed.stdout) as { resumedFrom: number }).resumedFrom, MiB);
  assert.deepEqual(await readFile(again), bytes);
  const wrong = join(h.dir, 'wrong.bin');
  await writeFile(`${wrong}.partial`, randomBytes(MiB));
  const mismatch = await h.cli(['data', 'get', 'weights', '-o', wrong]);
  recordHostile('data get: a partial download holding other bytes', mismatch.code === 0);
  assert.equal(mismatch.code, 1);
  assert.match(mismatch.stderr, /expected 3145745 bytes; the partial file was deleted, get again/);
  assert.equal(existsSync(wrong), false);
  assert.equal(existsSync(`${wrong}.partial`), false);

  const removed = await h.cli(['data', 'rm', 'weights-copy']);
  assert.equal(removed.code, 0, removed.stderr);
  assert.match(removed.stdout, /names weights, weights-copy/);
  assert.deepEqual(await readdir(join(h.dataDir, 'data', 'sha256')), []);
  const gone = await h.cli(['data', 'get', `sha256:${hex}`, '-o', got]);
  assert.equal(gone.code, 1);
  assert.match(gone.stderr, /NOT_FOUND|no data set/);
});

test('a directory is put as its canonical tar: the same tree elsewhere is the same data set, and get --extract rebuilds it', async (t) => {
  const h = await harness(t);
  const make = async (root: string, mtime: number, loose: boolean) => {
    await mkdir(join(root, 'tokenizer'), { recursive: true });
    await writeFile(join(root, 'config.json'), '{"layers": 2}\n');
    await writeFile(join(root, 'tokenizer', 'vocab.txt'), 'a\nb\nc\n');
    await writeFile(join(root, 'run.sh'), '#!/bin/sh\n');
    await chmod(join(root, 'run.sh'), loose ? 0o775 : 0o700);
    await chmod(join(root, 'config.json'), loose ? 0o664 : 0o600);
    for (const f of ['config.json', 'tokenizer/vocab.txt', 'run.sh']) await utimes(join(root, f), mtime, mtime);
  };
  await make(join(h.dir, 'model-a'), 1_000, false);
  await make(join(h.dir, 'model-b'), 1_600_000_000, true);
  const a = await h.cli(['data', 'put', join(h.dir, 'model-a'), '--name', 'tiny-model']);
  assert.equal(a.code, 0, a.stderr);
  const b = await h.cli(['data', 'put', join(h.dir, 'model-b')]);
  assert.equal(b.code, 0, b.stderr);
  assert.equal(b.stdout, a.stdout, 'same tree, same digest');
  assert.match(b.stderr, /held by the master already, nothing sent/);
  const hex = a.stdout.trim().slice('sha256:'.length);
  assert.equal(h.puts(hex)[1]?.received, 0);

  const dest = join(h.dir, 'out');
  const get = await h.cli(['data', 'get', 'tiny-model', '-o', join(h.dir, 'model.tar'), '--extract', dest]);
  assert.equal(get.code, 0, get.stderr);
  assert.equal(await readFile(join(dest, 'tokenizer', 'vocab.txt'), 'utf8'), 'a\nb\nc\n');
  assert.equal((await stat(join(dest, 'run.sh'))).mode & 0o777, 0o755);
  assert.equal((await stat(join(dest, 'config.json'))).mode & 0o777, 0o644);

  const file = await h.cli(['data', 'put', join(h.dir, 'model-a', 'config.json'), '--name', 'cfg']);
  // Listings page: one data set a page, the token leads to the other, then the end.
  const page = (pageToken: string) => new Promise<ListDataResponse>((resolve, reject) => h.raw.listData({ limit: 1, pageToken }, h.md, (err, r) => (err ? reject(err) : resolve(r))));
  const p1 = await page('');
  const p2 = await page(p1.nextPageToken);
  assert.deepEqual([...p1.dataSets, ...p2.dataSets].map((d) => d.names), [['cfg'], ['tiny-model']]);
  assert.equal(p2.nextPageToken === '' || (await page(p2.nextPageToken)).dataSets.length === 0, true);
  const notDir = await h.cli(['data', 'get', 'cfg', '-o', join(h.dir, 'cfg.json'), '--extract', join(h.dir, 'cfg-out')]);
  assert.equal(file.code, 0);
  assert.notEqual(notDir.code, 0);
  assert.match(notDir.stderr, /is a file data set, not a directory/);
});

test('a put killed with SIGKILL mid-upload resumes on the next put from the bytes the master holds', async (t) => {
  const h = await harness(t);
  const bytes = randomBytes(64 * MiB);
  const file = join(h.dir, 'big.bin');
  await writeFile(file, bytes);
  const hex = sha256(bytes);
  const partial = h.partialOf(hex);

  // Kill the CLI once the master holds part of the upload (tries again if an upload outran the poll).
  let held = 0;
  for (let attempt = 0; attempt < 5 && held === 0; attempt++) {
    const child = spawn(process.execPath, [CLI, 'data', 'put', file, '--name', 'big', ...h.auth], { env: h.env, stdio: 'ignore' });
    const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
    for (;;) {
      const size = (await stat(partial).catch(() => undefined))?.size ?? 0;
      if (size > 2 * MiB) {
        child.kill('SIGKILL');
        break;
      }
      if (child.exitCode !== null) break;
      await new Promise((r) => setTimeout(r, 2));
    }
    await exited;
    await new Promise((r) => setTimeout(r, 200)); // the master notices the cancelled call
    held = (await stat(partial).catch(() => undefined))?.size ?? 0;
    if (held === 0) await h.cli(['data', 'rm', 'big']); // it finished first: start over
  }
  recordHostile('data put: the CLI killed (SIGKILL) mid-upload', held === 0);
  assert.ok(held > 0 && held < bytes.length, `a partial upload is held (${held} of ${bytes.length} bytes)`);

  const again = await h.cli(['data', 'put', file, '--name', 'big', '--json']);
  assert.equal(again.code, 0, again.stderr);
  const out = JSON.parse(again.stdout) as { resumedFrom: number; sentBytes: number; sha256: string };
  assert.equal(out.sha256, `sha256:${hex}`);
  assert.equal(out.resumedFrom, held, 'the put resumed where the master partial ended');
  const log = h.puts(hex).at(-1)!;
  assert.equal(log.offset, held);
  assert.equal(log.received, bytes.length - held, 'only the missing bytes crossed the wire');
  assert.equal(existsSync(partial), false);
  assert.equal(sha256(await readFile(join(h.dataDir, 'data', 'sha256', hex))), hex);
});

test('a partial put survives a master restart: the next put resumes from it and the digest is checked over all bytes', async (t) => {
  const h = await harness(t);
  const bytes = randomBytes(3 * MiB);
  const hex = sha256(bytes);
  const file = join(h.dir, 'model.bin');
  await writeFile(file, bytes);
  const first = [0, 1, 2].map((i) => bytes.subarray(i * 256 * 1024, (i + 1) * 256 * 1024));
  const cut = await refusal(rawPut(h.raw, h.md, { header: { sha256: `sha256:${hex}`, size: bytes.length }, chunks: first }).done);
  assert.match(cut?.details ?? '', /the stream ended at byte 786432 of 3145728; the master keeps what it got, put again to resume/);
  await h.restart();
  const again = await h.cli(['data', 'put', file, '--json']);
  assert.equal(again.code, 0, again.stderr);
  const out = JSON.parse(again.stdout) as { resumedFrom: number; sha256: string };
  assert.equal(out.resumedFrom, 3 * 256 * 1024);
  assert.equal(h.puts(hex).at(-1)?.received, bytes.length - 3 * 256 * 1024);
  assert.equal(sha256(await readFile(join(h.dataDir, 'data', 'sha256', hex))), hex);
});

test('a partial holding other bytes than its digest is caught at the end, discarded, and the put sent again whole', async (t) => {
  const h = await harness(t);
  const bytes = randomBytes(2 * MiB);
  const hex = sha256(bytes);
  const file = join(h.dir, 'data.bin');
  await writeFile(file, bytes);
  // Another client (or a flipped bit on the master's disk) left a partial of this digest with wrong bytes.
  await refusal(rawPut(h.raw, h.md, { header: { sha256: `sha256:${hex}`, size: bytes.length }, chunks: [randomBytes(256 * 1024)] }).done);
  assert.equal((await stat(h.partialOf(hex))).size, 256 * 1024);
  const put = await h.cli(['data', 'put', file, '--json']);
  assert.equal(put.code, 0, put.stderr);
  const out = JSON.parse(put.stdout) as { restartedAfterMismatch: boolean; resumedFrom: number };
  const stored = await readFile(join(h.dataDir, 'data', 'sha256', hex));
  recordHostile('data put: a partial of the digest holding other bytes', sha256(stored) !== hex);
  assert.equal(sha256(stored), hex);
  assert.equal(out.restartedAfterMismatch, true);
  assert.equal(out.resumedFrom, 0);
  const logs = h.puts(hex);
  assert.equal(logs.at(-1)?.offset, 0);
  assert.equal(logs.at(-1)?.received, bytes.length);
  assert.ok(h.lines.some((l) => /hash to sha256:[0-9a-f]{64}, not the declared digest; the partial upload was discarded/.test(l.err ?? '')));
});

test('rm is refused while a queued task references the data set, with the task listed; allowed once it ended', async (t) => {
  const h = await harness(t);
  const file = join(h.dir, 'corpus.txt');
  await writeFile(file, 'the corpus\n'.repeat(1000));
  const put = await h.cli(['data', 'put', file, '--name', 'corpus']);
  assert.equal(put.code, 0, put.stderr);
  const hex = put.stdout.trim().slice('sha256:'.length);
  const taskId = await h.admin.submit({ image: 'hivemind/busybox:1', command: ['true'] });
  // Tasks name data sets in part 2; the reference row is what that part writes.
  const store = DataStore.open(h.storeLocation);
  t.after(() => store.close());
  store.addTaskReference(taskId, hex, '/data/corpus');

  const refused = await h.cli(['data', 'rm', 'corpus']);
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, new RegExp(`used by 1 queued or running task\\(s\\): ${taskId} \\(queued, at /data/corpus\\)`));
  assert.ok(existsSync(join(h.dataDir, 'data', 'sha256', hex)), 'nothing removed');

  await h.admin.cancelTask(taskId, 'test');
  const allowed = await h.cli(['data', 'rm', `sha256:${hex}`]);
  assert.equal(allowed.code, 0, allowed.stderr);
  assert.equal(existsSync(join(h.dataDir, 'data', 'sha256', hex)), false);
});

// ---- hostile puts over a raw client

interface RawPut {
  header?: Partial<PutDataHeader>;
  chunks?: Buffer[];
  /** Leave the stream open after writing (for concurrency tests); cancel() ends it. */
  hold?: boolean;
  md?: Metadata;
}

function rawPut(client: DataServiceClient, md: Metadata, p: RawPut): { done: Promise<DataSetInfo>; cancel: () => void } {
  let cancel = () => {};
  const done = new Promise<DataSetInfo>((resolve, reject) => {
    const call = client.putData(p.md ?? md, (err, res) => (err ? reject(err) : resolve(res)));
    cancel = () => call.cancel();
    if (p.header) call.write({ part: { $case: 'header', value: { sha256: '', size: 0, kind: DataKind.DATA_KIND_FILE, name: '', offset: 0, ...p.header } } });
    for (const c of p.chunks ?? []) call.write({ part: { $case: 'chunk', value: c } });
    if (!p.hold) call.end();
  });
  done.catch(() => undefined);
  return { done, cancel };
}

async function refusal(p: Promise<unknown>): Promise<ServiceError | undefined> {
  try {
    await p;
    return undefined;
  } catch (err) {
    return err as ServiceError;
  }
}

test('hostile puts are refused with the field and the limit named, nothing of them is kept, and the master keeps serving', async (t) => {
  const maxDataBytes = 8 * MiB;
  const h = await harness(t, { maxDataBytes });
  const body = randomBytes(MiB);
  const chunks = [0, 1, 2, 3].map((i) => body.subarray(i * 256 * 1024, (i + 1) * 256 * 1024));
  const hex = sha256(body);
  const digest = `sha256:${hex}`;
  const dataFiles = () => readdir(join(h.dataDir, 'data', 'sha256'));

  const cases: { name: string; put: RawPut; code: status; message: RegExp }[] = [
    { name: 'no admin token', put: { header: { sha256: digest, size: body.length }, chunks, md: bearerMetadata('') }, code: status.UNAUTHENTICATED, message: /admin token/ },
    { name: 'a wrong admin token', put: { header: { sha256: digest, size: body.length }, chunks, md: bearerMetadata('hma1.wrong') }, code: status.UNAUTHENTICATED, message: /wrong admin token/ },
    { name: 'a declared size over maxDataBytes', put: { header: { sha256: digest, size: 64 * 1024 ** 3 }, chunks }, code: status.INVALID_ARGUMENT, message: /over this master's limit of 8\.0 MiB \(maxDataBytes\); nothing was stored/ },
    { name: 'a declared size of 0', put: { header: { sha256: digest, size: 0 } }, code: status.INVALID_ARGUMENT, message: /not a positive number of bytes/ },
    { name: 'more bytes than declared', put: { header: { sha256: digest, size: body.length - 1 }, chunks }, code: status.INVALID_ARGUMENT, message: /more bytes than the 1048575 declared.*discarded/ },
    { name: 'a chunk over the chunk bound', put: { header: { sha256: `sha256:${sha256(Buffer.alloc(600 * 1024))}`, size: 600 * 1024 }, chunks: [Buffer.alloc(600 * 1024)] }, code: status.INVALID_ARGUMENT, message: new RegExp(`chunks hold 1 to ${DATA_LIMITS.maxChunkBytes} bytes`) },
    { name: 'an empty chunk', put: { header: { sha256: digest, size: body.length }, chunks: [Buffer.alloc(0)] }, code: status.INVALID_ARGUMENT, message: /chunks hold 1 to/ },
    { name: 'bytes that do not hash to the declared digest', put: { header: { sha256: `sha256:${'0'.repeat(64)}`, size: body.length }, chunks }, code: status.INVALID_ARGUMENT, message: /hash to sha256:[0-9a-f]{64}, not the declared digest; the partial upload was discarded/ },
    { name: 'an uppercase digest', put: { header: { sha256: digest.toUpperCase(), size: body.length }, chunks }, code: status.INVALID_ARGUMENT, message: /sha256 ".*" is not a digest/ },
    { name: 'a digest without its prefix', put: { header: { sha256: hex, size: body.length }, chunks }, code: status.INVALID_ARGUMENT, message: /is not a digest/ },
    { name: 'a name with a path and controls', put: { header: { sha256: digest, size: body.length, name: '../\u001b[2Jx' }, chunks }, code: status.INVALID_ARGUMENT, message: /name ".*" is not a data set name/ },
    { name: 'a 100 kB name', put: { header: { sha256: digest, size: body.length, name: 'n'.repeat(100_000) }, chunks }, code: status.INVALID_ARGUMENT, message: /…\(100000 bytes\)" is not a data set name: 1 to 128/ },
    { name: 'an unknown kind', put: { header: { sha256: digest, size: body.length, kind: 7 as DataKind }, chunks }, code: status.INVALID_ARGUMENT, message: /kind 7 is not FILE/ },
    { name: 'chunks without a header', put: { chunks }, code: status.INVALID_ARGUMENT, message: /must start with a header/ },
    { name: 'an offset past what the master holds', put: { header: { sha256: digest, size: body.length, offset: 4096 }, chunks }, code: status.FAILED_PRECONDITION, message: /holds 0 bytes of it, the header says offset 4096/ },
  ];
  for (const c of cases) {
    const err = await refusal(rawPut(h.raw, h.md, c.put).done);
    recordHostile(`data put: ${c.name}`, err === undefined || err.code !== c.code);
    assert.ok(err, `${c.name}: refused`);
    assert.equal(err.code, c.code, `${c.name}: ${err.details}`);
    assert.match(err.details, c.message, c.name);
    assert.ok(err.details.length <= 1024, `${c.name}: the message is short`);
  }
  assert.deepEqual(await dataFiles(), [], 'nothing of the refused puts is kept');

  // Too many puts at once: the fifth open put is RESOURCE_EXHAUSTED, the four go on.
  const open = Array.from({ length: DATA_LIMITS.maxConcurrentUploads }, () => {
    const b = randomBytes(64 * 1024);
    return rawPut(h.raw, h.md, { header: { sha256: `sha256:${sha256(Buffer.concat([b, b]))}`, size: 2 * b.length }, chunks: [b], hold: true });
  });
  // the master has taken each put once its partial exists
  for (let i = 0; i < 200 && (await dataFiles()).length < open.length; i++) await new Promise((r) => setTimeout(r, 10));
  const fifth = await refusal(rawPut(h.raw, h.md, { header: { sha256: digest, size: body.length }, chunks }).done);
  recordHostile('data put: one more concurrent put than the master takes', fifth?.code !== status.RESOURCE_EXHAUSTED);
  assert.equal(fifth?.code, status.RESOURCE_EXHAUSTED, fifth?.details);
  assert.match(fifth.details, /4 puts are under way, the most this master takes at once; retry when one ends/);
  for (const o of open) o.cancel();
  await Promise.all(open.map((o) => refusal(o.done)));

  // Interrupted puts are kept for a resume, but no more than maxPartials of them.
  for (let i = 0; i < DATA_LIMITS.maxPartials + 4; i++) {
    const b = randomBytes(4096);
    await refusal(rawPut(h.raw, h.md, { header: { sha256: `sha256:${sha256(Buffer.concat([b, b]))}`, size: 2 * b.length }, chunks: [b] }).done);
  }
  const partials = (await dataFiles()).filter((f) => f.endsWith('.partial')).length;
  recordHostile(`data put: ${DATA_LIMITS.maxPartials + 8} interrupted puts left behind`, partials > DATA_LIMITS.maxPartials);
  assert.equal(partials, DATA_LIMITS.maxPartials);

  // The master still serves: a proper put of the same bytes goes through.
  const ok = await rawPut(h.raw, h.md, { header: { sha256: digest, size: body.length, name: 'fine' }, chunks }).done;
  assert.equal(ok.sha256, digest);
  assert.deepEqual(ok.names, ['fine']);

  // Downloads and lookups with hostile arguments.
  const fetch = (sha: string, offset: number, md = h.md) =>
    new Promise<number>((resolve, reject) => {
      let n = 0;
      const call = h.raw.fetchData({ sha256: sha, offset }, md);
      call.on('data', (c: { data: Buffer }) => (n += c.data.length));
      call.on('error', reject);
      call.on('end', () => resolve(n));
    });
  const unary = <T>(fn: (cb: (err: ServiceError | null, r: T) => void) => void) => new Promise<T>((resolve, reject) => fn((err, r) => (err ? reject(err) : resolve(r))));
  const reads: { name: string; call: () => Promise<unknown>; code: status; message: RegExp }[] = [
    { name: 'FetchData past the end', call: () => fetch(digest, body.length + 1), code: status.INVALID_ARGUMENT, message: /offset 1048577 is past the end of the 1048576-byte data set/ },
    { name: 'FetchData with a malformed digest', call: () => fetch('sha256:../../etc/passwd', 0), code: status.INVALID_ARGUMENT, message: /is not a digest/ },
    { name: 'FetchData of an unknown digest', call: () => fetch(`sha256:${'1'.repeat(64)}`, 0), code: status.NOT_FOUND, message: /no data set sha256:1{64}/ },
    { name: 'FetchData without the admin token', call: () => fetch(digest, 0, bearerMetadata('')), code: status.UNAUTHENTICATED, message: /admin token/ },
    { name: 'RemoveData of a 100 kB ref', call: () => unary((cb) => h.raw.removeData({ ref: 'r'.repeat(100_000) }, h.md, cb)), code: status.INVALID_ARGUMENT, message: /…\(100000 bytes\)" is not a data set name/ },
    { name: 'ListData with a forged page token', call: () => unary((cb) => h.raw.listData({ limit: 0, pageToken: 'forged' }, h.md, cb)), code: status.INVALID_ARGUMENT, message: /page_token "forged" is not a token this master returned/ },
  ];
  // One at a time: a call made before the loop reached it would reject with no handler yet.
  for (const r of reads) {
    const err = await refusal(r.call());
    recordHostile(`data: ${r.name}`, err === undefined || err.code !== r.code);
    assert.equal(err?.code, r.code, `${r.name}: ${err?.details}`);
    assert.match(err.details, r.message, r.name);
  }
  assert.equal(await fetch(digest, body.length - 10), 10, 'a download from an offset serves the rest');
});
