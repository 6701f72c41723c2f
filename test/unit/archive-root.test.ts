import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import tarStream from 'tar-stream';
import { dockerRootedArchive } from '../../src/runtime/archive-root.js';

async function tarOf(entries: Array<{ name: string; type?: 'directory'; body?: string }>): Promise<Buffer> {
  const pack = tarStream.pack();
  for (const e of entries) pack.entry({ name: e.name, type: e.type ?? 'file' }, e.body ?? '');
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const c of pack as AsyncIterable<Buffer>) chunks.push(Buffer.from(c));
  return Buffer.concat(chunks);
}

async function read(s: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of s) chunks.push(Buffer.from(c as Buffer));
  return Buffer.concat(chunks);
}

async function entries(buf: Buffer): Promise<string[]> {
  const extract = tarStream.extract();
  Readable.from([buf]).pipe(extract as unknown as NodeJS.WritableStream);
  const out: string[] = [];
  for await (const e of extract) {
    let body = '';
    for await (const c of e as AsyncIterable<Buffer>) body += c.toString();
    out.push(body ? `${e.header.name}=${body}` : e.header.name);
  }
  return out;
}

// Small chunks: the first header block arrives in pieces, as from a socket.
const chunked = (buf: Buffer) => Readable.from((function* () { for (let i = 0; i < buf.length; i += 100) yield buf.subarray(i, i + 100); })());

test("Docker's archive (entries under output/) passes through byte for byte", async () => {
  const docker = await tarOf([{ name: 'output/', type: 'directory' }, { name: 'output/a', body: 'hi' }]);
  assert.deepEqual(await read(await dockerRootedArchive(chunked(docker), '/output')), docker);
});

test("Podman's archive of a mount point (entries from /) is renamed to Docker's output/ form, contents kept", async () => {
  const podman = await tarOf([{ name: '/', type: 'directory' }, { name: '/a', body: 'hi' }, { name: '/d', type: 'directory' }, { name: '/d/b', body: 'x' }]);
  assert.deepEqual(await entries(await read(await dockerRootedArchive(chunked(podman), '/output'))), ['output/', 'output/a=hi', 'output/d', 'output/d/b=x']);
});

test('an empty archive stream stays empty', async () => {
  assert.equal((await read(await dockerRootedArchive(Readable.from([]), '/output'))).length, 0);
});

test('a reader that stops early ends the source stream too (a rejected result must not hold the engine copy open)', async () => {
  const docker = await tarOf([{ name: 'output/', type: 'directory' }, { name: 'output/a', body: 'x'.repeat(4096) }]);
  const source = chunked(docker);
  const out = await dockerRootedArchive(source, '/output');
  for await (const _ of out) break;
  await new Promise((r) => setImmediate(r));
  assert.equal(source.destroyed, true);
});

test("a reader that stops early on Podman's form ends the source too, with no error after the fact", async () => {
  const podman = await tarOf([{ name: '/', type: 'directory' }, ...Array.from({ length: 50 }, (_, i) => ({ name: `/f${i}`, body: 'y'.repeat(10_000) }))]);
  const source = chunked(podman);
  const out = await dockerRootedArchive(source, '/output');
  for await (const _ of out) break;
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(source.destroyed, true);
});
