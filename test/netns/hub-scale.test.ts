// The WireGuard hub at 10,000 peers with real wireguard-go in a network namespace: a /16 hub
// restored from a real SQLite store, then one enrollment and one removal through the hub's own
// code, each a single `wg set`. The interface's peer set is checked exactly after each, and the
// times are printed next to a full sync of the same set (the old path), as a figure, not a bound.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { silentLogger } from '../../src/common/logger.js';
import { MasterStore } from '../../src/master/master-store.js';
import { TunnelHub } from '../../src/master/tunnel-hub.js';
import { NodeFacts } from '../../src/protocol/gen/hivemind/v1/common.js';
import { LinuxWireGuard } from '../../src/tunnel/linux-wireguard.js';
import { generateWgKeyPair } from '../../src/tunnel/wg-keys.js';
import { NetLab } from '../helpers/netns.js';
import { requireNetns, requireWireGuard } from '../helpers/requirements.js';

const PEERS = 10_000;

test('hub with a /16 and 10,000 peers: one enrollment and one removal are one `wg set` each, and the peer set is exact afterwards', { timeout: 300_000 }, async (t) => {
  if (!requireNetns(t) || !requireWireGuard(t)) return;
  const lab = NetLab.create(['m']);
  const dir = mkdtempSync(join(tmpdir(), 'hm-hub-scale-'));
  const store = MasterStore.open(join(dir, 'master.db'));
  const ifname = `hm${lab.id}h`;
  let hub: TunnelHub | undefined;
  t.after(async () => {
    // The interface first: wireguard-go then exits on its own and removes its socket.
    await hub?.close().catch(() => undefined);
    // wireguard-go removes its socket as it exits; a kill by lab.destroy() would leave it behind.
    const sock = `/var/run/wireguard/${ifname}.sock`;
    for (let i = 0; i < 60 && existsSync(sock); i++) await new Promise((r) => setTimeout(r, 50));
    rmSync(sock, { force: true });
    store.close();
    lab.destroy();
    rmSync(dir, { recursive: true, force: true });
  });
  const runner = lab.runner('m');
  const calls: string[] = [];
  const counting = { run: (file: string, args: readonly string[], opts?: { input?: string; timeoutMs?: number }) => (calls.push([file, ...args.slice(0, 3)].join(' ')), runner.run(file, args, opts)) };
  const tool = new LinuxWireGuard(counting);
  const facts = NodeFacts.create();
  const ipOf = (i: number) => `10.8.${(i + 2) >> 8}.${(i + 2) & 255}`;
  const keys = Array.from({ length: PEERS }, () => generateWgKeyPair().publicKey);
  store.transaction(() => {
    for (let i = 0; i < PEERS; i++) store.insertNode({ id: `n${String(i).padStart(15, '0')}`, name: `n${i}`, facts, credentialHash: `h${i}`, at: i, wgPublicKey: keys[i]!, tunnelIp: ipOf(i) });
  });

  hub = await TunnelHub.create({ interfaceName: ifname, subnet: '10.8.0.0/16', endpoint: `${lab.host('m').ip}:51820`, nodePort: 7070, mesh: false, dataDir: dir }, { tool, runner: counting, store, log: silentLogger() });
  let at = performance.now();
  await hub.start();
  const startMs = performance.now() - at;
  const peersOnIf = () => lab.exec('m', ['wg', 'show', ifname, 'peers']).split('\n').filter(Boolean);
  const allowed = () => new Map(lab.exec('m', ['wg', 'show', ifname, 'allowed-ips']).split('\n').filter(Boolean).map((l) => l.split('\t') as [string, string]));
  assert.equal(peersOnIf().length, PEERS);
  assert.match(lab.exec('m', ['ip', '-4', 'address', 'show', 'dev', ifname]), /inet 10\.8\.0\.1\/16/);

  // One enrollment, as enroll-service.ts does it: allocate, store, add the peer.
  calls.length = 0;
  const fresh = generateWgKeyPair().publicKey;
  at = performance.now();
  const ip = hub.allocate();
  store.insertNode({ id: 'fresh00000000000', name: 'fresh', facts, credentialHash: 'hf', at: PEERS, wgPublicKey: fresh, tunnelIp: ip });
  await hub.addPeer({ nodeId: 'fresh00000000000', publicKey: fresh, tunnelIp: ip });
  const addMs = performance.now() - at;
  assert.equal(ip, ipOf(PEERS));
  assert.deepEqual(calls, [`wg set ${ifname} peer`]);
  let now = allowed();
  assert.equal(now.size, PEERS + 1);
  assert.equal(now.get(fresh), `${ip}/32`);

  // One removal, as admin-service.ts + master.ts do it.
  calls.length = 0;
  const gone = 1234;
  at = performance.now();
  store.removeNode(`n${String(gone).padStart(15, '0')}`, PEERS + 1);
  assert.equal(await hub.removePeer(`n${String(gone).padStart(15, '0')}`), true);
  const removeMs = performance.now() - at;
  assert.deepEqual(calls, [`wg set ${ifname} peer`]);
  now = allowed();
  assert.equal(now.size, PEERS);
  assert.equal(now.has(keys[gone]!), false);
  assert.equal(now.get(keys[gone + 1]!), `${ipOf(gone + 1)}/32`);
  assert.equal(peersOnIf().length, PEERS);
  // The freed address is the next one handed out.
  assert.equal(hub.allocate(), ipOf(gone));
  hub.release(ipOf(gone));

  // The old path, for the figure: the whole set re-applied (syncconf) to add one peer.
  const privateKey = readFileSync(join(dir, 'wg', 'private.key'), 'utf8').trim();
  const extra = generateWgKeyPair().publicKey;
  at = performance.now();
  // What the hub did before: parse every node row, then syncconf the whole set.
  const rows = store.listNodes().filter((n) => n.wgPublicKey && n.tunnelIp);
  const spec = { name: ifname, privateKey, address: '10.8.0.1/16', listenPort: 51820, peers: [...rows.map((n) => ({ publicKey: n.wgPublicKey!, allowedIps: [`${n.tunnelIp}/32`] })), { publicKey: extra, allowedIps: ['10.8.200.1/32'] }] };
  await tool.syncPeers(spec);
  const syncMs = performance.now() - at;
  assert.equal(peersOnIf().length, PEERS + 1);

  const restart = performance.now();
  const again = await TunnelHub.create({ interfaceName: ifname, subnet: '10.8.0.0/16', endpoint: `${lab.host('m').ip}:51820`, nodePort: 7070, mesh: false, dataDir: dir }, { tool, runner: counting, store, log: silentLogger() });
  const loadMs = performance.now() - restart;
  assert.equal(again.peerCount, PEERS, 'a restarted hub restores exactly the enrolled, not removed, nodes');

  t.diagnostic(`hub at ${PEERS} peers (/16, wireguard-go, through ip netns exec): start (setconf of all) ${startMs.toFixed(0)} ms; add one peer (wg set) ${addMs.toFixed(1)} ms; remove one peer (wg set … remove) ${removeMs.toFixed(1)} ms; add one peer the old way (listNodes + syncconf of ${PEERS + 1}) ${syncMs.toFixed(0)} ms; restore the peer set from the store ${loadMs.toFixed(1)} ms`);
  console.log(`# hub-scale: start=${startMs.toFixed(0)}ms add=${addMs.toFixed(1)}ms remove=${removeMs.toFixed(1)}ms fullsync-add=${syncMs.toFixed(0)}ms restore=${loadMs.toFixed(1)}ms`);
});
