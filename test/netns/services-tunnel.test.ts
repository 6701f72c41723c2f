// Services end to end in tunnel mode (issue 19), every host a network namespace on one bridge: a
// master `m`, two workers `a` and `b` enrolled through WireGuard, and a LAN host `l` with a small
// TCP server. A service's replica runs on a or b; the master's gateway (on m's loopback) reaches it
// over the tunnel through the node's gateway pipe, streaming. The pipe listens on the worker's
// tunnel address only and takes the master alone; the replica's container reaches nothing outside
// itself; a worker killed for good has its replica rescheduled on the other node; `service rm
// --wait` leaves no container behind.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { requireDockerImage, requireNetns, requireWireGuard } from '../helpers/requirements.js';
import { NetLab } from '../helpers/netns.js';
import { waitFor } from '../helpers/cli-process.js';
import { runInNs, startInNs, stopInNs, type NsProc } from '../helpers/netns-cli.js';
import { recordHostile, recordScenario } from '../helpers/fault-ledger.js';
import { LABEL_MANAGED, LABEL_NODE_ID } from '../../src/runtime/labels.js';

const IMAGE = 'hivemind/svc-test:1';
/** The worker's default gateway pipe port (worker start --gateway-port). */
const PIPE_PORT = 7947;
/** The master's default gateway address, inside m's namespace. */
const GATEWAY = 'http://127.0.0.1:8088';
const LAN_PORT = 8080;
/** The master's tunnel address in the default 10.8.0.0/24. */
const MASTER_TUNNEL_IP = '10.8.0.1';

interface Fetched {
  status: number;
  body: string;
  /** ms from the request to the first and the last body chunk. */
  first: number;
  last: number;
  chunks: number;
}

interface ReplicaJson {
  index: number;
  taskId: string;
  attempt: number;
  nodeId: string;
  state: string;
  healthy: boolean;
}

// Run inside a namespace with `node -e`: a GET with an optional Bearer token and timeout, timing each body chunk.
const FETCH = `
const t0 = Date.now();
const [url, token, timeoutMs] = process.argv.slice(1);
fetch(url, { headers: token ? { authorization: 'Bearer ' + token } : {}, signal: AbortSignal.timeout(Number(timeoutMs || 20000)) }).then(async (r) => {
  let body = '', first = 0, last = 0, chunks = 0;
  const dec = new TextDecoder();
  for await (const c of r.body) { const now = Date.now() - t0; if (!chunks) first = now; last = now; chunks++; body += dec.decode(c, { stream: true }); }
  console.log(JSON.stringify({ status: r.status, body, first, last, chunks }));
}, (e) => console.log(JSON.stringify({ status: 0, body: String((e.cause && e.cause.code) || e.message), first: 0, last: 0, chunks: 0 })));`;

// A TCP connect that optionally writes a line, then reports what came back: OPEN <bytes received>
// when the peer closed (or 4 s passed: TIMEOUT), else the connect error's code.
const CONNECT = `
const [host, port, line] = process.argv.slice(1);
const s = require('net').connect(Number(port), host);
let got = 0, open = false;
s.setTimeout(4000, () => { console.log('TIMEOUT ' + got); process.exit(0); });
s.on('connect', () => { open = true; if (line) s.write(line); else s.end(); });
s.on('data', (d) => (got += d.length));
s.on('error', (e) => { if (!open) { console.log(e.code); process.exit(0); } });
s.on('close', () => { console.log('OPEN ' + got); process.exit(0); });`;

// The LAN host's server: answers anything with a line, so that a connect that got through is plain.
const LAN_SERVER = `require('net').createServer((s) => s.end('lan server\\n')).listen(${LAN_PORT}, process.argv[1], () => console.log('listening'));`;

