// Services benchmark (issue 19: service replicas behind the master's HTTP gateway). Measures, in one
// run on this machine, the gateway against the floor measured in the same run, and prints ratios:
//   1. loopback: N sequential GET /hello through the gateway (with a service token) vs N straight to
//      an identical container run by plain `docker run -p 127.0.0.1::8000` (interleaved): added p50/p99;
//      also the floor on a new connection per request (the gateway opens one per request to the node)
//   2. wireguard-go tunnel (master in namespace m, worker in a): the same from inside m, vs a direct
//      request from m to the same server.js run with node in a, on a's tunnel address
//   3. a 1 GiB streamed response (/bytes) through gateway and tunnel vs iperf3 -R through the same
//      tunnel (and vs the direct server of section 2): MiB/s and ratio
//   4. loopback: CONNS concurrent streaming connections held through the gateway: master and worker
//      RSS before and while holding them (VmRSS): KiB per connection
// Master and worker run as separate `hivemind` processes. Needs root, Docker, wireguard-go, iperf3,
// and the hivemind/svc-test:1 image (bash scripts/svc-test-image.sh). Usage: npm run bench:services
// Knobs: BENCH_N (500), BENCH_BYTES_MIB (1024), BENCH_CONNS (999: the gateway caps one service at
// 1000 requests in flight), BENCH_SECTIONS (default "1,2,3,4").
import { execFile, type ChildProcess } from 'node:child_process';
import { copyFileSync, readFileSync, readdirSync, mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { NetLab } from '../test/helpers/netns.js';
import { runInNs, startInNs, stopInNs, type NsProc } from '../test/helpers/netns-cli.js';
import { waitFor } from '../test/helpers/cli-process.js';
import { ProcessCluster } from '../test/helpers/process-cluster.js';
import { median, pool } from './bench-helpers.js';

const run = promisify(execFile);
const N = Number(process.env.BENCH_N ?? 500);
const BYTES_MIB = Number(process.env.BENCH_BYTES_MIB ?? 1024);
const CONNS = Number(process.env.BENCH_CONNS ?? 999);
const SECTIONS = new Set((process.env.BENCH_SECTIONS ?? '1,2,3,4').split(',').map((x) => x.trim()));
const SVC_IMAGE = 'hivemind/svc-test:1';
const SERVICE = 'bench';
/** The replica's limits, and the raw container's: the same box for both. */
const LIMITS = { cpus: '1', memory: '256m', pids: '64' };
const THIS_FILE = fileURLToPath(import.meta.url);
const SERVER_JS = join(dirname(THIS_FILE), '..', '..', 'test', 'images', 'svc-test', 'server.js');
const BENCH_LABEL = 'io.hivemind.bench=services';
const WARMUP = 20;
const MIB = 2 ** 20;

type Say = (s: string) => void;

// ---- the HTTP client (also run inside namespace m as `bench-services.js --client JOB`) ----

interface Target {
  url: string;
  token?: string;
  /** A new TCP connection for each request (default: one keep-alive connection, as a client of a service holds). */
  fresh?: boolean;
}

function getter(t: Target): { get(): Promise<{ ms: number; bytes: number }>; close(): void } {
  const agent = new http.Agent({ keepAlive: !t.fresh, maxSockets: 1 });
  const headers = t.token ? { authorization: `Bearer ${t.token}` } : {};
  return {
    get: () =>
      new Promise((resolve, reject) => {
        const t0 = performance.now();
        const req = http.get(t.url, { agent, headers }, (res) => {
          let bytes = 0;
          res.on('data', (d: Buffer) => (bytes += d.length));
          res.on('end', () => {
            if (res.statusCode !== 200) reject(new Error(`GET ${t.url}: HTTP ${res.statusCode}`));
            else resolve({ ms: performance.now() - t0, bytes });
          });
          res.on('error', reject);
        });
        req.on('error', reject);
      }),
    close: () => agent.destroy(),
  };
}

/** N sequential GETs to each target, interleaved (a, b, c, a, b, c...) so drift hits all alike; after a warm-up. */
async function interleavedLatency(targets: Target[], n: number): Promise<number[][]> {
  const gs = targets.map(getter);
  try {
    for (let i = 0; i < WARMUP; i++) for (const g of gs) await g.get();
    const out: number[][] = targets.map(() => []);
    for (let i = 0; i < n; i++) for (let k = 0; k < gs.length; k++) out[k]!.push((await gs[k]!.get()).ms);
    return out;
  } finally {
    for (const g of gs) g.close();
  }
}

async function download(t: Target): Promise<{ ms: number; bytes: number }> {
  const g = getter(t);
  try {
    return await g.get();
  } finally {
    g.close();
  }
}

type ClientJob = { op: 'latency'; targets: Target[]; n: number } | { op: 'download'; target: Target };

async function clientMain(job: ClientJob): Promise<void> {
  const out = job.op === 'latency' ? await interleavedLatency(job.targets, job.n) : await download(job.target);
  process.stdout.write(JSON.stringify(out) + '\n');
}

/** Runs a client job inside a namespace of the lab (this script, in client mode) and returns its answer. */
function clientInNs<T>(lab: NetLab, host: string, job: ClientJob): Promise<T> {
  return new Promise((resolve, reject) => {
    const child = lab.spawn(host, process.execPath, [THIS_FILE, '--client', JSON.stringify(job)]);
    let out = '';
    let err = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    child.on('close', (code) => {
      if (code !== 0) return reject(new Error(`client in ${host} exited ${code}: ${err}`));
      resolve(JSON.parse(out.trim().split('\n').pop()!) as T);
    });
  });
}

// ---- figures ----

/** The q-quantile by nearest rank. */
const quantile = (xs: number[], q: number) => [...xs].sort((a, b) => a - b)[Math.max(0, Math.ceil(q * xs.length) - 1)]!;
const ms2 = (x: number) => `${x.toFixed(2)} ms`;

/** `fresh`: the floor with a new connection per request, what the gateway pays per request on its side. */
function sayLatency(say: Say, floorName: string, floor: number[], gw: number[], fresh: number[]): void {
  const f50 = quantile(floor, 0.5);
  const f99 = quantile(floor, 0.99);
  const g50 = quantile(gw, 0.5);
  const g99 = quantile(gw, 0.99);
  say(`${floorName}: p50 ${ms2(f50)}, p99 ${ms2(f99)}`);
  say(`  the same, a new connection per request: p50 ${ms2(quantile(fresh, 0.5))}, p99 ${ms2(quantile(fresh, 0.99))}`);
  say(`through the gateway: p50 ${ms2(g50)}, p99 ${ms2(g99)}`);
  say(`added: p50 +${ms2(g50 - f50)}, p99 +${ms2(g99 - f99)}; ratio p50 ${(g50 / f50).toFixed(2)}x, p99 ${(g99 / f99).toFixed(2)}x`);
}

function vmRss(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(m[1]);
}

/** The median of a few reads a second apart, in KiB: one read catches a GC mid-way. */
async function rssKiB(pid: number, reads = 5): Promise<number> {
  const xs: number[] = [];
  for (let i = 0; i < reads; i++) {
    xs.push(vmRss(pid));
    await new Promise((r) => setTimeout(r, 1000));
  }
  return median(xs);
}

/** The worker's netns connector child (one per replica container), found by its parent and its script. */
function connectorPid(workerPid: number): number | undefined {
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      const ppid = Number(stat.split(') ')[1]!.split(' ')[1]);
      if (ppid === workerPid && readFileSync(`/proc/${d}/cmdline`, 'utf8').includes('netns-connector')) return Number(d);
    } catch {
      // the process ended while we looked
    }
  }
  return undefined;
}

