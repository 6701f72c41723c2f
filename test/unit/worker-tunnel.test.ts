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
import { decodeJoinToken, encodeJoinToken, JOIN_PREFIX, joinEndpoints, peerEnrollEndpoints, type JoinToken } from '../../src/tunnel/join-token.js';
import { TunnelConfig } from '../../src/protocol/gen/hivemind/v1/enroll.js';
import { ConfigError } from '../../src/common/errors.js';
import { status } from '@grpc/grpc-js';
import { generateWgKeyPair, wgPublicKeyOf } from '../../src/tunnel/wg-keys.js';
import type { WgInterfaceSpec, WgInterfaceStatus, WgPeerChange } from '../../src/tunnel/wg-spec.js';
import type { WgImplementation, WireGuardTool } from '../../src/tunnel/wireguard-tool.js';
import { EnrollmentError, enrollWithAnyMaster, ImpostorMasterError, type Enroller } from '../../src/worker/enroll-client.js';
import { MASTER_MOVE_MIN_MS, STALE_HANDSHAKE_MS, WorkerTunnel } from '../../src/worker/worker-tunnel.js';
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
      tunnel: { address: '10.8.0.7/24', masterPublicKey: master.publicKey, masterEndpoint: '192.0.2.1:51820', allowedIps: ['10.8.0.0/24'], persistentKeepalive: 25, masterGrpcAddress: '10.8.0.1:7070', mesh: true, listenPort: 51820, otherMasterEndpoints: [] },
    };
  }
}

const token = encodeJoinToken({ endpoint: '192.0.2.1:7443', fingerprint: 'a'.repeat(64), secret: 'hm1.secret' });
const facts = async () => ({ hostname: 'h', os: 'linux', osRelease: '', arch: 'x64', cpuCores: 2, cpuModel: '', memoryBytes: 1, diskBytes: 1, gpus: [], dockerVersion: '', labels: new Map(), workerVersion: 't', allowsEgress: false, maxTasks: 1, isolations: [], engine: '', unenforcedLimits: [] });

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

/** WireGuard where only the masters in `live` hand-shake; each look at the interface takes a second. */
class MultiMasterWg extends FakeWg {
  live = new Set<string>();
  constructor(private readonly c: ManualClock) {
    super(c);
  }
  override async up(spec: WgInterfaceSpec): Promise<WgImplementation> {
    const impl = await super.up(spec);
    this.handshakeAt = this.live.has(spec.peers[0]!.endpoint ?? '') ? this.c.now() : 0;
    return impl;
  }
  override async show(): Promise<WgInterfaceStatus | undefined> {
    this.c.advance(1000);
    return super.show();
  }
}

test('several masters: enrollment moves past an unreachable or standby master to the next; an impostor or a refused token does not', async (t) => {
  const log = silentLogger();
  const tok = decodeJoinToken(encodeJoinToken({ endpoint: 'a:7443', fingerprint: 'a'.repeat(64), secret: 'hm1.secret', otherEndpoints: ['b:7443', 'c:7443'] }));
  const req = { name: 'n', facts: undefined, wgPublicKey: 'k' } as unknown as EnrollRequest;
  const tried: string[] = [];
  const answers: Record<string, Error | undefined> = {
    'a:7443': new EnrollmentError('cannot reach the master\'s enrollment endpoint a:7443: connect ECONNREFUSED'),
    'b:7443': new EnrollmentError('enrollment refused by the master: 14 UNAVAILABLE: standby master: c is active', status.UNAVAILABLE),
  };
  const enroller: Enroller = {
    enroll: async (tk) => {
      tried.push(tk.endpoint);
      const e = answers[tk.endpoint];
      if (e) throw e;
      return { nodeId: 'n1', nodeCredential: 'c', tunnel: undefined };
    },
  };
  assert.equal((await enrollWithAnyMaster(enroller, tok, req, log)).nodeId, 'n1');
  assert.deepEqual(tried, ['a:7443', 'b:7443', 'c:7443']);
  tried.length = 0;
  answers['a:7443'] = new ImpostorMasterError('a:7443', 'b'.repeat(64), 'a'.repeat(64));
  await assert.rejects(enrollWithAnyMaster(enroller, tok, req, log), ImpostorMasterError);
  answers['a:7443'] = new EnrollmentError('enrollment refused by the master: 16 UNAUTHENTICATED: token used up', status.UNAUTHENTICATED);
  await assert.rejects(enrollWithAnyMaster(enroller, tok, req, log), /token used up/);
  assert.deepEqual(tried, ['a:7443', 'a:7443'], 'an impostor or a refusal is not a reason to try another master');
  t.diagnostic('enrollment order checked');
});

