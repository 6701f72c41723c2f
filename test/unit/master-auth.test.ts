// Admin token file, enrollment tokens (TTL, uses) and node credentials, against a real
// store from test-store.ts (in-memory SQLite, or a PostgreSQL schema in the second pass) and a
// temp data dir.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ManualClock } from '../../src/common/clock.js';
import { AuthError } from '../../src/common/errors.js';
import { MasterAuth, sha256Hex } from '../../src/master/auth.js';
import { MasterStore } from '../../src/master/master-store.js';
import { freshStore } from '../helpers/test-store.js';
import { bearerMetadata } from '../../src/protocol/auth-metadata.js';
import { NodeFacts, ResourceReport } from '../../src/protocol/gen/hivemind/v1/common.js';
import { Metadata } from '@grpc/grpc-js';

async function setup(t: { after: (fn: () => unknown) => void }) {
  const dir = await mkdtemp(join(tmpdir(), 'hm-auth-'));
  const store = MasterStore.open(freshStore());
  const clock = new ManualClock();
  t.after(async () => {
    store.close();
    await rm(dir, { recursive: true, force: true });
  });
  return { dir, store, clock, auth: await MasterAuth.create(dir, store, clock) };
}

test('the admin token is generated once, 0600, and checked', async (t) => {
  const { dir, store, clock, auth } = await setup(t);
  const token = (await readFile(join(dir, 'admin.token'), 'utf8')).trim();
  assert.equal((await stat(join(dir, 'admin.token'))).mode & 0o777, 0o600);
  auth.checkAdmin(bearerMetadata(token));
  assert.throws(() => auth.checkAdmin(bearerMetadata(token + 'x')), (e) => e instanceof AuthError && /wrong admin token/.test(e.message));
  assert.throws(() => auth.checkAdmin(new Metadata()), /missing admin token/);
  const again = await MasterAuth.create(dir, store, clock);
  again.checkAdmin(bearerMetadata(token));
});

test('enrollment tokens: stored hashed, limited uses, expire', async (t) => {
  const { store, clock, auth } = await setup(t);
  const tok = auth.createEnrollmentToken({ uses: 2, ttlMs: 1000 });
  assert.match(tok.token, /^hm1\.[A-Za-z0-9_-]{43}$/);
  assert.equal(store.getEnrollmentToken(sha256Hex(tok.token))?.usesLeft, 2);
  let registered = 0;
  auth.enroll(tok.token, () => registered++);
  auth.enroll(tok.token, () => registered++);
  assert.throws(() => auth.enroll(tok.token, () => registered++), /used up/);
  assert.equal(registered, 2);
  const short = auth.createEnrollmentToken({ ttlMs: 1000 });
  clock.advance(1000);
  assert.throws(() => auth.enroll(short.token, () => registered++), /expired/);
  assert.throws(() => auth.enroll('hm1.unknown', () => registered++), /unknown token/);
  assert.equal(registered, 2);
  const dflt = auth.createEnrollmentToken();
  assert.equal(dflt.uses, 1);
  assert.equal(dflt.expiresAt - clock.now(), 24 * 3600 * 1000);
});

test('a failed registration does not spend the token', async (t) => {
  const { auth } = await setup(t);
  const tok = auth.createEnrollmentToken();
  assert.throws(() => auth.enroll(tok.token, () => { throw new Error('insert failed'); }), /insert failed/);
  let ok = false;
  auth.enroll(tok.token, () => (ok = true));
  assert.equal(ok, true);
});

test('node credentials authenticate their node only', async (t) => {
  const { store, clock, auth } = await setup(t);
  const { credential, hash } = auth.newNodeCredential();
  assert.notEqual(credential, hash);
  store.insertNode({ id: 'n1', name: 'n1', facts: NodeFacts.create(), credentialHash: hash, at: clock.now() });
  assert.equal(auth.authenticateNode(bearerMetadata(credential)).id, 'n1');
  assert.throws(() => auth.authenticateNode(bearerMetadata(auth.newNodeCredential().credential)), /unknown node credential/);
  assert.throws(() => auth.authenticateNode(new Metadata()), /missing node credential/);
});

test('node authentication reads the store once per credential; re-registering and removal are seen at once', async (t) => {
  const { store, clock, auth } = await setup(t);
  const { credential, hash } = auth.newNodeCredential();
  store.insertNode({ id: 'n1', name: 'old', facts: NodeFacts.create({ maxTasks: 2 }), credentialHash: hash, at: clock.now() });
  let reads = 0;
  const read = store.findNodeByCredentialHash.bind(store);
  store.findNodeByCredentialHash = (h) => {
    reads++;
    return read(h);
  };
  for (let i = 0; i < 5; i++) assert.equal(auth.authenticateNode(bearerMetadata(credential)).name, 'old');
  assert.equal(reads, 1);
  store.updateNodeFacts('n1', 'new', NodeFacts.create({ maxTasks: 8 }), clock.now());
  const node = auth.authenticateNode(bearerMetadata(credential));
  assert.deepEqual([node.name, node.facts.maxTasks], ['new', 8]);
  store.removeNode('n1', clock.now());
  assert.throws(() => auth.authenticateNode(bearerMetadata(credential)), /unknown node credential/);
});

test('reports are written behind: read through at once, in the file after a flush or close', async (t) => {
  const { store, clock } = await setup(t);
  store.insertNode({ id: 'n1', name: 'n1', facts: NodeFacts.create(), credentialHash: 'h', at: clock.now() });
  const report = ResourceReport.fromPartial({ seq: 7, accepting: true });
  store.recordReport('n1', report, clock.now() + 5);
  assert.equal(store.getNode('n1')!.lastReport?.seq, 7, 'read through the unwritten report');
  assert.equal(store.getNode('n1')!.lastSeen, clock.now() + 5);
  store.flushReports();
  assert.equal(store.listNodes()[0]!.lastReport?.seq, 7);
});

test('two masters creating the admin token on one (shared) data dir at once end up with the same one', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'hm-auth-'));
  const store = MasterStore.open(freshStore());
  t.after(async () => {
    store.close();
    await rm(dir, { recursive: true, force: true });
  });
  const clock = new ManualClock();
  const both = await Promise.all([0, 1, 2, 3].map(() => MasterAuth.create(dir, store, clock)));
  const token = (await readFile(join(dir, 'admin.token'), 'utf8')).trim();
  for (const a of both) a.checkAdmin(bearerMetadata(token));
});

test('hasNode is true for a node until it is removed, false for an unknown one (RemoveNode looks up one row)', async (t) => {
  const { store, clock } = await setup(t);
  store.insertNode({ id: 'n1', name: 'n1', facts: NodeFacts.create(), credentialHash: 'h1', at: clock.now() });
  assert.equal(store.hasNode('n1'), true);
  assert.equal(store.hasNode('n2'), false);
  assert.equal(store.removeNode('n1', clock.now()), true);
  assert.equal(store.hasNode('n1'), false);
});