/** Open descriptors of a process: a connection held should cost the worker two, the connector none. */
const fdCount = (pid: number) => readdirSync(`/proc/${pid}/fd`).length;

// ---- services and containers ----

type Cli = (args: string[]) => Promise<string>;

/** `service create` of the svc-test image and a token for it; returns the token. */
async function createService(cli: Cli): Promise<string> {
  await cli(['service', 'create', SERVICE, '--image', SVC_IMAGE, '--port', '8000', '--health', '/health', '--cpus', LIMITS.cpus, '--memory', LIMITS.memory, '--pids', LIMITS.pids]);
  // --json: the CLI in a namespace hands back stdout and stderr as one text.
  const out = await cli(['service', 'token', 'create', SERVICE, '--json']);
  const token = /"token":\s*"([^"]+)"/.exec(out)?.[1];
  if (!token) throw new Error(`service token create printed no token: ${out}`);
  return token;
}

/** Polls a URL until it answers 200 (the replica is placed, started and reachable). */
async function waitServing(what: string, check: () => Promise<boolean>): Promise<void> {
  let last = '';
  const attempt = async () => {
    try {
      return (await check()) || undefined;
    } catch (err) {
      last = String(err);
      return undefined;
    }
  };
  await waitFor(what, attempt, 60_000, 250).catch((err: unknown) => {
    throw new Error(`${String(err)}; last answer: ${last}`);
  });
}

