// The egress network, end to end: a real master and a real worker started with --allow-egress
// (real Docker, the product's own iptables chains in DOCKER-USER and INPUT), and a task submitted
// with --network egress. Its "internet" is a network namespace of the test's own at 203.0.113.10
// (TEST-NET-3, never a real address) with an HTTP and a DNS server; the host reaches it over a veth
// on 203.0.113.0/24, so the egress bridge's NAT goes there and nowhere real. The task must reach it
// by name and by address, and must not reach: a "LAN" host (a namespace at 192.168.77.10), a
// listener of the host itself, the worker's monitor (bound to every address, token-protected),
// another container on the egress network, or a master of the node at a public address (a second
// address of the "internet", 203.0.113.20, listed in the worker's --master: only the masters' rule
// stands between the task and it). Each of those is first shown reachable from the host,
// so a refusal is the firewall's and not a missing route. The product's rules, network and the
// namespaces are removed at the end.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { createServer, type Server } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Docker from 'dockerode';
import { requireDockerImage, requireNetns } from '../helpers/requirements.js';
import { deleteNamespace } from '../helpers/netns.js';
import { ProcessCluster } from '../helpers/process-cluster.js';
import { freePort, waitFor } from '../helpers/cli-process.js';
import { recordHostile } from '../helpers/fault-ledger.js';
import { DockerEgressNetworks, removeEgress } from '../../src/runtime/egress-network.js';
import { ExecIptables } from '../../src/runtime/egress-firewall.js';
import { egressNames } from '../../src/runtime/egress-policy.js';

const IMAGE = 'hivemind/busybox:1';
const SERVER = join(dirname(fileURLToPath(import.meta.url)), '..', 'helpers', 'test-internet-server.js');
const INTERNET = '203.0.113.10';
const LAN = '192.168.77.10';
/** A master of the node as the worker knows it (its --master list), at an address the internet rules would let through. */
const PUBLIC_MASTER = '203.0.113.20';
const BODY = 'hello from the test internet';

function sh(args: string[]): string {
  return execFileSync(args[0]!, args.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] }).toString();
}

/** A namespace with one veth to the root namespace: `rootAddr` on the root end, `nsAddr` inside. */
function host(ns: string, rootLink: string, rootCidr: string, nsCidr: string): () => void {
  const destroy = () => {
    deleteNamespace(ns);
    try {
      sh(['ip', 'link', 'del', rootLink]);
    } catch {
      // went with the namespace
    }
  };
  try {
    sh(['ip', 'netns', 'add', ns]);
    sh(['ip', 'link', 'add', rootLink, 'type', 'veth', 'peer', 'name', `${rootLink}n`, 'netns', ns]);
    sh(['ip', 'address', 'add', rootCidr, 'dev', rootLink]);
    sh(['ip', 'link', 'set', rootLink, 'up']);
    sh(['ip', '-n', ns, 'link', 'set', 'lo', 'up']);
    sh(['ip', '-n', ns, 'link', 'set', `${rootLink}n`, 'name', 'eth0']);
    sh(['ip', '-n', ns, 'address', 'add', nsCidr, 'dev', 'eth0']);
    sh(['ip', '-n', ns, 'link', 'set', 'eth0', 'up']);
    sh(['ip', '-n', ns, 'route', 'add', 'default', 'via', rootCidr.split('/')[0]!]);
  } catch (err) {
    destroy();
    throw err;
  }
  return destroy;
}

/** Whether the probe connected (nc exits 0 once connected, whatever the server answers). */
function reached(line: string | undefined): boolean {
  return line !== undefined && / OK /.test(line);
}

