// Tunnel benchmark (issue: WireGuard mesh). A master host and a worker host as network namespaces
// with real wireguard-go between them; prints, measured in one run:
//   1. time from `hivemind worker start` on a fresh data dir to "connected" over the tunnel (median)
//   2. result upload of a large output through the tunnel vs iperf3 TCP through the same tunnel
// Needs root, wireguard-tools, wireguard-go, iperf3 and the hivemind/busybox:1 image (scripts/setup.sh).
// Usage: npm run bench:tunnel. Knobs: BENCH_STARTS (5), BENCH_OUTPUT_MIB (1024).
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { NetLab } from '../test/helpers/netns.js';
import { runInNs, startInNs, stopInNs, type NsProc } from '../test/helpers/netns-cli.js';

const STARTS = Number(process.env.BENCH_STARTS ?? 5);
const OUTPUT_MIB = Number(process.env.BENCH_OUTPUT_MIB ?? 1024);

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function runCli(lab: NetLab, host: string, args: string[], env: NodeJS.ProcessEnv): Promise<string> {
  const r = await runInNs(lab, host, args, env);
  if (r.code !== 0) throw new Error(`hivemind ${args.join(' ')}: ${r.out}`);
  return r.out;
}

async function stop(child: ChildProcess): Promise<void> {
  await stopInNs({ child, output: '' });
}

async function main(): Promise<void> {
  const lab = NetLab.create(['m', 'w']);
  const home = mkdtempSync(join(tmpdir(), 'hm-bench-tunnel-'));
  // BENCH_NODE_OPTIONS reaches the master and worker only (e.g. --cpu-prof --cpu-prof-dir=DIR).
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: home, HIVEMIND_HOME: home, ...(process.env.BENCH_NODE_OPTIONS ? { NODE_OPTIONS: process.env.BENCH_NODE_OPTIONS } : {}) };
  const m = lab.host('m');
  const children: ChildProcess[] = [];
  try {
    console.log(`# HiveMind tunnel benchmark, ${new Date().toISOString()}, node ${process.version}`);
    const master = startInNs(lab, 'm', ['master', 'start', '--data-dir', join(home, 'master'), '--wg-endpoint', `${m.ip}:51820`, '--wg-interface', `hb${lab.id}m`, '--enroll-listen', `${m.ip}:7443`], env);
    children.push(master.child);
    while (!/tunnel mode/.test(master.output)) {
      if (master.child.exitCode !== null) throw new Error(master.output);
      await new Promise((r) => setTimeout(r, 100));
    }
    const admin = { ...env, HIVEMIND_MASTER: '127.0.0.1:7070', HIVEMIND_ADMIN_TOKEN: readFileSync(join(home, 'master', 'admin.token'), 'utf8').trim() };

    // 1. fresh start to connected
    const times: number[] = [];
    let worker: NsProc | undefined;
    for (let i = 0; i < STARTS; i++) {
      const token = (await runCli(lab, 'm', ['token', 'create'], admin)).trim();
      const t0 = performance.now();
      const w = startInNs(lab, 'w', ['worker', 'start', '--token', token, '--data-dir', join(home, `w${i}`), '--wg-interface', `hb${lab.id}w`, '--max-tasks', '1'], env);
      while (!/-> connected/.test(w.output)) {
        if (w.child.exitCode !== null) throw new Error(w.output);
        await new Promise((r) => setTimeout(r, 10));
      }
      times.push(performance.now() - t0);
      if (i < STARTS - 1) await stop(w.child);
      else worker = w;
    }
    children.push(worker!.child);
    console.log(`\n## 1. worker start on a fresh data dir -> connected over the tunnel (${STARTS} runs)`);
    console.log(`median ${median(times).toFixed(0)} ms (runs: ${times.map((x) => x.toFixed(0)).join(', ')}; target < 2000 ms)`);

    // 2. upload vs iperf3 through the same tunnel
    const iperfServer = lab.spawn('m', 'iperf3', ['-s', '-1', '-B', '10.8.0.1']);
    children.push(iperfServer);
    await new Promise((r) => setTimeout(r, 500));
    const iperf = JSON.parse(lab.exec('w', ['iperf3', '-c', '10.8.0.1', '-t', '10', '-J'])) as { end: { sum_received: { bits_per_second: number } } };
    const iperfMiBs = iperf.end.sum_received.bits_per_second / 8 / 2 ** 20;
    const id = (await runCli(lab, 'm', ['submit', '--image', 'hivemind/busybox:1', '--memory', '256m', '--timeout', '30m', '--max-output', `${OUTPUT_MIB + 64}m`, '--', 'sh', '-c', `dd if=/dev/urandom of=/output/big bs=1M count=${OUTPUT_MIB} 2>/dev/null`], admin)).trim();
    await runCli(lab, 'm', ['wait', id], admin);
    const info = JSON.parse(await runCli(lab, 'm', ['get', id, '--json'], admin)) as { events: { state: string; atMs: number }[]; outcome: { resultSize: number } };
    const at = (s: string) => info.events.find((e) => e.state === s)!.atMs;
    const uploadMs = at('succeeded') - at('uploading');
    const uploadMiBs = info.outcome.resultSize / 2 ** 20 / (uploadMs / 1000);
    console.log(`\n## 2. ${OUTPUT_MIB} MiB result upload through the tunnel`);
    console.log(`iperf3 TCP through the tunnel: ${iperfMiBs.toFixed(1)} MiB/s (${(iperfMiBs * 8 * 1.048576).toFixed(0)} Mbit/s)`);
    console.log(`result upload (${(info.outcome.resultSize / 2 ** 20).toFixed(0)} MiB in ${uploadMs} ms): ${uploadMiBs.toFixed(1)} MiB/s`);
    console.log(`ratio: ${((uploadMiBs / iperfMiBs) * 100).toFixed(0)}% of iperf3 (target >= 70%)`);
  } finally {
    for (const c of children.reverse()) await stop(c).catch(() => undefined);
    lab.destroy();
    rmSync(home, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