const okLocal = (t: Target) => async () => (await download(t)).bytes > 0;

/** The floor of section 1: an identical container with its port published on loopback. */
async function rawContainer(name: string): Promise<string> {
  await run('docker', ['run', '-d', '--rm', '--name', name, '--label', BENCH_LABEL, '--cpus', LIMITS.cpus, '--memory', LIMITS.memory, '--memory-swap', LIMITS.memory, '--pids-limit', LIMITS.pids, '-p', '127.0.0.1::8000', SVC_IMAGE]);
  const port = (await run('docker', ['port', name, '8000/tcp'])).stdout.trim().split('\n')[0]!;
  return `http://${port}`;
}

// ---- sections ----

async function loopbackSections(say: Say): Promise<void> {
  const rawName = `hm-bench-svc-${process.pid}`;
  const cluster = await ProcessCluster.start({ maxTasks: 2 });
  const cli: Cli = async (args) => {
    const r = await cluster.cli(args);
    if (r.code !== 0) throw new Error(`hivemind ${args.join(' ')}: ${r.stderr}${r.stdout}`);
    return r.stdout;
  };
  try {
    const gwBase = await waitFor('the gateway URL', () => cluster.gatewayUrl());
    const token = await createService(cli);
    const gw = (path: string): Target => ({ url: `${gwBase}/s/${SERVICE}${path}`, token });
    const rawBase = await rawContainer(rawName);
    const raw = (path: string): Target => ({ url: `${rawBase}${path}` });
    await waitServing('the replica through the gateway', okLocal(gw('/hello')));
    await waitServing('the raw container', okLocal(raw('/hello')));

    if (SECTIONS.has('1')) {
      const [floor, through, fresh] = await interleavedLatency([raw('/hello'), gw('/hello'), { ...raw('/hello'), fresh: true }], N);
      say(`\n## 1. GET /hello over loopback, ${N} sequential requests each (interleaved, one keep-alive connection each)`);
      sayLatency(say, `raw container (docker run -p 127.0.0.1::8000)`, floor!, through!, fresh!);
    }
    if (SECTIONS.has('4')) await heldConnections(cluster, gw('/stream?n=100000&ms=1000'), say);
  } finally {
    await run('docker', ['rm', '-f', rawName]).catch(() => undefined);
    await cluster.cli(['service', 'rm', SERVICE, '--wait'], 60_000).catch(() => undefined);
    await cluster.close();
  }
}

