// The WireGuard hub at scale, without WireGuard: peers are changed one at a time through a
// recording `wg` runner (an enrollment is one `wg set`, a removal one `peer KEY remove`, never a
// full sync), addresses come from an in-memory pool whose work per allocation is counted, and
// mesh peers travel as a full list to the subscriber and one-peer deltas to everyone else.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ManualClock } from '../../src/common/clock.js';
import { silentLogger } from '../../src/common/logger.js';
import { MasterAuth } from '../../src/master/auth.js';
import { EnrollService } from '../../src/master/enroll-service.js';
import { MasterStore } from '../../src/master/master-store.js';
import { freshStore } from '../helpers/test-store.js';
import { NodeRegistry } from '../../src/master/registry.js';
import { bearerMetadata } from '../../src/protocol/auth-metadata.js';
import { NodeFacts } from '../../src/protocol/gen/hivemind/v1/common.js';
import type { EnrollResponse } from '../../src/protocol/gen/hivemind/v1/enroll.js';
import { MeshAnnouncer } from '../../src/master/mesh-announcer.js';
import { TunnelHub, type HubPeer } from '../../src/master/tunnel-hub.js';
import type { MeshPeer, MeshPeers, NodeCommand } from '../../src/protocol/gen/hivemind/v1/node.js';
import { AddressPool } from '../../src/tunnel/address-pool.js';
import type { CommandResult, CommandRunner } from '../../src/tunnel/command-runner.js';
import { LinuxWireGuard } from '../../src/tunnel/linux-wireguard.js';
import { MESH_PAGE_PEERS, meshPeerPages } from '../../src/tunnel/mesh-peers.js';
import { parseSubnet, SubnetFullError } from '../../src/tunnel/subnet.js';
import { generateWgKeyPair } from '../../src/tunnel/wg-keys.js';

class RecordingRunner implements CommandRunner {
  calls: string[] = [];
  failSet = false;
  async run(file: string, args: readonly string[]): Promise<CommandResult> {
    const cmd = [file, ...args].join(' ');
    this.calls.push(cmd);
    if (this.failSet && args[0] === 'set') return { stdout: '', stderr: 'Unable to modify interface: Protocol not supported', exitCode: 1 };
    return { stdout: '', stderr: '', exitCode: 0 };
  }
  wg(): string[] {
    return this.calls.filter((c) => c.startsWith('wg ') && c !== 'wg --version');
  }
}

// Distinct valid-looking keys without 10,000 X25519 derivations: 32 bytes, the index in the first four.
const key = (i: number) => {
  const b = Buffer.alloc(32, 7);
  b.writeUInt32BE(i);
  return b.toString('base64');
};
const nodeId = (i: number) => i.toString(16).padStart(16, '0');
const ipOf = (i: number) => `10.8.${(i + 2) >> 8}.${(i + 2) & 255}`;

