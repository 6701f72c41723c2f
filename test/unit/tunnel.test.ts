// The WireGuard layer without WireGuard: key derivation against RFC 7748, the config renderers,
// the `wg show dump` parser, and the exact commands each platform runs (a recording runner).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ProgramNotFoundError, type CommandResult, type CommandRunner } from '../../src/tunnel/command-runner.js';
import { LinuxWireGuard } from '../../src/tunnel/linux-wireguard.js';
import { WindowsWireGuard } from '../../src/tunnel/windows-wireguard.js';
import { generateWgKeyPair, isWgKey, wgPublicKeyOf } from '../../src/tunnel/wg-keys.js';
import { parseWgDump, renderWgConf, renderWgQuickConf, wgSetArgs, type WgInterfaceSpec } from '../../src/tunnel/wg-spec.js';
import { TunnelPermissionError, WireGuardMissingError } from '../../src/tunnel/tunnel-errors.js';

const hex = (h: string) => Buffer.from(h, 'hex').toString('base64');

test('X25519 public keys match RFC 7748; generated pairs are consistent', () => {
  // RFC 7748 section 6.1, Alice
  assert.equal(wgPublicKeyOf(hex('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a')), hex('8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a'));
  const kp = generateWgKeyPair();
  assert.ok(isWgKey(kp.privateKey) && isWgKey(kp.publicKey));
  assert.equal(wgPublicKeyOf(kp.privateKey), kp.publicKey);
  assert.notEqual(generateWgKeyPair().privateKey, kp.privateKey);
  assert.throws(() => wgPublicKeyOf('nope'), /not a WireGuard private key/);
});

const spec: WgInterfaceSpec = {
  name: 'hm0',
  privateKey: hex('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a'),
  address: '10.8.0.2/24',
  listenPort: 51821,
  peers: [{ publicKey: hex('8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a'), endpoint: 'master.example:51820', allowedIps: ['10.8.0.0/24'], persistentKeepalive: 25 }],
};

test('config renderers: wg form without Address, wg-quick form with Address and CRLF', () => {
  const conf = renderWgConf(spec);
  assert.match(conf, /^\[Interface\]\nPrivateKey = \S+\nListenPort = 51821\n\n\[Peer\]\nPublicKey = \S+\nEndpoint = master\.example:51820\nAllowedIPs = 10\.8\.0\.0\/24\nPersistentKeepalive = 25\n$/);
  assert.doesNotMatch(conf, /Address/);
  const quick = renderWgQuickConf(spec);
  assert.match(quick, /Address = 10\.8\.0\.2\/24\r\nMTU = 1420\r\n/);
});

test('wg show dump is parsed, including a peer that never shook hands', () => {
  const dump = [
    'cHJpdg==\tPUBKEYmaster=\t51820\toff',
    'PEERa=\t(none)\t192.168.1.2:51821\t10.8.0.2/32\t1700000000\t1234\t5678\t25',
    'PEERb=\t(none)\t(none)\t10.8.0.3/32,10.8.1.0/24\t0\t0\t0\toff',
  ].join('\n');
  const st = parseWgDump(dump + '\n');
  assert.equal(st.publicKey, 'PUBKEYmaster=');
  assert.equal(st.listenPort, 51820);
  assert.deepEqual(st.peers[0], { publicKey: 'PEERa=', endpoint: '192.168.1.2:51821', allowedIps: ['10.8.0.2/32'], latestHandshakeMs: 1_700_000_000_000, rxBytes: 1234, txBytes: 5678, persistentKeepalive: 25 });
  assert.deepEqual(st.peers[1], { publicKey: 'PEERb=', allowedIps: ['10.8.0.3/32', '10.8.1.0/24'], latestHandshakeMs: 0, rxBytes: 0, txBytes: 0, persistentKeepalive: 0 });
  assert.throws(() => parseWgDump('garbage'), /unexpected `wg show dump` output/);
});

class RecordingRunner implements CommandRunner {
  calls: string[] = [];
  files: string[] = [];
  constructor(private readonly answer: (cmd: string) => Partial<CommandResult> | 'missing' = () => ({})) {}
  async run(file: string, args: readonly string[]): Promise<CommandResult> {
    const cmd = [file, ...args].join(' ');
    this.calls.push(cmd);
    const conf = args.find((a) => a.endsWith('.conf'));
    if (conf) this.files.push(await readFile(conf, 'utf8').catch(() => ''));
    const a = this.answer(cmd);
    if (a === 'missing') throw new ProgramNotFoundError(file);
    return { stdout: '', stderr: '', exitCode: 0, ...a };
  }
}

test('Linux: kernel WireGuard when available, wireguard-go otherwise; the key only in a removed 0600 file', async () => {
  const kernel = new RecordingRunner((c) => (c.startsWith('ip link show') ? { exitCode: 1, stderr: 'Device "hm0" does not exist.' } : {}));
  assert.equal(await new LinuxWireGuard(kernel).up(spec), 'kernel');
  assert.deepEqual(kernel.calls.map((c) => c.replace(/\S+hm0\.conf/, 'FILE')), [
    'wg --version',
    'ip link show dev hm0',
    'ip link add dev hm0 type wireguard',
    'wg setconf hm0 FILE',
    'ip -4 address flush dev hm0',
    'ip -4 address add 10.8.0.2/24 dev hm0',
    'ip link set dev hm0 mtu 1420 up',
  ]);
  assert.match(kernel.files[0]!, /PrivateKey = /);
  const confPath = kernel.calls[3]!.split(' ')[2]!;
  await assert.rejects(readFile(confPath), /ENOENT/, 'the key file is gone after use');
  assert.ok(kernel.calls.every((c) => !c.includes(spec.privateKey)), 'the private key is never an argument');

  const user = new RecordingRunner((c) =>
    c.startsWith('ip link show') ? { exitCode: 1 } : c.startsWith('ip link add') ? { exitCode: 2, stderr: 'Error: Unknown device type.' } : {},
  );
  assert.equal(await new LinuxWireGuard(user).up(spec), 'userspace');
  assert.ok(user.calls.includes('wireguard-go hm0'));
});