async function heldConnections(cluster: ProcessCluster, target: Target, say: Say): Promise<void> {
  const masterPid = cluster.master.child.pid!;
  const workerPid = cluster.worker!.child.pid!;
  const connPid = connectorPid(workerPid);
  const before = { master: await rssKiB(masterPid), worker: await rssKiB(workerPid), connector: connPid ? await rssKiB(connPid) : 0 };
  const fdsBefore = { master: fdCount(masterPid), worker: fdCount(workerPid), connector: connPid ? fdCount(connPid) : 0 };
  const agent = new http.Agent({ keepAlive: false, maxSockets: Infinity });
  const held: http.ClientRequest[] = [];
  let ticks = 0;
  try {
    const t0 = performance.now();
    // 32 at a time: the worker's connector answers a bounded number of pending connects at once.
    await pool(CONNS, 32, () =>
      new Promise<void>((resolve, reject) => {
        const req = http.get(target.url, { agent, headers: { authorization: `Bearer ${target.token}` } }, (res) => {
          if (res.statusCode !== 200) return reject(new Error(`held connection ${held.length}: HTTP ${res.statusCode}`));
          // Headers are flushed at once; the first line comes a second later.
          res.on('data', () => (ticks += 1));
          resolve();
        });
        req.on('error', reject);
        held.push(req);
      }),
    );
    const openMs = performance.now() - t0;
    await new Promise((r) => setTimeout(r, 3000));
    const ticks0 = ticks;
    const r0 = performance.now();
    const fdsWith = { master: fdCount(masterPid), worker: fdCount(workerPid), connector: connPid ? fdCount(connPid) : 0 };
    const withConns = { master: await rssKiB(masterPid), worker: await rssKiB(workerPid), connector: connPid ? await rssKiB(connPid) : 0 };
    const readS = (performance.now() - r0) / 1000;
    const alive = held.filter((r) => !r.destroyed).length;
    say(`\n## 4. ${CONNS} concurrent streaming connections held through the gateway (GET /stream, a line a second each)`);
    say(`opened in ${(openMs / 1000).toFixed(1)} s (32 at a time); ${alive} still open; ${ticks - ticks0} lines received during the ${readS.toFixed(0)} s of RSS reads (${(ticks - ticks0) / readS / CONNS >= 0.9 ? 'every connection streaming' : 'FEWER than one a second per connection'})`);
    for (const k of ['master', 'worker', 'connector'] as const) {
      if (k === 'connector' && !connPid) continue;
      const per = (withConns[k] - before[k]) / CONNS;
      say(`${k} RSS: ${(before[k] / 1024).toFixed(1)} MiB before, ${(withConns[k] / 1024).toFixed(1)} MiB with them: ${per.toFixed(1)} KiB per connection; open descriptors ${fdsBefore[k]} -> ${fdsWith[k]}`);
    }
  } finally {
    for (const r of held) r.destroy();
    agent.destroy();
  }
}

