// Egress, opt-in, without I/O: the blocked ranges and resolvers, the firewall's rules installed
// through a fake iptables, placement only on nodes that allow egress, the spec and container rules,
// and the CLI flag.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError, EgressUnavailableError, InvalidTaskError } from '../../src/common/errors.js';
import { placeTasks, whyUnplaced, type QueuedTask, type SchedulableNode } from '../../src/master/scheduler.js';
import { classKey } from '../../src/master/task-queue.js';
import { TaskNetwork, type TaskSpec } from '../../src/protocol/gen/hivemind/v1/common.js';
import { checkTaskSpec } from '../../src/protocol/task-spec-rules.js';
import { buildContainerConfig } from '../../src/runtime/container-spec.js';
import { EgressFirewall, type IptablesRunner } from '../../src/runtime/egress-firewall.js';
import { BLOCKED_V4, egressNames, egressResolvers, egressRules, isBlockedV4, masterBlocks, parseAccounting } from '../../src/runtime/egress-policy.js';
import { buildSpec, parseNetworkFlag } from '../../src/cli/task-spec-flags.js';
import { EgressShaper, effectiveRate, parseRate, rateCommands, tbfArgs } from '../../src/runtime/egress-rate.js';
import type { TaskExecution } from '../../src/worker/contracts.js';
import { recordHostile } from '../helpers/fault-ledger.js';

test('the blocked ranges cover the LAN, link-local and metadata, CGNAT, loopback and the tunnel; public addresses pass', () => {
  for (const a of ['10.0.0.1', '10.99.0.1', '172.16.0.1', '172.31.255.254', '192.168.1.1', '169.254.169.254', '100.64.0.1', '100.127.255.254', '127.0.0.1', '0.0.0.0', '224.0.0.251', '255.255.255.255']) {
    assert.equal(isBlockedV4(a), true, a);
  }
  for (const a of ['1.1.1.1', '8.8.8.8', '203.0.113.10', '172.32.0.1', '100.128.0.1', '169.255.0.1']) assert.equal(isBlockedV4(a), false, a);
});

test('names are derived from the network name, fit Linux and iptables limits, and refuse odd names', () => {
  const n = egressNames('hivemind-egress');
  assert.match(n.bridge, /^hme[0-9a-f]{8}$/);
  assert.ok(n.bridge.length <= 15 && n.inputChain.length <= 28);
  assert.notEqual(egressNames('other').bridge, n.bridge);
  assert.throws(() => egressNames('a b; iptables -F'), ConfigError);
});

