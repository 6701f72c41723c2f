// The worker's tunnel lifecycle with a fake WireGuard tool: enrollment happens once and keeps
// the private key local (0600), a restart reuses the saved enrollment, a stale tunnel is
// restarted by the health check, mesh peers become /32 peers, and close() removes the interface.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ManualClock } from '../../src/common/clock.js';
import { silentLogger } from '../../src/common/logger.js';
import type { EnrollRequest, EnrollResponse } from '../../src/protocol/gen/hivemind/v1/enroll.js';
import { encodeJoinToken, type JoinToken } from '../../src/tunnel/join-token.js';
import { generateWgKeyPair, wgPublicKeyOf } from '../../src/tunnel/wg-keys.js';
import type { WgInterfaceSpec, WgInterfaceStatus, WgPeerChange } from '../../src/tunnel/wg-spec.js';
import type { WgImplementation, WireGuardTool } from '../../src/tunnel/wireguard-tool.js';
import type { Enroller } from '../../src/worker/enroll-client.js';
import { STALE_HANDSHAKE_MS, WorkerTunnel } from '../../src/worker/worker-tunnel.js';
import { MeshPeersRefusedError } from '../../src/tunnel/tunnel-errors.js';
import { recordHostile } from '../helpers/fault-ledger.js';

const master = generateWgKeyPair();

class FakeWg implements WireGuardTool {
  calls: string[] = [];
  spec: WgInterfaceSpec | undefined;
  handshakeAt = 0;
  constructor(private readonly clock: ManualClock) {}
  async up(spec: WgInterfaceSpec): Promise<WgImplementation> {
    this.calls.push('up');
    this.spec = spec;
    this.handshakeAt = this.clock.now();
    return 'userspace';
  }
  async syncPeers(spec: WgInterfaceSpec): Promise<void> {
    this.calls.push('sync');
    this.spec = spec;
  }
  async updatePeers(_name: string, change: WgPeerChange): Promise<void> {
    this.calls.push(`update +${change.set.length} -${change.remove.length}`);
    const gone = new Set([...change.remove, ...change.set.map((p) => p.publicKey)]);
    this.spec = { ...this.spec!, peers: [...this.spec!.peers.filter((p) => !gone.has(p.publicKey)), ...change.set] };
  }
  async show(): Promise<WgInterfaceStatus | undefined> {
    if (!this.spec) return undefined;
    return { publicKey: wgPublicKeyOf(this.spec.privateKey), listenPort: 0, peers: [{ publicKey: master.publicKey, allowedIps: ['10.8.0.0/24'], latestHandshakeMs: this.handshakeAt, rxBytes: 10, txBytes: 20, persistentKeepalive: 25 }] };
  }
  async down(): Promise<void> {
    this.calls.push('down');
    this.spec = undefined;
  }
}

class FakeEnroller implements Enroller {
  requests: EnrollRequest[] = [];
  async enroll(token: JoinToken, req: EnrollRequest): Promise<EnrollResponse> {
    assert.equal(token.secret, 'hm1.secret');
    this.requests.push(req);
    return {
      nodeId: 'node-7',
      nodeCredential: 'hmn1.cred',
      tunnel: { address: '10.8.0.7/24', masterPublicKey: master.publicKey, masterEndpoint: '192.0.2.1:51820', allowedIps: ['10.8.0.0/24'], persistentKeepalive: 25, masterGrpcAddress: '10.8.0.1:7070', mesh: true, listenPort: 51820 },
    };
  }
}

const token = encodeJoinToken({ endpoint: '192.0.2.1:7443', fingerprint: 'a'.repeat(64), secret: 'hm1.secret' });
const facts = async () => ({ hostname: 'h', os: 'linux', osRelease: '', arch: 'x64', cpuCores: 2, cpuModel: '', memoryBytes: 1, diskBytes: 1, gpus: [], dockerVersion: '', labels: new Map(), workerVersion: 't', maxTasks: 1 });