async function tunnelSections(say: Say): Promise<void> {
  const lab = NetLab.create(['m', 'a']);
  const home = mkdtempSync(join(tmpdir(), 'hm-bench-svc-'));
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: home, HIVEMIND_HOME: home };
  const m = lab.host('m');
  const procs: NsProc[] = [];
  const children: ChildProcess[] = [];
  let admin: NodeJS.ProcessEnv | undefined;
  const cli = async (args: string[]) => {
    const r = await runInNs(lab, 'm', args, admin!);
    if (r.code !== 0) throw new Error(`hivemind ${args.join(' ')}: ${r.out}`);
    return r.out;
  };
  try {
    const master = startInNs(lab, 'm', ['master', 'start', '--data-dir', join(home, 'master'), '--wg-endpoint', `${m.ip}:51820`, '--wg-interface', `hb${lab.id}m`, '--enroll-listen', `${m.ip}:7443`, '--gateway-listen', '127.0.0.1:8088'], env);
    procs.push(master);
    await waitFor('the master in tunnel mode', () => {
      if (master.child.exitCode !== null) throw new Error(master.output);
      return /tunnel mode/.test(master.output) || undefined;
    }, 30_000);
    admin = { ...env, HIVEMIND_MASTER: '127.0.0.1:7070', HIVEMIND_ADMIN_TOKEN: readFileSync(join(home, 'master', 'admin.token'), 'utf8').trim() };
    const enrol = (await cli(['token', 'create'])).trim();
    const wgA = `hb${lab.id}a`;
    const worker = startInNs(lab, 'a', ['worker', 'start', '--token', enrol, '--data-dir', join(home, 'worker'), '--wg-interface', wgA, '--max-tasks', '2'], env);
    procs.push(worker);
    await waitFor('the worker connected over the tunnel', () => {
      if (worker.child.exitCode !== null) throw new Error(worker.output);
      return /-> connected/.test(worker.output) || undefined;
    }, 60_000);
    const aIp = /inet (\d+\.\d+\.\d+\.\d+)/.exec(lab.exec('a', ['ip', '-4', '-o', 'addr', 'show', 'dev', wgA]))?.[1];
    if (!aIp) throw new Error(`no tunnel address on ${wgA} in namespace a`);

    // Both answers are checked from inside m, where the client runs.
    const token = await createService(cli);
    const gw = (path: string): Target => ({ url: `http://127.0.0.1:8088/s/${SERVICE}${path}`, token });
    const direct = (path: string): Target => ({ url: `http://${aIp}:18000${path}` });
    // As .cjs: next to this repo's package.json ("type": "module") a .js file would be read as ESM.
    const serverCjs = join(home, 'server.cjs');
    copyFileSync(SERVER_JS, serverCjs);
    const server = lab.spawn('a', process.execPath, [serverCjs], { env: { PATH: process.env.PATH, PORT: '18000' } });
    children.push(server);
    const okInM = (t: Target) => async () => (await clientInNs<{ bytes: number }>(lab, 'm', { op: 'download', target: t })).bytes > 0;
    await waitServing('the replica through the gateway, from m', okInM(gw('/hello')));
    await waitServing('the direct server in a, from m', okInM(direct('/hello')));

    if (SECTIONS.has('2')) {
      const [floor, through, fresh] = await clientInNs<number[][]>(lab, 'm', { op: 'latency', targets: [direct('/hello'), gw('/hello'), { ...direct('/hello'), fresh: true }], n: N });
      say(`\n## 2. GET /hello through the wireguard-go tunnel (client in m, worker in a), ${N} sequential requests each (interleaved)`);
      sayLatency(say, `direct to server.js in a on its tunnel address`, floor!, through!, fresh!);
    }
    if (SECTIONS.has('3')) {
      const bytes = BYTES_MIB * MIB;
      const iperfServer = lab.spawn('a', 'iperf3', ['-s', '-1', '-B', aIp]);
      children.push(iperfServer);
      await new Promise((r) => setTimeout(r, 500));
      // -R: the server in a sends, as a replica's response does.
      const iperf = JSON.parse(lab.exec('m', ['iperf3', '-c', aIp, '-R', '-t', '10', '-J'])) as { end: { sum_received: { bits_per_second: number } } };
      const iperfMiBs = iperf.end.sum_received.bits_per_second / 8 / MIB;
      const rate = (r: { ms: number; bytes: number }) => {
        if (r.bytes !== bytes) throw new Error(`download: ${r.bytes} bytes, ${bytes} wanted`);
        return r.bytes / MIB / (r.ms / 1000);
      };
      const viaGw = rate(await clientInNs(lab, 'm', { op: 'download', target: gw(`/bytes?n=${bytes}`) }));
      const viaDirect = rate(await clientInNs(lab, 'm', { op: 'download', target: direct(`/bytes?n=${bytes}`) }));
      say(`\n## 3. ${BYTES_MIB} MiB response (/bytes) through the tunnel, a -> m`);
      say(`iperf3 -R through the tunnel: ${iperfMiBs.toFixed(1)} MiB/s`);
      say(`direct to server.js in a: ${viaDirect.toFixed(1)} MiB/s (${((viaDirect / iperfMiBs) * 100).toFixed(0)}% of iperf3)`);
      say(`through the gateway: ${viaGw.toFixed(1)} MiB/s: ${((viaGw / iperfMiBs) * 100).toFixed(0)}% of iperf3, ${((viaGw / viaDirect) * 100).toFixed(0)}% of direct`);
    }
    await cli(['service', 'rm', SERVICE, '--wait']).catch(() => undefined);
  } catch (err) {
    const tail = (p: NsProc) => p.output.split('\n').slice(-15).join('\n');
    throw new Error(`${String(err)}\nmaster output (end):\n${procs[0] ? tail(procs[0]) : ''}\nworker output (end):\n${procs[1] ? tail(procs[1]) : ''}`);
  } finally {
    for (const c of children) c.kill('SIGKILL');
    for (const p of procs.reverse()) await stopInNs(p).catch(() => undefined);
    lab.destroy();
    rmSync(home, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const say: Say = (s) => console.log(s);
  say(`# HiveMind services benchmark, ${new Date().toISOString()}, node ${process.version}, ${(await run('nproc')).stdout.trim()} cores`);
  await run('docker', ['image', 'inspect', SVC_IMAGE]).catch(() => {
    throw new Error(`no image ${SVC_IMAGE}: build it with bash scripts/svc-test-image.sh`);
  });
  if (SECTIONS.has('1') || SECTIONS.has('4')) await loopbackSections(say);
  if (SECTIONS.has('2') || SECTIONS.has('3')) await tunnelSections(say);
}

const clientAt = process.argv.indexOf('--client');
(clientAt >= 0 ? clientMain(JSON.parse(process.argv[clientAt + 1]!) as ClientJob) : main()).catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