async function hubWith(n: number, subnet = '10.8.0.0/16', mesh = false) {
  const dir = await mkdtemp(join(tmpdir(), 'hm-hub-'));
  const runner = new RecordingRunner();
  const peers: HubPeer[] = Array.from({ length: n }, (_, i) => ({ nodeId: nodeId(i), publicKey: key(i), tunnelIp: ipOf(i) }));
  let reads = 0;
  const store = { tunnelPeers: () => (reads++, peers) };
  const hub = await TunnelHub.create(
    { interfaceName: 'hm0', subnet, endpoint: '192.0.2.1:51820', nodePort: 7070, mesh, dataDir: dir },
    { tool: new LinuxWireGuard(runner), runner, store, log: silentLogger() },
  );
  return { hub, runner, reads: () => reads, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

test('hub at 10,000 peers: an enrollment is one `wg set` of one peer, a removal one `peer KEY remove`; no full sync, no store read', async (t) => {
  const { hub, runner, reads, cleanup } = await hubWith(10_000);
  t.after(cleanup);
  await hub.start();
  assert.equal(runner.wg().filter((c) => c.startsWith('wg setconf')).length, 1, 'start applies the whole set once');
  assert.equal(hub.peerCount, 10_000);
  runner.calls = [];

  const ip = hub.allocate();
  assert.equal(ip, '10.8.39.18', 'the next address after 10,000 taken from .0.2');
  const k = generateWgKeyPair().publicKey;
  await hub.addPeer({ nodeId: 'new-node', publicKey: k, tunnelIp: ip });
  assert.deepEqual(runner.wg(), [`wg set hm0 peer ${k} allowed-ips ${ip}/32`]);

  runner.calls = [];
  assert.equal(await hub.removePeer(nodeId(5)), true);
  assert.deepEqual(runner.wg(), [`wg set hm0 peer ${key(5)} remove`]);
  assert.equal(await hub.removePeer('no-such-node'), false);
  assert.equal(runner.wg().length, 1);
  assert.equal(hub.peerCount, 10_000);
  assert.equal(reads(), 1, 'the store is read once, at start');

  // The removed node's address is free again; the next enrollment takes it.
  assert.equal(hub.allocate(), ipOf(5));
});

test('hub: a failed per-peer change is repaired by one full sync of the in-memory set', async (t) => {
  const { hub, runner, cleanup } = await hubWith(3);
  t.after(cleanup);
  await hub.start();
  runner.calls = [];
  runner.failSet = true;
  const k = generateWgKeyPair().publicKey;
  await hub.addPeer({ nodeId: 'n4', publicKey: k, tunnelIp: hub.allocate() });
  const wg = runner.wg();
  assert.equal(wg.length, 2);
  assert.match(wg[0]!, /^wg set hm0 peer /);
  assert.match(wg[1]!, /^wg syncconf hm0 \S+hm0\.conf$/);
});

test('address pool: O(1) per allocation at 10,000 taken; lowest holes first, then the cursor; /30 and /16 edges; a full subnet says what to do', () => {
  const s16 = parseSubnet('10.8.0.0/16');
  const taken = Array.from({ length: 10_000 }, (_, i) => ipOf(i));
  const pool = AddressPool.load(s16, taken);
  pool.examined = 0;
  for (let i = 0; i < 100; i++) pool.allocate();
  assert.equal(pool.examined, 100, 'one host number examined per allocation, whatever is taken');
  assert.equal(pool.size, 10_100);

  // Holes from the store (removed nodes) are reused before the cursor moves, oldest first.
  const holes = AddressPool.load(s16, ['10.8.0.2', '10.8.0.5', '10.8.0.9']);
  assert.deepEqual([holes.allocate(), holes.allocate(), holes.allocate(), holes.allocate(), holes.allocate(), holes.allocate()], ['10.8.0.3', '10.8.0.4', '10.8.0.6', '10.8.0.7', '10.8.0.8', '10.8.0.10']);
  holes.release('10.8.0.5');
  holes.release('10.8.0.3');
  assert.equal(holes.allocate(), '10.8.0.5');
  assert.equal(holes.allocate(), '10.8.0.3');
  assert.equal(holes.allocate(), '10.8.0.11');
  assert.equal(holes.has('10.8.0.11'), true);
  assert.equal(holes.has('10.9.0.11'), false);

  // /30: .1 the master, .2 the only node.
  const s30 = AddressPool.load(parseSubnet('10.8.0.0/30'), []);
  assert.equal(s30.allocate(), '10.8.0.2');
  assert.throws(() => s30.allocate(), (e: unknown) => e instanceof SubnetFullError && /tunnel subnet 10\.8\.0\.0\/30 has no free address left \(1 nodes enrolled\).*larger --wg-subnet/.test(e.message));

  // /16: 65,533 nodes (65,536 minus network, broadcast and the master); the last is .255.254.
  const full = AddressPool.load(s16, []);
  let last = '';
  for (let i = 0; i < 65_533; i++) last = full.allocate();
  assert.equal(last, '10.8.255.254');
  assert.throws(() => full.allocate(), SubnetFullError);
  full.release('10.8.100.1');
  assert.equal(full.allocate(), '10.8.100.1');
  // Addresses outside the subnet, the master's and the broadcast address are never loaded as taken.
  const odd = AddressPool.load(parseSubnet('10.8.0.0/24'), ['10.9.0.5', '10.8.0.1', '10.8.0.255', 'junk']);
  assert.equal(odd.size, 0);
  assert.equal(odd.allocate(), '10.8.0.2');
});

/** `deltaNodes` subscribed earlier saying they apply deltas (before any sink: nothing recorded for it). */
async function meshService(peers: MeshPeer[], subscribed: string[], deltaNodes: string[] = []) {
  const registry = new NodeRegistry(new ManualClock(), 1000);
  const sent = new Map<string, MeshPeers[]>();
  const early = new MeshAnnouncer(async () => peers, registry);
  for (const id of deltaNodes) await early.subscribed(id, true);
  for (const id of subscribed) {
    sent.set(id, []);
    registry.attach(id, { send: (cmd: NodeCommand) => { if (cmd.command?.$case === 'meshPeers') sent.get(id)!.push(cmd.command.value); }, close: () => undefined });
  }
  let lists = 0;
  const mesh = deltaNodes.length ? early : new MeshAnnouncer(async () => (lists++, peers), registry);
  return { mesh, sent, lists: () => lists };
}

const meshPeer = (i: number): MeshPeer => ({ nodeId: nodeId(i), publicKey: key(i), endpoint: `192.0.2.${i % 250}:51820`, tunnelAddress: ipOf(i) });
const clear = (sent: Map<string, MeshPeers[]>) => { for (const v of sent.values()) v.length = 0; };

test('mesh: a subscribing node gets the full list; every other node gets only its entry as a delta; a removal sends the removed id', async () => {
  const peers = Array.from({ length: 5 }, (_, i) => meshPeer(i));
  const { mesh, sent, lists } = await meshService(peers, peers.map((p) => p.nodeId));
  for (const i of [0, 1, 3, 4]) await mesh.subscribed(nodeId(i), true);
  clear(sent);
  await mesh.subscribed(nodeId(2), true);
  assert.equal(lists(), 5);
  assert.deepEqual(sent.get(nodeId(2)), [{ peers: peers.filter((p) => p.nodeId !== nodeId(2)), delta: false, removedNodeIds: [] }]);
  for (const i of [0, 1, 3, 4]) assert.deepEqual(sent.get(nodeId(i)), [{ peers: [peers[2]], delta: true, removedNodeIds: [] }]);

  clear(sent);
  await mesh.removed(nodeId(4));
  for (const i of [0, 1, 2, 3]) assert.deepEqual(sent.get(nodeId(i)), [{ peers: [], delta: true, removedNodeIds: [nodeId(4)] }]);
  assert.deepEqual(sent.get(nodeId(4)), []);
});

test('mesh with an older worker (no mesh_deltas): it gets a whole full list every time, never a delta or a page', async () => {
  const peers = Array.from({ length: 2500 }, (_, i) => meshPeer(i));
  const { mesh, sent } = await meshService(peers, [nodeId(0), nodeId(1)]);
  await mesh.subscribed(nodeId(0), false);
  assert.deepEqual(sent.get(nodeId(0))!.map((m) => [m.peers.length, m.delta]), [[2499, false]]);
  clear(sent);
  await mesh.subscribed(nodeId(1), true);
  assert.deepEqual(sent.get(nodeId(0))!.map((m) => [m.peers.length, m.delta]), [[2499, false]], 'the old node gets the whole list again');
  assert.deepEqual(sent.get(nodeId(1))!.map((m) => [m.peers.length, m.delta]), [[2000, false], [499, true]]);
  clear(sent);
  await mesh.removed(nodeId(7));
  assert.deepEqual(sent.get(nodeId(0))!.map((m) => [m.peers.length, m.delta, m.removedNodeIds.length]), [[2498, false, 0]]);
  assert.deepEqual(sent.get(nodeId(1)), [{ peers: [], delta: true, removedNodeIds: [nodeId(7)] }]);
});

test('mesh at 10,000 nodes: the subscriber gets pages of at most 2,000 (first full, then deltas); the others get one peer each: O(N) peers sent, not O(N²)', async () => {
  const peers = Array.from({ length: 10_000 }, (_, i) => meshPeer(i));
  const { mesh, sent } = await meshService(peers, peers.map((p) => p.nodeId), peers.slice(1).map((p) => p.nodeId));
  await mesh.subscribed(nodeId(0), true);
  const mine = sent.get(nodeId(0))!;
  assert.deepEqual(mine.map((m) => [m.peers.length, m.delta]), [[2000, false], [2000, true], [2000, true], [2000, true], [1999, true]]);
  assert.equal(new Set(mine.flatMap((m) => m.peers.map((p) => p.nodeId))).size, 9_999);
  let total = 0;
  for (const [id, msgs] of sent) {
    total += msgs.reduce((n, m) => n + m.peers.length, 0);
    if (id !== nodeId(0)) assert.deepEqual(msgs, [{ peers: [peers[0]], delta: true, removedNodeIds: [] }]);
  }
  assert.equal(total, 9_999 + 9_999);
  assert.ok(mine.every((m) => m.peers.length <= MESH_PAGE_PEERS));
  assert.deepEqual(meshPeerPages([]), [{ peers: [], delta: false, removedNodeIds: [] }]);
});

test('enrollment through EnrollService: one `wg set` per node, no full sync; a rolled-back enrollment gives its address back', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'hm-enroll-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const store = MasterStore.open(freshStore());
  t.after(() => store.close());
  const clock = new ManualClock();
  const auth = await MasterAuth.create(dir, store, clock);
  const runner = new RecordingRunner();
  const hub = await TunnelHub.create({ interfaceName: 'hm0', subnet: '10.8.0.0/16', endpoint: '192.0.2.1:51820', nodePort: 7070, mesh: false, dataDir: dir }, { tool: new LinuxWireGuard(runner), runner, store, log: silentLogger() });
  await hub.start();
  runner.calls = [];
  const svc = new EnrollService({ store, auth, hub, clock, log: silentLogger() }).handlers();
  const enroll = (wgPublicKey: string) => new Promise<{ err: unknown; res: EnrollResponse | undefined }>((resolve) => {
    const call = { metadata: bearerMetadata(auth.createEnrollmentToken().token), request: { name: 'n', facts: NodeFacts.create({ hostname: 'h' }), wgPublicKey } };
    svc.enroll(call as unknown as Parameters<typeof svc.enroll>[0], (err, res) => resolve({ err, res: res ?? undefined }));
  });

  const k1 = generateWgKeyPair().publicKey;
  const first = await enroll(k1);
  assert.equal(first.err, null);
  assert.equal(first.res!.tunnel!.address, '10.8.0.2/16');
  assert.deepEqual(runner.wg(), [`wg set hm0 peer ${k1} allowed-ips 10.8.0.2/32`]);

  // The store refuses the row: the transaction rolls back and 10.8.0.3 is free again.
  const insert = store.insertNode.bind(store);
  store.insertNode = () => { throw new Error('disk I/O error'); };
  const failed = await enroll(generateWgKeyPair().publicKey);
  assert.match((failed.err as Error).message, /disk I\/O error/);
  store.insertNode = insert;
  const k3 = generateWgKeyPair().publicKey;
  const third = await enroll(k3);
  assert.equal(third.res!.tunnel!.address, '10.8.0.3/16');
  assert.deepEqual(runner.wg().slice(1), [`wg set hm0 peer ${k3} allowed-ips 10.8.0.3/32`]);
  assert.deepEqual(store.tunnelPeers().map((p) => p.tunnelIp).sort(), ['10.8.0.2', '10.8.0.3']);
});

test('hub with peer masters: each node\'s tunnel config lists the other masters\' WireGuard endpoints after this one\'s', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'hm-hub-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const runner = new RecordingRunner();
  const hub = await TunnelHub.create(
    { interfaceName: 'hm0', subnet: '10.8.0.0/24', endpoint: '192.0.2.1:51820', otherEndpoints: ['192.0.2.2:51820'], nodePort: 7070, mesh: false, dataDir: dir },
    { tool: new LinuxWireGuard(runner), runner, store: { tunnelPeers: () => [] }, log: silentLogger() },
  );
  const cfg = hub.tunnelConfigFor('10.8.0.5');
  assert.equal(cfg.masterEndpoint, '192.0.2.1:51820');
  assert.deepEqual(cfg.otherMasterEndpoints, ['192.0.2.2:51820']);
});