test('enrolls once with a local key, reuses the enrollment on restart, restarts a stale tunnel, applies mesh peers, removes the interface', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'hm-wt-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const clock = new ManualClock();
  const wg = new FakeWg(clock);
  const enroller = new FakeEnroller();
  const deps = { tool: wg, clock, log: silentLogger(), enroller };
  const opts = { dataDir: dir, interfaceName: 'hm0', healthIntervalMs: 20 };

  assert.equal(await WorkerTunnel.wanted(dir, undefined), false);
  assert.equal(await WorkerTunnel.wanted(dir, token), true);
  const tun = await WorkerTunnel.open(opts, deps, { token, facts });
  const key = (await readFile(join(dir, 'wg', 'private.key'), 'utf8')).trim();
  assert.equal((await stat(join(dir, 'wg', 'private.key'))).mode & 0o777, 0o600);
  assert.equal(enroller.requests[0]!.wgPublicKey, wgPublicKeyOf(key), 'only the public key is sent');
  assert.ok(!JSON.stringify(enroller.requests).includes(key), 'the private key never leaves');
  assert.equal(JSON.parse(await readFile(join(dir, 'identity.json'), 'utf8')).credential, 'hmn1.cred');
  assert.equal(tun.masterGrpcAddress, '10.8.0.1:7070');

  await tun.up();
  assert.equal(wg.spec!.address, '10.8.0.7/24');
  assert.deepEqual(wg.spec!.peers.map((p) => p.allowedIps), [['10.8.0.0/24']]);
  assert.equal((await tun.status()).state, 'up');

  // mesh: other nodes become /32 peers, ourselves excluded
  await tun.setMeshPeers({ delta: false, removedNodeIds: [], peers: [
    { nodeId: 'node-8', publicKey: generateWgKeyPair().publicKey, endpoint: '192.0.2.8:51820', tunnelAddress: '10.8.0.8' },
    { nodeId: 'node-7', publicKey: 'self', endpoint: '', tunnelAddress: '10.8.0.7' },
  ] });
  assert.deepEqual(wg.spec!.peers.map((p) => p.allowedIps[0]), ['10.8.0.0/24', '10.8.0.8/32']);

  // stale: no handshake for longer than STALE_HANDSHAKE_MS -> down and up again
  clock.advance(STALE_HANDSHAKE_MS + 1000);
  assert.equal((await tun.status()).state, 'stale');
  wg.calls = [];
  tun.startHealthChecks();
  for (let i = 0; i < 100 && !wg.calls.includes('up'); i++) await new Promise((r) => setTimeout(r, 10));
  assert.deepEqual(wg.calls.slice(0, 2), ['down', 'up']);
  assert.equal((await tun.status()).state, 'up');

  await tun.close();
  assert.equal(wg.calls.at(-1), 'down');
  assert.equal((await tun.status()).state, 'down');

  // restart: the saved enrollment is used; no token needed and no second enrollment
  const again = await WorkerTunnel.open(opts, deps, { facts });
  assert.equal(again.nodeId, 'node-7');
  assert.equal(enroller.requests.length, 1);
  await again.close();
});

test('a data dir without an enrollment needs a join token, and says so', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'hm-wt-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const clock = new ManualClock();
  await assert.rejects(WorkerTunnel.open({ dataDir: dir, interfaceName: 'hm0' }, { tool: new FakeWg(clock), clock, log: silentLogger(), enroller: new FakeEnroller() }, { facts }), /not enrolled yet.*join token/);
  await assert.rejects(WorkerTunnel.open({ dataDir: dir, interfaceName: 'hm0' }, { tool: new FakeWg(clock), clock, log: silentLogger(), enroller: new FakeEnroller() }, { token: 'hmj1.garbage', facts }), /not a valid join token/);
});