test('a service through the tunnel: gateway → pipe → replica, streaming; pipe on the tunnel only; isolated container; replica rescheduled off a lost node', async (t) => {
  if (!requireNetns(t) || !requireWireGuard(t) || !requireDockerImage(t, IMAGE)) return;
  const lab = NetLab.create(['m', 'a', 'b', 'l']);
  const home = mkdtempSync(join(tmpdir(), 'hm-svc-tunnel-'));
  const procs: NsProc[] = [];
  const nodeIds: string[] = [];
  const id = lab.id;
  try {
    const m = lab.host('m');
    const l = lab.host('l');
    const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: home, HIVEMIND_HOME: home };
    const node = (host: string, script: string, args: string[]): string => lab.exec(host, [process.execPath, '-e', script, ...args]).trim();
    const connect = (host: string, to: string, port: number, line = ''): string => node(host, CONNECT, [to, String(port), line]);

    const lan = lab.spawn('l', process.execPath, ['-e', LAN_SERVER, l.ip]);
    procs.push({ child: lan, output: '' });
    await waitFor('the LAN server', () => (connect('l', l.ip, LAN_PORT) === 'OPEN 11' ? true : undefined), 10_000, 200);

    // Reports every second and a 5 s node timeout: the lost node's replica moves within seconds.
    const master = startInNs(lab, 'm', ['master', 'start', '--data-dir', join(home, 'master'), '--report-interval', '1s', '--node-timeout', '10s', '--wg-endpoint', `${m.ip}:51820`, '--wg-interface', `hm${id}m`, '--enroll-listen', `${m.ip}:7443`], env);
    procs.push(master);
    await waitFor('the master', () => /tunnel mode/.test(master.output) || (master.child.exitCode !== null ? (() => { throw new Error(master.output); })() : undefined), 30_000);
    const admin = { ...env, HIVEMIND_MASTER: '127.0.0.1:7070', HIVEMIND_ADMIN_TOKEN: readFileSync(join(home, 'master', 'admin.token'), 'utf8').trim() };
    const cli = async (args: string[]): Promise<string> => {
      const r = await runInNs(lab, 'm', args, admin);
      assert.equal(r.code, 0, `${args.join(' ')}: ${r.out}`);
      return r.out;
    };
    const serviceGet = async (): Promise<{ replicaList: ReplicaJson[] }> => JSON.parse(await cli(['service', 'get', 'web', '--json'])) as { replicaList: ReplicaJson[] };
    const gateway = (path: string, token: string, timeoutMs = 20_000): Fetched => JSON.parse(node('m', FETCH, [`${GATEWAY}/s/web${path}`, token, String(timeoutMs)])) as Fetched;
    const closedCount = (token: string): number => (JSON.parse(gateway('/closed', token).body) as { closed: number }).closed;

    // 1. Two workers enroll and come online through the tunnel.
    const joinToken = (await cli(['token', 'create', '--uses', '2'])).trim();
    const workers = new Map<string, NsProc>();
    for (const h of ['a', 'b']) {
      const w = startInNs(lab, h, ['worker', 'start', '--token', joinToken, '--data-dir', join(home, h), '--wg-interface', `hm${id}${h}`, '--report-interval', '1s'], env);
      procs.push(w);
      workers.set(h, w);
    }
    await waitFor('two nodes online', async () => {
      for (const w of workers.values()) if (w.child.exitCode !== null) throw new Error(`worker exited: ${w.output}`);
      const nodes = JSON.parse((await runInNs(lab, 'm', ['nodes', '--json'], admin)).out || '[]') as { online: boolean }[];
      return nodes.filter((n) => n.online).length === 2 || undefined;
    }, 60_000, 500);
    const hostOf = new Map<string, string>();
    const tunnelIp = new Map<string, string>();
    for (const h of ['a', 'b']) {
      const nodeId = (JSON.parse(readFileSync(join(home, h, 'identity.json'), 'utf8')) as { nodeId: string }).nodeId;
      nodeIds.push(nodeId);
      hostOf.set(nodeId, h);
      t.diagnostic(`worker ${h}: node ${nodeId}`);
      tunnelIp.set(h, (JSON.parse(readFileSync(join(home, h, 'tunnel.json'), 'utf8')) as { config: { address: string } }).config.address.split('/')[0]!);
    }

    await cli(['service', 'create', 'web', '--image', IMAGE, '--port', '8000', '--health', '/health', '--cpus', '0.2', '--memory', '128m']);
    const first = await waitFor('the replica healthy', async () => (await serviceGet()).replicaList.find((r) => r.index === 0 && r.healthy), 90_000, 500);
    const holder = hostOf.get(first.nodeId)!;
    const other = holder === 'a' ? 'b' : 'a';
    assert.ok(holder, `the replica runs on one of the two workers: ${first.nodeId}`);
    const token = (JSON.parse(await cli(['service', 'token', 'create', 'web', '--json'])) as { token: string }).token;

    const hello = gateway('/hello', token);
    assert.equal(hello.status, 200, hello.body);
    assert.equal((JSON.parse(hello.body) as { url: string }).url, '/hello', 'the gateway strips /s/web');
    const anonymous = gateway('/hello', '');
    assert.equal(anonymous.status, 401, `no token, no service: ${anonymous.status} ${anonymous.body}`);
    // Ten events 300 ms apart: the first must arrive long before the last, not all at the end.
    const sse = gateway('/sse?n=10&ms=300', token);
    assert.equal(sse.status, 200, sse.body);
    assert.match(sse.body, /^data: token 0\n\n[^]*data: token 9\n\n$/);
    assert.ok(sse.chunks >= 3 && sse.last - sse.first >= 1500, `the events arrive as they are sent: first byte at ${sse.first} ms, last at ${sse.last} ms, ${sse.chunks} chunks`);

    // 2. The gateway pipe listens on the worker's tunnel address only, and answers the master alone.
    const holderIp = lab.host(holder).ip;
    const fromLan = connect('l', holderIp, PIPE_PORT);
    const fromMasterBridge = connect('m', holderIp, PIPE_PORT);
    recordHostile('gateway pipe: reached on the worker\'s bridge address from the LAN and from the master\'s bridge side', [fromLan, fromMasterBridge].filter((r) => r.startsWith('OPEN')).length, 2);
    assert.equal(fromLan, 'ECONNREFUSED', 'from the LAN host');
    assert.equal(fromMasterBridge, 'ECONNREFUSED', 'from the master host, on the bridge');
    // The gateway itself is on m's loopback: not on m's bridge address.
    assert.equal(connect('l', m.ip, 8088), 'ECONNREFUSED', 'the gateway is not on the bridge');
    // The other worker, through the tunnel, with a well-formed hello for the running replica: closed unanswered.
    const helloLine = `HIVEMIND-PIPE/1 ${'ab'.repeat(32)} ${first.taskId} ${first.attempt}\n`;
    const fromPeer = connect(other, tunnelIp.get(holder)!, PIPE_PORT, helloLine);
    recordHostile('gateway pipe: a hello from another worker\'s tunnel address', fromPeer !== 'OPEN 0');
    assert.equal(fromPeer, 'OPEN 0', `the connection from ${other}'s tunnel address is closed without a byte`);
    await waitFor('the refusal logged', () => /gateway pipe: closed a connection that is not the master/.test(workers.get(holder)!.output) || undefined, 5_000, 100);
    assert.match(workers.get(holder)!.output, new RegExp(`"why":"source","remote":"${tunnelIp.get(other)!.replace(/\./g, '\\.')}"`));

    // 3. Isolation: the container reaches its own port, and nothing else. Each target is shown
    // reachable from the worker's host first, so that "unreachable" means the container's doing.
    assert.deepEqual(JSON.parse(gateway('/probe?host=127.0.0.1&port=8000', token).body), { reachable: true, error: '' }, 'the probe works');
    const targets: [string, string, number][] = [
      ['the LAN host\'s server', l.ip, LAN_PORT],
      ['the master\'s enrollment port on its bridge address', m.ip, 7443],
      ['the master\'s node service on its tunnel address', MASTER_TUNNEL_IP, 7070],
      ['the worker host\'s gateway pipe on its tunnel address', tunnelIp.get(holder)!, PIPE_PORT],
    ];
    // (connected either way: the peer closed after our FIN, or kept the connection open)
    for (const [what, host, port] of targets) assert.match(connect(holder, host, port), /^(OPEN|TIMEOUT) /, `${what} is reachable from the worker's host`);
    // plus the host's bridge address, where nothing listens: refused there, unreachable from inside
    targets.push(['the worker host\'s bridge address', holderIp, PIPE_PORT]);
    const probes = targets.map(([what, host, port]) => ({ what, answer: JSON.parse(gateway(`/probe?host=${host}&port=${port}`, token).body) as { reachable: boolean; error: string } }));
    recordHostile('service isolation: a replica container reaching the LAN, the master or its own host', probes.filter((p) => p.answer.reachable).length, probes.length);
    for (const p of probes) assert.equal(p.answer.reachable, false, `the container reached ${p.what}: ${JSON.stringify(p.answer)}`);

    // 3b. kill -9 of the holder's worker, restarted at once (well within the node timeout): its
    // tunnel and pipe come back, the replica is reattached (the same process answers, its boot id
    // unchanged) and the gateway routes to it again.
    const bootBefore = (JSON.parse(gateway('/hello', token).body) as { boot: string }).boot;
    const killed = workers.get(holder)!;
    killed.child.kill('SIGKILL');
    if (killed.child.exitCode === null && killed.child.signalCode === null) await new Promise((r) => killed.child.once('exit', r));
    const restarted = startInNs(lab, holder, ['worker', 'start', '--data-dir', join(home, holder), '--wg-interface', `hm${id}${holder}`, '--report-interval', '1s'], env);
    procs.push(restarted);
    workers.set(holder, restarted);
    const bootAfter = await waitFor('the gateway routing through the restarted worker', () => {
      if (restarted.child.exitCode !== null) throw new Error(`the restarted worker exited: ${restarted.output}`);
      const f = gateway('/hello', token, 3000);
      return f.status === 200 ? (JSON.parse(f.body) as { boot: string }).boot : undefined;
    }, 60_000, 500);
    const afterRestart = (await serviceGet()).replicaList.filter((r) => r.index === 0);
    const kept = bootAfter === bootBefore && afterRestart.length === 1 && afterRestart[0]!.attempt === first.attempt;
    recordScenario({ name: 'service: worker kill -9 through the tunnel, replica reattached', faults: 1, submitted: 1, delivered: kept ? 1 : 0, lost: kept ? 0 : 1, duplicated: afterRestart.length > 1 || containersOf(first.nodeId).length > 1 ? 1 : 0 });
    assert.equal(bootAfter, bootBefore, `the same replica process answers after the worker's restart\n${restarted.output.slice(-4000)}`);
    assert.deepEqual(afterRestart.map((r) => `${r.nodeId}#${r.attempt}`), [`${first.nodeId}#${first.attempt}`], 'the same attempt on the same node, not requeued');
    assert.equal(containersOf(first.nodeId).length, 1, 'one container, not two');

    // 4. The holder's worker is killed for good: after the node timeout the replica runs on the
    // other node, healthy, and the gateway routes there.
    // Every replica's container is named hivemind-task (nothing of its host shows): mark this one
    // instead. A client giving up on /slow is counted by the replica (its /closed) once the
    // gateway has cut the pipe: the new replica's count starts at 0.
    assert.equal(gateway('/slow', token, 1000).status, 0, 'the client gave up on /slow');
    await waitFor('the replica to see the client gone', () => closedCount(token) === 1 || undefined, 10_000, 250);
    workers.get(holder)!.child.kill('SIGKILL');
    const lost = first.nodeId;
    const moved = await waitFor('the replica rescheduled on the other node', async () => {
      const r = (await serviceGet()).replicaList.find((x) => x.index === 0);
      return r && r.nodeId !== lost && r.healthy ? r : undefined;
    }, 90_000, 500);
    // The lost replica's container still runs in the shared Docker (its pipe died with its worker):
    // the answer must come from the new one, whose /closed count is its own.
    const closedAfter = await waitFor('the gateway routing to the new replica', () => {
      const f = gateway('/closed', token);
      return f.status === 200 ? (JSON.parse(f.body) as { closed: number }).closed : undefined;
    }, 20_000, 250);
    const zeros = (await serviceGet()).replicaList.filter((r) => r.index === 0);
    const rescheduled = closedAfter === 0 && hostOf.get(moved.nodeId) === other;
    recordScenario({ name: 'service: node lost, replica rescheduled', faults: 1, submitted: 1, delivered: rescheduled ? 1 : 0, lost: rescheduled ? 0 : 1, duplicated: zeros.length > 1 ? 1 : 0 });
    assert.equal(hostOf.get(moved.nodeId), other, 'the replica runs on the other worker');
    assert.equal(moved.taskId, first.taskId, 'the same replica task, requeued');
    assert.ok(moved.attempt > first.attempt, `a new attempt: ${first.attempt} → ${moved.attempt}`);
    assert.equal(closedAfter, 0, 'the gateway\'s answer came from the new container');
    assert.deepEqual(zeros.map((r) => `${r.nodeId}#${r.attempt}`), [`${moved.nodeId}#${moved.attempt}`], `exactly one replica 0, on the other node: ${JSON.stringify(zeros)}`);

    // 5. Removed with --wait: no replica container left on the surviving node.
    assert.equal(containersOf(moved.nodeId).length, 1, 'the replica\'s container, before');
    await cli(['service', 'rm', 'web', '--wait']);
    assert.deepEqual(containersOf(moved.nodeId), [], 'no replica container left');
  } finally {
    for (const p of procs.reverse()) await stopInNs(p);
    // The killed worker's container runs on in the shared Docker: remove what these nodes made.
    for (const n of nodeIds) removeNodeLeftovers(n);
    lab.destroy();
    rmSync(home, { recursive: true, force: true });
  }
});

function docker(args: string[]): string[] {
  return execFileSync('docker', args, { stdio: ['ignore', 'pipe', 'pipe'] }).toString().split('\n').filter(Boolean);
}

function containersOf(nodeId: string): string[] {
  return docker(['ps', '-aq', '--filter', `label=${LABEL_MANAGED}=true`, '--filter', `label=${LABEL_NODE_ID}=${nodeId}`]);
}

function removeNodeLeftovers(nodeId: string): void {
  try {
    const cs = containersOf(nodeId);
    if (cs.length > 0) docker(['rm', '-f', ...cs]);
    const vs = docker(['volume', 'ls', '-q', '--filter', `label=${LABEL_MANAGED}=true`, '--filter', `label=${LABEL_NODE_ID}=${nodeId}`]);
    if (vs.length > 0) docker(['volume', 'rm', '-f', ...vs]);
  } catch {
    // Docker gone: nothing to remove
  }
}