test('mesh lists in a subscribe storm share `wg show`: 200 concurrent callers run 2, and each sees endpoints read after its call', async (t) => {
  const { hub, runner, cleanup } = await hubWith(3, '10.8.0.0/16', true);
  t.after(cleanup);
  let shows = 0;
  let endpoint = 'first';
  runner.run = async (file, args) => {
    if (args[0] === 'show') {
      shows++;
      const seen = endpoint;
      await new Promise((r) => setTimeout(r, 20));
      return { stdout: `priv\tpub\t51820\toff\n${key(0)}\t(none)\t${seen === 'first' ? '192.0.2.1:1' : '192.0.2.2:2'}\t10.8.0.2/32\t0\t0\t0\toff\n`, stderr: '', exitCode: 0 };
    }
    return { stdout: '', stderr: '', exitCode: 0 };
  };
  const early = hub.meshPeers();
  endpoint = 'second'; // changes after the first show started: later callers must see it
  const late = await Promise.all(Array.from({ length: 199 }, () => hub.meshPeers()));
  assert.equal((await early)[0]!.endpoint, '192.0.2.1:1');
  assert.equal(shows, 2);
  assert.ok(late.every((l) => l[0]!.endpoint === '192.0.2.2:2' && l.length === 3));
});

test('hub of a standby master: reloadPeers before start takes the peers and addresses the active master enrolled and removed meanwhile; one shared key file', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'hm-hub-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const runner = new RecordingRunner();
  let peers: HubPeer[] = [0, 1, 2].map((i) => ({ nodeId: nodeId(i), publicKey: key(i), tunnelIp: ipOf(i) }));
  const store = { tunnelPeers: () => peers };
  const opts = { interfaceName: 'hm0', subnet: '10.8.0.0/16', endpoint: '192.0.2.1:51820', nodePort: 7070, mesh: false, dataDir: dir };
  // Two masters on one data dir, built together: one hub key.
  const [hub, other] = await Promise.all([0, 1].map(() => TunnelHub.create(opts, { tool: new LinuxWireGuard(runner), runner, store, log: silentLogger() })));
  assert.equal(hub!.publicKey, other!.publicKey);
  // Meanwhile the active master removed node 1 and enrolled two more.
  peers = [peers[0]!, peers[2]!, { nodeId: nodeId(3), publicKey: key(3), tunnelIp: ipOf(3) }, { nodeId: nodeId(4), publicKey: key(4), tunnelIp: ipOf(1) }];
  hub!.reloadPeers(store);
  await hub!.start();
  assert.equal(hub!.peerCount, 4);
  assert.equal(hub!.allocate(), ipOf(4), 'addresses in use by the new peers are not handed out again');
  assert.equal(await hub!.removePeer(nodeId(1)), false, 'the node removed meanwhile is no peer');
  assert.equal(await hub!.removePeer(nodeId(4)), true, 'the node enrolled meanwhile is one');
});