test('several masters: the tunnel comes up on the first master that hand-shakes, and a stale tunnel moves the master peer to the next', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'hm-wt-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const clock = new ManualClock();
  const wg = new MultiMasterWg(clock);
  wg.live.add('192.0.2.2:51820');
  const enroller: Enroller = {
    enroll: async () => ({
      nodeId: 'node-9',
      nodeCredential: 'hmn1.c',
      tunnel: { address: '10.8.0.9/24', masterPublicKey: master.publicKey, masterEndpoint: '192.0.2.1:51820', otherMasterEndpoints: ['192.0.2.2:51820'], allowedIps: ['10.8.0.0/24'], persistentKeepalive: 25, masterGrpcAddress: '10.8.0.1:7070', mesh: false, listenPort: 0 },
    }),
  };
  const tun = await WorkerTunnel.open({ dataDir: dir, interfaceName: 'hm0', handshakeTimeoutMs: 2500, healthIntervalMs: 10 }, { tool: wg, clock, log: silentLogger(), enroller }, { token, facts });
  assert.deepEqual(tun.masterEndpoints, ['192.0.2.1:51820', '192.0.2.2:51820']);
  await tun.up();
  assert.equal(tun.masterEndpoint, '192.0.2.2:51820', 'the first master did not hand-shake: the second did');
  assert.equal(wg.spec!.peers[0]!.endpoint, '192.0.2.2:51820');
  assert.equal((await tun.status()).masterEndpoint, '192.0.2.2:51820');

  // The second master dies (stale tunnel) and the first is back: the health check moves the peer to it.
  wg.live = new Set(['192.0.2.1:51820']);
  clock.advance(STALE_HANDSHAKE_MS + 1000);
  wg.calls = [];
  tun.startHealthChecks();
  await waitForCondition(() => tun.masterEndpoint === '192.0.2.1:51820' && wg.calls.includes('up'));
  assert.equal(wg.spec!.peers[0]!.endpoint, '192.0.2.1:51820');
  assert.equal((await tun.status()).state, 'up');

  // The master session is lost (a killed master process on a live host still hand-shakes): the
  // peer moves on, without taking the interface down, but not again before MASTER_MOVE_MIN_MS.
  clock.advance(MASTER_MOVE_MIN_MS);
  wg.calls = [];
  assert.equal(await tun.masterUnreachable('lost the master'), true);
  assert.equal(tun.masterEndpoint, '192.0.2.2:51820');
  assert.deepEqual(wg.calls, ['sync']);
  assert.equal(wg.spec!.peers[0]!.endpoint, '192.0.2.2:51820');
  assert.equal(await tun.masterUnreachable('lost the master again'), false, 'too soon after the last move');
  clock.advance(MASTER_MOVE_MIN_MS);
  assert.equal(await tun.masterUnreachable('lost the master again'), true);
  assert.equal(tun.masterEndpoint, '192.0.2.1:51820', 'round and round');
  await tun.close();
  assert.equal(await tun.masterUnreachable('closed'), false);

  // A single-master enrollment (an older master's answer: no other endpoints) keeps one endpoint.
  assert.deepEqual(TunnelConfig.fromJSON({ masterEndpoint: 'x:1' }).otherMasterEndpoints, []);
});

async function waitForCondition(pred: () => boolean): Promise<void> {
  for (let i = 0; i < 300 && !pred(); i++) await new Promise((r) => setTimeout(r, 10));
  assert.ok(pred(), 'condition not met within 3 s');
}

test('join token with other masters: an old token parses, the new one round-trips, a hostile one gets a precise error', () => {
  const old = decodeJoinToken(token);
  assert.deepEqual(old.otherEndpoints, []);
  assert.deepEqual(joinEndpoints(old), ['192.0.2.1:7443']);
  const both = decodeJoinToken(encodeJoinToken({ endpoint: 'a:7443', fingerprint: 'a'.repeat(64), secret: 'hm1.s', otherEndpoints: ['b:7443'] }));
  assert.deepEqual(joinEndpoints(both), ['a:7443', 'b:7443']);
  assert.deepEqual(peerEnrollEndpoints(['b.example:51820', '[2001:db8::2]:51820'], '0.0.0.0:7443'), ['b.example:7443', '[2001:db8::2]:7443']);
  const raw = (o: unknown) => JOIN_PREFIX + Buffer.from(JSON.stringify({ e: 'a:7443', f: 'a'.repeat(64), s: 'hm1.s', o })).toString('base64url');
  const cases: { what: string; token: string; message: RegExp }[] = [
    { what: '1,000 other masters', token: raw(Array.from({ length: 1000 }, (_, i) => `h${i}:1`)), message: /at most 8192|lists 1000 other masters, at most 7/ },
    { what: '8 other masters', token: raw(Array.from({ length: 8 }, (_, i) => `h${i}:1`)), message: /lists 8 other masters, at most 7/ },
    { what: 'a 1 kB entry', token: raw([`${'h'.repeat(1000)}:1`]), message: /other master 1 is 1002 characters, at most 262/ },
    { what: 'not a list', token: raw('b:1'), message: /its list of other masters is not a list/ },
    { what: 'a number', token: raw([7443]), message: /other master 1 is not a string/ },
    { what: 'no port', token: raw(['b:1', 'c']), message: /other master 2 "c" is not HOST:PORT/ },
    { what: 'a newline', token: raw(['b\n:1']), message: /other master 1 "b\\x0a:1" is not HOST:PORT/ },
    { what: 'a 100 kB token', token: JOIN_PREFIX + 'A'.repeat(100_000), message: /it is 100005 characters, at most 8192/ },
  ];
  for (const c of cases) {
    let err: unknown;
    try {
      decodeJoinToken(c.token);
    } catch (e) {
      err = e;
    }
    const precise = err instanceof ConfigError && c.message.test(err.message) && err.message.length < 400;
    recordHostile(`join token: ${c.what}`, !precise);
    assert.ok(precise, `${c.what}: ${String(err)}`);
  }
});