test('an egress task reaches the test internet by name and address, and not the LAN, the host, the monitor or another container', async (t) => {
  if (!requireNetns(t) || !requireDockerImage(t, IMAGE)) return;
  const tag = `${process.pid % 100000}`;
  const network = `hm-egress-t${tag}`;
  const subnet = `10.214.${process.pid % 250}.0/24`;
  const gateway = subnet.replace(/0\/24$/, '1');
  const docker = new Docker();
  const product = { engine: new DockerEgressNetworks(docker), iptables: new ExecIptables() };

  t.after(() => deleteNamespace(`hmi${tag}`));
  const dropInternet = host(`hmi${tag}`, `hmi${tag}r`, '203.0.113.1/24', `${INTERNET}/24`);
  t.after(dropInternet);
  const dropLan = host(`hml${tag}`, `hml${tag}r`, '192.168.77.1/24', `${LAN}/24`);
  t.after(dropLan);
  sh(['ip', '-n', `hmi${tag}`, 'address', 'add', `${PUBLIC_MASTER}/24`, 'dev', 'eth0']);

  const spawnIn = (ns: string, args: string[]) => spawn('ip', ['netns', 'exec', ns, process.execPath, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const internet = spawnIn(`hmi${tag}`, [SERVER, INTERNET, 'internet.test', BODY]);
  const lan = spawnIn(`hml${tag}`, [SERVER, LAN, 'lan.test', 'the LAN host']);
  const publicMaster = spawnIn(`hmi${tag}`, [SERVER, PUBLIC_MASTER, 'master.test', 'a master of the node']);
  t.after(() => {
    internet.kill('SIGKILL');
    lan.kill('SIGKILL');
    publicMaster.kill('SIGKILL');
  });
  let internetOut = '';
  let lanOut = '';
  internet.stdout!.on('data', (d: Buffer) => (internetOut += d.toString()));
  internet.stderr!.on('data', (d: Buffer) => (internetOut += d.toString()));
  lan.stdout!.on('data', (d: Buffer) => (lanOut += d.toString()));
  lan.stderr!.on('data', (d: Buffer) => (lanOut += d.toString()));
  let masterOut = '';
  publicMaster.stdout!.on('data', (d: Buffer) => (masterOut += d.toString()));
  publicMaster.stderr!.on('data', (d: Buffer) => (masterOut += d.toString()));
  await waitFor('the test internet, LAN and public master servers', () => (internetOut.includes('"listening":true') && lanOut.includes('"listening":true') && masterOut.includes('"listening":true')) || undefined, 15_000);

  // A listener of the host itself on every address: what a task must not reach (the master, an SSH daemon, ...).
  const hostHits: string[] = [];
  const hostServer: Server = createServer((s) => {
    hostHits.push(String(s.remoteAddress));
    s.end('host\n');
  });
  const hostPort = await freePort();
  await new Promise<void>((r) => hostServer.listen(hostPort, '0.0.0.0', r));
  t.after(() => hostServer.close());

  const monitorPort = await freePort();
  const cluster = await ProcessCluster.start({
    extraMasters: [`${PUBLIC_MASTER}:80`],
    workerArgs: ['--allow-egress', '--egress-rate', '4mbit', '--egress-dns', INTERNET, '--egress-network', network, '--egress-subnet', subnet, '--monitor-port', String(monitorPort), '--monitor-listen', '0.0.0.0', '--monitor-token', 'egress-test-token'],
  });
  // One hook, in order: the worker and the peer container leave the network before the product's
  // network and rules are removed (node:test runs separate after-hooks in the order they were added).
  t.after(async () => {
    await cluster.close();
    await docker.getContainer(`hm-egress-peer-${tag}`).remove({ force: true }).catch(() => undefined);
    await removeEgress(network, product);
    const names = egressNames(network);
    assert.throws(() => sh(['iptables', '-L', names.forwardChain, '-n']), 'the forward chain is gone');
    assert.throws(() => sh(['iptables', '-L', names.inputChain, '-n']), 'the input chain is gone');
    assert.doesNotMatch(sh(['iptables', '-S']), new RegExp(names.bridge), 'no jump to them is left');
  });

  const nodes = JSON.parse((await cluster.cli(["nodes", "--json"])).stdout) as { facts?: { allowsEgress?: boolean } }[];
  assert.equal(nodes[0]?.facts?.allowsEgress, true, `the node offers egress: ${cluster.worker?.output ?? ''}`);

  // Another container on the egress network, serving HTTP (a task or service of someone else).
  const peer = await docker.createContainer({
    name: `hm-egress-peer-${tag}`,
    Image: IMAGE,
    Labels: { 'hivemind.test': 'egress' },
    Cmd: ['sh', '-c', 'mkdir -p /tmp/w && echo peer > /tmp/w/index.html && exec httpd -f -p 8080 -h /tmp/w'],
    HostConfig: { NetworkMode: network },
  });
  await peer.start();
  const peerIp = ((await peer.inspect()).NetworkSettings.Networks[network] as { IPAddress: string }).IPAddress;
  assert.ok(peerIp, 'the peer container has an address on the egress network');

  // Each target answers from the host: a refusal below is the firewall's, not a missing route.
  const fromHost = async (url: string, headers: Record<string, string> = {}) => (await fetch(url, { headers, signal: AbortSignal.timeout(5_000) })).status;
  assert.equal(await fromHost(`http://${INTERNET}/`), 200);
  assert.equal(await fromHost(`http://${LAN}/`), 200);
  assert.equal(await fromHost(`http://${PUBLIC_MASTER}/`), 200);
  await waitFor('the peer container serving', async () => (await fromHost(`http://${peerIp}:8080/`).catch(() => 0)) === 200 || undefined, 15_000, 200);
  assert.equal(await fromHost(`http://${gateway}:${monitorPort}/`, { authorization: 'Bearer egress-test-token' }).then(() => true), true, 'the monitor answers on the bridge address');
  assert.equal(await fromHost(`http://${gateway}:${hostPort}/`).catch(() => 'answered'), 'answered');

  // The image's static busybox wget crashes in getaddrinfo: nc connects (numeric addresses) and
  // busybox's own nslookup resolves (through Docker's embedded DNS, which forwards to --egress-dns).
  const probes: [string, string, number][] = [
    ['internet-ip', INTERNET, 80],
    ['lan', LAN, 80],
    ['host', gateway, hostPort],
    ['monitor', gateway, monitorPort],
    ['peer', peerIp, 8080],
    ['master', PUBLIC_MASTER, 80],
  ];
  const script = [
    // The node starts counting the task's bytes after start, by its address (a few ms, more while
    // Docker holds the xtables lock): the task waits for that rather than racing it.
    'sleep 3',
    `probe() { if out=$(printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 4 "$2" "$3" 2>&1); then echo "$1 OK $(echo "$out" | tail -n 1)"; else echo "$1 FAIL $out"; fi; }`,
    `ip=$(nslookup internet.test | awk '/^Address/ { a = $NF } END { print a }')`,
    'echo "resolved $ip"',
    'probe internet-name "$ip" 80',
    ...probes.map(([name, addr, port]) => `probe ${name} ${addr} ${port}`),
    'echo "ipv6-disabled $(cat /proc/sys/net/ipv6/conf/all/disable_ipv6)"',
    'echo "ipv6-addresses $(grep -c . /proc/net/if_inet6 2>/dev/null)"',
  ].join('\n');
  const lanSeenBefore = lanOut.length;
  const masterSeenBefore = masterOut.length;
  const hostHitsBefore = hostHits.length;
  const sub = await cluster.cli(['submit', '--image', IMAGE, '--network', 'egress', '--json', '--', 'sh', '-c', script]);
  assert.equal(sub.code, 0, sub.stderr);
  const taskId = (JSON.parse(sub.stdout) as { taskId: string }).taskId;
  await cluster.cli(['wait', taskId], 120_000);
  const task = JSON.parse((await cluster.cli(['get', taskId, '--json'])).stdout) as { state: string; outcome?: { message: string; netRxBytes?: number; netTxBytes?: number } };
  const out = (await cluster.cli(['logs', taskId])).stdout;
  const line = (name: string) => out.split('\n').find((l) => l.startsWith(`${name} `));
  assert.equal(task.state, 'succeeded', `${JSON.stringify(task)}\n${out}\n${cluster.worker?.output ?? ''}`);

  assert.equal(line('resolved'), `resolved ${INTERNET}`, out);
  assert.equal(line('internet-name'), `internet-name OK ${BODY}`, out);
  assert.equal(line('internet-ip'), `internet-ip OK ${BODY}`, out);
  assert.ok(/"dns":"internet.test"/.test(internetOut), 'the name was resolved by the test internet\'s DNS server');
  for (const [name, what] of [['lan', `the LAN host ${LAN}`], ['host', 'a listener of the host'], ['monitor', 'the worker\'s monitor'], ['peer', 'another container on the egress network'], ['master', `a master of the node at a public address (${PUBLIC_MASTER})`]] as const) {
    recordHostile(`egress: a task reaches ${what}`, reached(line(name)));
    assert.ok(line(name)?.startsWith(`${name} FAIL`), `${name}: ${line(name)}`);
  }
  // What the targets saw, besides what the task said: nothing after the host's own control requests.
  recordHostile('egress: a task connects to the host listener (seen by the host)', hostHits.length > hostHitsBefore);
  assert.deepEqual(hostHits.slice(hostHitsBefore), []);
  recordHostile('egress: a request reaches the LAN host (seen by the LAN host)', lanOut.slice(lanSeenBefore).includes('"http"'));
  recordHostile('egress: a request reaches the public master (seen by it)', masterOut.slice(masterSeenBefore).includes('"http"'));
  assert.equal(masterOut.slice(masterSeenBefore).includes('"http"'), false, 'the public master saw no request from the task');
  assert.equal(lanOut.slice(lanSeenBefore), '', 'the LAN host saw no request from the task');
  assert.equal(line('ipv6-disabled'), 'ipv6-disabled 1', out);

  // Bytes in and out, counted by the node's firewall, in the outcome and in `hivemind get`.
  assert.ok((task.outcome?.netRxBytes ?? 0) >= 2 * BODY.length, `received at least both answers: ${JSON.stringify(task.outcome)}\n${cluster.worker?.output ?? ''}`);
  assert.ok((task.outcome?.netTxBytes ?? 0) > 0, `sent something: ${JSON.stringify(task.outcome)}\n${cluster.worker?.output ?? ''}`);
  assert.match((await cluster.cli(['get', taskId])).stdout, /network {3}egress: in \d/);
  t.diagnostic(`egress task bytes: in ${task.outcome?.netRxBytes}, out ${task.outcome?.netTxBytes}`);
  assert.equal(line('ipv6-addresses'), 'ipv6-addresses 0', out);

  // The node's --egress-rate (4 Mbit/s each way): 1 MiB down takes about 2.1 s, 512 KiB up about 1 s
  // (less the 32 KiB bucket); without the cap both take milliseconds on this veth.
  const rateScript = [
    'sleep 1',
    "now() { cut -d' ' -f1 /proc/uptime; }",
    't0=$(now)',
    `got=$(printf 'GET /big HTTP/1.0\\r\\n\\r\\n' | nc -w 20 ${INTERNET} 80 | wc -c)`,
    't1=$(now)',
    `sent=$( (printf 'POST /up HTTP/1.0\\r\\nContent-Length: 524288\\r\\n\\r\\n'; head -c 524288 /dev/zero) | nc -w 20 ${INTERNET} 80 | tail -n 1)`,
    't2=$(now)',
    'echo "down $got $t0 $t1"',
    'echo "up $sent $t1 $t2"',
  ].join('\n');
  const measure = async (extra: string[]) => {
    const rs = await cluster.cli(['submit', '--image', IMAGE, '--network', 'egress', ...extra, '--json', '--', 'sh', '-c', rateScript]);
    assert.equal(rs.code, 0, rs.stderr);
    const id = (JSON.parse(rs.stdout) as { taskId: string }).taskId;
    await cluster.cli(['wait', id], 120_000);
    const text = (await cluster.cli(['logs', id])).stdout;
    const down = /^down (\d+) ([\d.]+) ([\d.]+)$/m.exec(text);
    const up = /^up received (\d+) ([\d.]+) ([\d.]+)$/m.exec(text);
    // The task's own record too: a task that did not run says why in its outcome, not in its logs.
    if (!down || !up) assert.fail(`${text}\n${(await cluster.cli(['get', id])).stdout}\n${cluster.worker?.output ?? ''}`);
    assert.ok(Number(down[1]) > 1024 * 1024, `the whole body came: ${down[1]} bytes`);
    assert.equal(Number(up[1]), 524288, 'the whole upload arrived');
    return { id, downS: Number(down[3]) - Number(down[2]), upS: Number(up[3]) - Number(up[2]) };
  };
  const { id: rateId, downS, upS } = await measure([]);
  t.diagnostic(`capped at 4mbit: 1 MiB down in ${downS.toFixed(2)} s, 512 KiB up in ${upS.toFixed(2)} s`);
  assert.ok(downS >= 1.5 && downS < 10, `1 MiB down at 4 Mbit/s: ${downS} s`);
  assert.ok(upS >= 0.7 && upS < 10, `512 KiB up at 4 Mbit/s: ${upS} s`);
  // The task's own cap (--egress-rate 2mbit, under the node's 4mbit): the lower holds, both ways.
  const own = await measure(['--egress-rate', '2mbit']);
  t.diagnostic(`the task's own 2mbit: 1 MiB down in ${own.downS.toFixed(2)} s, 512 KiB up in ${own.upS.toFixed(2)} s`);
  assert.ok(own.downS >= 3.2 && own.downS < 20, `1 MiB down at 2 Mbit/s: ${own.downS} s`);
  assert.ok(own.upS >= 1.5 && own.upS < 20, `512 KiB up at 2 Mbit/s: ${own.upS} s`);
  assert.ok(own.downS > 1.5 * downS, `the task's cap is slower than the node's: ${own.downS} s against ${downS} s`);
  const rateTask = JSON.parse((await cluster.cli(['get', rateId, '--json'])).stdout) as { outcome?: { netRxBytes?: number; netTxBytes?: number } };
  assert.ok((rateTask.outcome?.netRxBytes ?? 0) > 1024 * 1024 && (rateTask.outcome?.netTxBytes ?? 0) > 512 * 1024, JSON.stringify(rateTask.outcome));
  t.diagnostic(`rate task bytes: in ${rateTask.outcome?.netRxBytes}, out ${rateTask.outcome?.netTxBytes}`);
});