test('Linux: clear errors for missing tools, missing permission, and a half-made interface is removed', async () => {
  await assert.rejects(new LinuxWireGuard(new RecordingRunner((c) => (c.startsWith('wg') ? 'missing' : {}))).up(spec), (e: unknown) => e instanceof WireGuardMissingError && /apt-get install wireguard-tools/.test(e.message));
  const noGo = new RecordingRunner((c) => (c.startsWith('ip link show') ? { exitCode: 1 } : c.startsWith('ip link add') ? { exitCode: 2, stderr: 'Error: Unknown device type.' } : c.startsWith('wireguard-go') ? 'missing' : {}));
  await assert.rejects(new LinuxWireGuard(noGo).up(spec), /modprobe wireguard.*wireguard-go/);
  const denied = new RecordingRunner((c) => (c.startsWith('ip link show') ? { exitCode: 1 } : c.startsWith('ip link add') ? { exitCode: 2, stderr: 'RTNETLINK answers: Operation not permitted' } : {}));
  await assert.rejects(new LinuxWireGuard(denied).up(spec), (e: unknown) => e instanceof TunnelPermissionError && /CAP_NET_ADMIN/.test(e.message));
  const badAddr = new RecordingRunner((c) => (c.startsWith('ip link show') ? { exitCode: 1 } : c.startsWith('ip -4 address add') ? { exitCode: 2, stderr: 'Error: bad address' } : {}));
  await assert.rejects(new LinuxWireGuard(badAddr).up(spec), /bad address/);
  assert.equal(badAddr.calls.at(-1), 'ip link del dev hm0', 'rolled back');
  assert.equal(await new LinuxWireGuard(new RecordingRunner(() => ({ exitCode: 1, stderr: 'Unable to access interface: Protocol not supported' }))).show('hm0'), undefined);
});

test('Windows: the tunnel service is installed from a wg-quick file and removed on down', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'hm-wgwin-'));
  try {
    const r = new RecordingRunner((c) => (c.includes(' show ') ? { stdout: 'cHJpdg==\tPUB=\t51821\toff\n' } : {}));
    const w = new WindowsWireGuard(r, { confDir: dir });
    assert.equal(await w.up(spec), 'windows-service');
    const conf = join(dir, 'hm0.conf');
    assert.deepEqual(r.calls, [
      'C:\\Program Files\\WireGuard\\wireguard.exe /uninstalltunnelservice hm0',
      `C:\\Program Files\\WireGuard\\wireguard.exe /installtunnelservice ${conf}`,
    ]);
    assert.match(await readFile(conf, 'utf8'), /Address = 10\.8\.0\.2\/24\r\n/);
    r.calls = [];
    await w.syncPeers(spec);
    assert.equal(r.calls[0], `C:\\Program Files\\WireGuard\\wg.exe syncconf hm0 ${join(dir, 'hm0.peers.conf')}`);
    r.calls = [];
    assert.equal((await w.show('hm0'))?.listenPort, 51821);
    await w.down('hm0');
    assert.deepEqual(r.calls, ['C:\\Program Files\\WireGuard\\wg.exe show hm0 dump', 'C:\\Program Files\\WireGuard\\wireguard.exe /uninstalltunnelservice hm0']);
    await assert.rejects(readFile(conf), /ENOENT/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('per-peer changes: `wg set` clauses for set and remove, at most 500 peers a command; Windows runs the same through wg.exe', async () => {
  const k = generateWgKeyPair().publicKey;
  assert.deepEqual(wgSetArgs('hm0', { set: [{ publicKey: k, endpoint: '192.0.2.8:51820', allowedIps: ['10.8.0.8/32'], persistentKeepalive: 25 }], remove: ['OLD'] }), [
    ['set', 'hm0', 'peer', 'OLD', 'remove', 'peer', k, 'endpoint', '192.0.2.8:51820', 'persistent-keepalive', '25', 'allowed-ips', '10.8.0.8/32'],
  ]);
  const many = wgSetArgs('hm0', { set: [], remove: Array.from({ length: 1200 }, (_, i) => `K${i}`) });
  assert.deepEqual(many.map((a) => (a.length - 2) / 3), [500, 500, 200]);
  const linux = new RecordingRunner();
  await new LinuxWireGuard(linux).updatePeers('hm0', { set: [], remove: [k] });
  assert.deepEqual(linux.calls, [`wg set hm0 peer ${k} remove`]);
  await assert.rejects(new LinuxWireGuard(new RecordingRunner(() => ({ exitCode: 1, stderr: 'Unable to modify interface' }))).updatePeers('hm0', { set: [], remove: [k] }), /wg set hm0 peer .* remove failed: Unable to modify interface/);
  const win = new RecordingRunner();
  await new WindowsWireGuard(win, { confDir: tmpdir() }).updatePeers('hm0', { set: [], remove: [k] });
  assert.deepEqual(win.calls, [`C:\\Program Files\\WireGuard\\wg.exe set hm0 peer ${k} remove`]);
});