test('resolvers: the operator\'s public ones, else the host\'s public nameservers; a private one is refused with what to set', () => {
  assert.deepEqual(egressResolvers(['9.9.9.9'], 'nameserver 192.168.1.1\n'), ['9.9.9.9']);
  assert.deepEqual(egressResolvers([], 'search lan\nnameserver 192.168.1.1\nnameserver 1.1.1.1\nnameserver ::1\n'), ['1.1.1.1']);
  assert.throws(() => egressResolvers(['192.168.1.1'], ''), /private, link-local or reserved address: an egress task cannot reach it/);
  assert.throws(() => egressResolvers(['dns.example'], ''), /is not an IPv4 address/);
  assert.throws(() => egressResolvers([], 'nameserver 127.0.0.53\n'), /the host's resolvers \(127\.0\.0\.53\) are private or local.*set --egress-dns/);
});

test('the masters\' public IPv4 addresses are blocked too; names and private ones (already blocked) add nothing', () => {
  assert.deepEqual(masterBlocks(['198.51.100.7:7070', '10.0.0.2:7070', 'master.example:7070', '198.51.100.7:7071']), ['198.51.100.7/32']);
});

test('the forward chain keeps replies, refuses every blocked range and the masters, then returns to Docker; the input chain refuses the rest', () => {
  const r = egressRules(egressNames('n'), ['198.51.100.7/32']);
  assert.deepEqual(r.forward[0], ['-m', 'conntrack', '--ctstate', 'ESTABLISHED,RELATED', '-j', 'RETURN']);
  const refused = r.forward.filter((x) => x.includes('REJECT')).map((x) => x[1]);
  assert.deepEqual(refused, [...BLOCKED_V4, '198.51.100.7/32']);
  assert.deepEqual(r.forward.at(-1), ['-j', 'RETURN']);
  assert.deepEqual(r.input.at(-1), ['-j', 'REJECT', '--reject-with', 'icmp-port-unreachable']);
});

/** iptables as a set of chains, enough for -L -N -F -A -I -C -D -X. */
class FakeIptables implements IptablesRunner {
  readonly chains = new Map<string, string[]>([['DOCKER-USER', ['-j RETURN']], ['INPUT', []]]);
  failOn?: RegExp;
  async run(args: readonly string[]): Promise<{ code: number; stderr: string }> {
    const [op, chain, ...rest] = args as [string, string, ...string[]];
    if (this.failOn?.test(args.join(' '))) return { code: 4, stderr: 'iptables: Permission denied' };
    const c = this.chains.get(chain);
    const rule = (op === '-I' ? rest.slice(1) : rest).join(' ');
    switch (op) {
      case '-L': return c ? { code: 0, stderr: '' } : { code: 1, stderr: `iptables: No chain/target/match by that name.` };
      case '-N': this.chains.set(chain, []); return { code: 0, stderr: '' };
      case '-F': c!.length = 0; return { code: 0, stderr: '' };
      case '-X': this.chains.delete(chain); return { code: 0, stderr: '' };
      case '-A': c!.push(rule); return { code: 0, stderr: '' };
      case '-I': c!.splice(Number(rest[0]) - 1, 0, rule); return { code: 0, stderr: '' };
      case '-C': return { code: c?.includes(rule) ? 0 : 1, stderr: '' };
      case '-D': c!.splice(c!.indexOf(rule), 1); return { code: 0, stderr: '' };
      default: return { code: 2, stderr: `unknown ${op}` };
    }
  }
}

test('the firewall installs its chains and jumps first in DOCKER-USER and INPUT, idempotently, and removes them all', async () => {
  const ipt = new FakeIptables();
  const names = egressNames('hivemind-egress');
  const fw = new EgressFirewall(ipt, names, []);
  await fw.install();
  await fw.install();
  assert.deepEqual(ipt.chains.get('DOCKER-USER'), [`-i ${names.bridge} -j ${names.forwardChain}`, `-o ${names.bridge} -j ${names.accountingChain}`, `-i ${names.bridge} -j ${names.accountingChain}`, '-j RETURN']);
  assert.deepEqual(ipt.chains.get('INPUT'), [`-i ${names.bridge} -j ${names.inputChain}`]);
  assert.equal(ipt.chains.get(names.forwardChain)!.length, BLOCKED_V4.length + 2);
  // A rule gone (someone flushed the chain) is found by verify.
  ipt.chains.get(names.forwardChain)!.splice(3, 1);
  await assert.rejects(fw.verify(), (e: unknown) => e instanceof EgressUnavailableError && /is not in place/.test(e.message));
  await fw.track('10.213.0.2', true);
  await fw.track('10.213.0.2', false);
  assert.deepEqual(ipt.chains.get(names.accountingChain), ['-s 10.213.0.2/32 -j RETURN', '-d 10.213.0.2/32 -j RETURN']);
  await fw.untrack('10.213.0.2');
  assert.deepEqual(ipt.chains.get(names.accountingChain), []);
  await fw.remove();
  assert.deepEqual([...ipt.chains.keys()].sort(), ['DOCKER-USER', 'INPUT']);
  assert.deepEqual(ipt.chains.get('DOCKER-USER'), ['-j RETURN']);
});

test('counting a fresh task drops what an earlier holder of its address left, in four iptables runs when nothing was left', async () => {
  const ipt = new FakeIptables();
  const names = egressNames('hivemind-egress');
  const fw = new EgressFirewall(ipt, names, []);
  await fw.install();
  // Two stale copies of the received rule (a worker killed between adding and removing).
  ipt.chains.get(names.accountingChain)!.push('-d 10.213.0.9/32 -j RETURN', '-d 10.213.0.9/32 -j RETURN');
  await fw.track('10.213.0.9', true);
  assert.deepEqual(ipt.chains.get(names.accountingChain), ['-s 10.213.0.9/32 -j RETURN', '-d 10.213.0.9/32 -j RETURN']);
  let runs = 0;
  const counted: IptablesRunner = { run: (args) => (runs++, ipt.run(args)) };
  await new EgressFirewall(counted, names, []).track('10.213.0.10', true);
  assert.equal(runs, 4, 'a check and an append per direction');
  // A direction that cannot be added fails the call: the runner then reports no bytes at all.
  ipt.failOn = /^-A \S+ -d 10\.213\.0\.11/;
  await assert.rejects(fw.track('10.213.0.11', true), /iptables -A .* -d 10\.213\.0\.11\/32 -j RETURN failed/);
});

test('the firewall says precisely why it cannot be installed', async () => {
  const noDocker = new FakeIptables();
  noDocker.chains.delete('DOCKER-USER');
  await assert.rejects(new EgressFirewall(noDocker, egressNames('n'), []).install(), /egress cannot be offered: the DOCKER-USER chain is missing.*"iptables": true/);
  const denied = new FakeIptables();
  denied.failOn = /^-N /;
  await assert.rejects(new EgressFirewall(denied, egressNames('n'), []).install(), /iptables -N HM-EGRESS-[0-9a-f]{8} failed \(exit 4\): iptables: Permission denied/);
});

const node = (nodeId: string, allowsEgress: boolean): SchedulableNode => ({ nodeId, label: nodeId, accepting: true, allowsEgress, free: { cpus: 4, memoryBytes: 2 ** 33, gpus: 0, taskSlots: 4 } });
const task = (id: string, egress: boolean): QueuedTask => ({ id, excludedNodes: [], demand: { cpus: 1, memoryBytes: 0, gpus: 0, ...(egress ? { egress: true } : {}) } });

test('an egress task goes only to a node that allows egress; without one it waits, saying why', () => {
  const p = placeTasks([task('e', true), task('n', false)], [node('a', false), node('b', true)]);
  assert.deepEqual(p.assignments.find((x) => x.taskId === 'e'), { taskId: 'e', nodeId: 'b' });
  const none = whyUnplaced(task('e', true), [node('a', false)]);
  assert.deepEqual(none, { code: 'no_egress', reason: 'no accepting node allows egress (start a node with --allow-egress)' });
  assert.equal(whyUnplaced(task('n', false), [node('a', false)]), undefined);
});

test('an egress task does not share a demand class with a task without network', () => {
  assert.notEqual(classKey({ demand: task('x', true).demand, excludedNodes: [] }), classKey({ demand: task('x', false).demand, excludedNodes: [] }));
});

const spec = (p: Partial<TaskSpec> = {}): TaskSpec => ({ image: 'hivemind/busybox:1', command: [], env: new Map(), limits: undefined, maxOutputBytes: 0, data: [], network: TaskNetwork.TASK_NETWORK_EGRESS, ...p });

test('the spec: an unknown network value and an egress replica are refused', () => {
  checkTaskSpec(spec());
  recordHostile('egress: a spec with an unknown network value', (() => { try { checkTaskSpec(spec({ network: 7 as TaskNetwork })); return true; } catch { return false; } })());
  assert.throws(() => checkTaskSpec(spec({ network: 7 as TaskNetwork })), (e: unknown) => e instanceof InvalidTaskError && /spec\.network "?7"? is unknown/.test(e.message));
  assert.throws(() => checkTaskSpec(spec({ service: { service: 's', replica: 0, port: 8080, healthPath: '', graceMs: 0 } })), /a service replica cannot ask for the egress network/);
});

test('the container: an egress task joins the egress network with its resolvers and no IPv6; elsewhere it is refused', () => {
  const exec: TaskExecution = { taskId: 't-1', attempt: 1, spec: spec(), gpuIndexes: [], signal: new AbortController().signal, onPhase: () => {}, onPullProgress: () => {}, onLog: () => {} };
  const c = buildContainerConfig(exec, 'n', undefined, { network: 'hivemind-egress', dns: ['1.1.1.1'] });
  assert.equal(c.NetworkDisabled, false);
  assert.equal(c.HostConfig.NetworkMode, 'hivemind-egress');
  assert.deepEqual(c.HostConfig.Dns, ['1.1.1.1']);
  assert.deepEqual(c.HostConfig.Sysctls, { 'net.ipv6.conf.all.disable_ipv6': '1' });
  assert.deepEqual(c.HostConfig.CapDrop, ['ALL']);
  assert.throws(() => buildContainerConfig(exec, 'n'), /asks for the egress network, which this node does not offer/);
  const plain = buildContainerConfig({ ...exec, spec: spec({ network: TaskNetwork.TASK_NETWORK_UNSPECIFIED }) }, 'n', undefined, { network: 'hivemind-egress', dns: ['1.1.1.1'] });
  assert.equal(plain.HostConfig.NetworkMode, 'none');
  assert.equal(plain.NetworkDisabled, true);
  assert.equal(plain.HostConfig.Dns, undefined);
});

test('--network: none or egress', () => {
  assert.equal(parseNetworkFlag(undefined), TaskNetwork.TASK_NETWORK_UNSPECIFIED);
  assert.equal(parseNetworkFlag('none'), TaskNetwork.TASK_NETWORK_UNSPECIFIED);
  assert.equal(parseNetworkFlag('egress'), TaskNetwork.TASK_NETWORK_EGRESS);
  assert.throws(() => parseNetworkFlag('host'), /--network "host" is not none or egress/);
});

test('byte counts are read per address from iptables -L -n -v -x', () => {
  const listing = [
    'Chain HM-EGRESS-AC-0a1b2c3d (2 references)',
    '    pkts      bytes target     prot opt in     out     source               destination',
    '      12     1804 RETURN     0    --  *      *       10.213.0.2           0.0.0.0/0',
    '      10     2960 RETURN     0    --  *      *       0.0.0.0/0            10.213.0.2',
    '       3      180 RETURN     0    --  *      *       10.213.0.3           0.0.0.0/0',
  ].join('\n');
  assert.deepEqual(parseAccounting(listing, '10.213.0.2'), { rxBytes: 2960, txBytes: 1804 });
  assert.deepEqual(parseAccounting(listing, '10.213.0.4'), { rxBytes: 0, txBytes: 0 });
});

test('--egress-rate: units and bounds', () => {
  assert.equal(parseRate('10mbit'), 10_000_000);
  assert.equal(parseRate('512kbit'), 512_000);
  assert.equal(parseRate('1.5gbit'), 1_500_000_000);
  assert.equal(parseRate('2000000'), 2_000_000);
  assert.throws(() => parseRate('10MB/s'), /--egress-rate "10MB\/s" must be a rate from 8kbit to 100gbit, such as 10mbit/);
  assert.throws(() => parseRate('1bit'), ConfigError);
});

test('the cap: a token bucket on the host end of the veth (downloads) and on the container\'s eth0 through its namespace (uploads)', async () => {
  assert.deepEqual(rateCommands('veth1', 4242, 4_000_000), [
    { file: 'tc', args: ['qdisc', 'replace', 'dev', 'veth1', 'root', 'tbf', 'rate', '4000000bit', 'burst', '32768', 'latency', '50ms'] },
    { file: 'nsenter', args: ['-t', '4242', '-n', 'tc', 'qdisc', 'replace', 'dev', 'eth0', 'root', 'tbf', 'rate', '4000000bit', 'burst', '32768', 'latency', '50ms'] },
  ]);
  // A fast cap holds 20 ms at its rate.
  assert.equal(tbfArgs('v', 1e9)[9], String(Math.ceil(1e9 / 8 / 50)));
  const ran: string[] = [];
  const shaper = new EgressShaper(4_000_000, async (file, args) => (ran.push(`${file} ${args.join(' ')}`), file === 'nsenter' ? { code: 2, stderr: 'Error: Specified qdisc kind is unknown.' } : { code: 0, stderr: '' }), async () => 'veth9');
  await assert.rejects(shaper.apply(7), (e: unknown) => e instanceof EgressUnavailableError && /nsenter -t 7 -n tc qdisc replace dev eth0 .* failed \(exit 2\): Error: Specified qdisc kind is unknown\./.test(e.message));
  assert.equal(ran.length, 2);
});

test('a task\'s own egress rate: the lower of the node\'s and the task\'s holds; neither set, nothing is run', async () => {
  assert.equal(effectiveRate(4_000_000, undefined), 4_000_000);
  assert.equal(effectiveRate(4_000_000, 0), 4_000_000);
  assert.equal(effectiveRate(4_000_000, 2_000_000), 2_000_000);
  assert.equal(effectiveRate(4_000_000, 100_000_000), 4_000_000, 'a task cannot lift the node\'s cap');
  assert.equal(effectiveRate(undefined, 2_000_000), 2_000_000);
  assert.equal(effectiveRate(undefined, undefined), undefined);
  const ran: string[] = [];
  const run = async (file: string, args: readonly string[]) => (ran.push(`${file} ${args.join(' ')}`), { code: 0, stderr: '' });
  assert.equal(await new EgressShaper(undefined, run, async () => 'veth3').apply(7), undefined);
  assert.deepEqual(ran, [], 'no cap, no tc');
  assert.deepEqual(await new EgressShaper(undefined, run, async () => 'veth3').apply(7, 2_000_000), { dev: 'veth3', bps: 2_000_000 });
  assert.match(ran[0]!, /^tc qdisc replace dev veth3 root tbf rate 2000000bit /);
});

test('spec rules and the CLI flag: --egress-rate needs --network egress and a rate from 8kbit to 100gbit', () => {
  const spec = (over: Partial<TaskSpec>): TaskSpec => ({ image: 'busybox', command: ['true'], env: new Map(), limits: undefined, maxOutputBytes: 0, data: [], service: undefined, network: TaskNetwork.TASK_NETWORK_EGRESS, ...over });
  checkTaskSpec(spec({ egressRateBps: 2_000_000 }));
  checkTaskSpec(spec({ egressRateBps: 0 }));
  assert.throws(() => checkTaskSpec(spec({ network: TaskNetwork.TASK_NETWORK_UNSPECIFIED, egressRateBps: 2_000_000 })), /spec\.egress_rate_bps caps the egress network: it needs spec\.network egress/);
  assert.throws(() => checkTaskSpec(spec({ egressRateBps: 10 })), /spec\.egress_rate_bps 10 must be from 8000 \(8kbit\) to 100000000000 \(100gbit\) bits per second/);
  assert.throws(() => checkTaskSpec(spec({ egressRateBps: 2e11 })), /must be from 8000/);
  assert.equal(buildSpec('busybox', ['true'], { network: 'egress', egressRate: '10mbit' }).egressRateBps, 10_000_000);
  assert.equal('egressRateBps' in buildSpec('busybox', ['true'], { network: 'egress' }), false, 'no flag, no field');
  assert.throws(() => buildSpec('busybox', ['true'], { network: 'egress', egressRate: 'fast' }), /--egress-rate "fast" must be a rate from 8kbit to 100gbit/);
});