test('mesh as changes: a full list re-syncs, deltas change only their peers (in order), and an oversized or malformed message is refused whole', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'hm-wt-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const clock = new ManualClock();
  const wg = new FakeWg(clock);
  const tun = await WorkerTunnel.open({ dataDir: dir, interfaceName: 'hm0' }, { tool: wg, clock, log: silentLogger(), enroller: new FakeEnroller() }, { token, facts });
  await tun.up();
  const k = Array.from({ length: 4 }, () => generateWgKeyPair().publicKey);
  const peer = (i: number, key = k[i]!) => ({ nodeId: `node-${10 + i}`, publicKey: key, endpoint: `192.0.2.${10 + i}:51820`, tunnelAddress: `10.8.0.${10 + i}` });
  const addrs = () => wg.spec!.peers.slice(1).map((p) => `${p.publicKey === k[0] || p.publicKey === k[1] || p.publicKey === k[2] || p.publicKey === k[3] ? 'k' + k.indexOf(p.publicKey) : 'other'} ${p.allowedIps[0]}`).sort();

  wg.calls = [];
  await tun.setMeshPeers({ delta: false, removedNodeIds: [], peers: [peer(0), peer(1)] });
  // Deltas sent back to back are applied in order, each as one change.
  await Promise.all([
    tun.setMeshPeers({ delta: true, removedNodeIds: [], peers: [peer(2)] }),
    tun.setMeshPeers({ delta: true, removedNodeIds: ['node-10'], peers: [] }),
    tun.setMeshPeers({ delta: true, removedNodeIds: [], peers: [peer(1)] }), // unchanged: no call
    tun.setMeshPeers({ delta: true, removedNodeIds: [], peers: [peer(2, k[3])] }), // node-12 with a new key
  ]);
  assert.deepEqual(wg.calls, ['sync', 'update +1 -0', 'update +0 -1', 'update +1 -1']);
  assert.deepEqual(addrs(), ['k1 10.8.0.11/32', 'k3 10.8.0.12/32']);
  assert.equal(wg.spec!.peers[0]!.publicKey, master.publicKey, 'the master stays the first peer');

  // A later full list replaces the set.
  await tun.setMeshPeers({ delta: false, removedNodeIds: [], peers: [peer(0)] });
  assert.deepEqual(addrs(), ['k0 10.8.0.10/32']);

  const other = () => generateWgKeyPair().publicKey;
  const hostile: [string, Parameters<WorkerTunnel['setMeshPeers']>[0], RegExp][] = [
    ['over 2,000 peers in one message', { delta: true, removedNodeIds: [], peers: Array.from({ length: 2001 }, (_, i) => ({ nodeId: `n${i}`, publicKey: k[0]!, endpoint: '', tunnelAddress: '10.8.0.20' })) }, /2001 peers in one message, over the limit of 2000/],
    ['more peers than the subnet holds', { delta: false, removedNodeIds: [], peers: Array.from({ length: 300 }, (_, i) => ({ nodeId: `n${i}`, publicKey: other(), endpoint: '', tunnelAddress: `10.8.0.${10 + (i % 240)}` })) }, /300 mesh peers, more than tunnel subnet 10\.8\.0\.0\/24 has hosts \(252\)/],
    ['a key that is not a WireGuard key', { delta: true, removedNodeIds: [], peers: [{ ...peer(3), publicKey: 'not-a-key' }] }, /peer 0 \(node node-13\): public key is not a WireGuard key/],
    ["the master's own key", { delta: true, removedNodeIds: [], peers: [{ ...peer(3), publicKey: master.publicKey }] }, /public key is the master's or this node's own/],
    ['an address outside the tunnel subnet', { delta: true, removedNodeIds: [], peers: [{ ...peer(3), tunnelAddress: '192.168.1.1' }] }, /tunnel address "192\.168\.1\.1" is not another node's host address inside 10\.8\.0\.0\/24/],
    ["the master's tunnel address", { delta: true, removedNodeIds: [], peers: [{ ...peer(3), tunnelAddress: '10.8.0.1' }] }, /tunnel address "10\.8\.0\.1"/],
    ["this node's own address", { delta: true, removedNodeIds: [], peers: [{ ...peer(3), tunnelAddress: '10.8.0.7' }] }, /tunnel address "10\.8\.0\.7"/],
    ['an endpoint with a space', { delta: true, removedNodeIds: [], peers: [{ ...peer(3), endpoint: '1.2.3.4:5 allowed-ips 0.0.0.0/0' }] }, /endpoint .* is not HOST:PORT/],
    ['a malformed removed id', { delta: true, removedNodeIds: ['x y'], peers: [] }, /removed node id "x y" is not a node id/],
  ];
  wg.calls = [];
  for (const [name, msg, why] of hostile) {
    let err: unknown;
    try {
      await tun.setMeshPeers(msg);
    } catch (e) {
      err = e;
    }
    recordHostile(`mesh peers from the master: ${name}`, !(err instanceof MeshPeersRefusedError));
    assert.ok(err instanceof MeshPeersRefusedError, name);
    assert.match(err.message, /^mesh peers from the master refused \(nothing applied\): /);
    assert.match(err.message, why, name);
  }
  assert.deepEqual(wg.calls, [], 'nothing of a refused message reaches the interface');
  assert.deepEqual(addrs(), ['k0 10.8.0.10/32']);
  await tun.close();
});
