// The master bench:scale measures: a real `hivemind master start` (direct mode, loopback, a temp
// data dir) in a process group of its own, so a stop or a crash of the bench takes it and any child
// with it. stopSync() is for process 'exit' handlers, which cannot wait.
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLI, freePort } from '../../test/helpers/cli-process.js';

/** Output kept for diagnosis: the tail only, a master at 10,000 nodes logs a lot. */
const TAIL_BYTES = 64 * 1024;

export class MasterProcess {
  private tail = '';
  private stopped = false;

  private constructor(
    readonly home: string,
    readonly address: string,
    /** The master's operations listener (/metrics: event-loop lag). */
    readonly metricsAddress: string,
    readonly child: ChildProcess,
  ) {
    // HM_BENCH_MASTER_LOG=FILE keeps all of it (e.g. with --trace-gc in HM_BENCH_MASTER_NODE_ARGS).
    const whole = process.env.HM_BENCH_MASTER_LOG;
    const keep = (d: Buffer) => {
      this.tail = (this.tail + d.toString()).slice(-TAIL_BYTES);
      if (whole) appendFileSync(whole, d);
    };
    child.stdout!.on('data', keep);
    child.stderr!.on('data', keep);
  }

  static async start(opts: { reportInterval: string; logLevel: string; rpcThreads?: number }): Promise<MasterProcess> {
    const home = mkdtempSync(join(tmpdir(), 'hm-bench-scale-'));
    const address = `127.0.0.1:${await freePort()}`;
    const metricsAddress = `127.0.0.1:${await freePort()}`;
    const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: home, HIVEMIND_HOME: home, HIVEMIND_MONITOR_PORT: '0' };
    // Node options for the master alone (e.g. --cpu-prof --cpu-prof-dir=DIR to profile it)
    if (process.env.HM_BENCH_MASTER_NODE_OPTIONS) env.NODE_OPTIONS = process.env.HM_BENCH_MASTER_NODE_OPTIONS;
    const args = [CLI, 'master', 'start', '--listen', address, '--data-dir', join(home, 'master'), '--report-interval', opts.reportInterval, '--gateway-listen', 'off', '--metrics-listen', metricsAddress, '--log-level', opts.logLevel, ...(opts.rpcThreads === undefined ? [] : ['--rpc-threads', String(opts.rpcThreads)])];
    // V8 flags NODE_OPTIONS refuses (e.g. --single-threaded-gc), before the script.
    const v8Args = (process.env.HM_BENCH_MASTER_NODE_ARGS ?? '').split(/\s+/).filter(Boolean);
    // A command the master runs under, for diagnosis (e.g. `strace --seccomp-bpf -f -T -o FILE -e
    // trace=...`): the process the bench then measures (pid, CPU) is that command's, not node's.
    const wrap = (process.env.HM_BENCH_MASTER_WRAP ?? '').split(/\s+/).filter(Boolean);
    const argv = [...wrap, process.execPath, ...v8Args, ...args];
    const child = spawn(argv[0]!, argv.slice(1), { env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    return new MasterProcess(home, address, metricsAddress, child);
  }

  /**
   * The longest event-loop delay (ms) since the previous scrape, of the main thread
   * (hivemind_master_event_loop_lag_seconds{stat="max"}, whose window is the time between scrapes)
   * and of the RPC threads, the longest of them (hivemind_master_rpc_thread_event_loop_lag_seconds;
   * undefined when the master runs none).
   */
  async eventLoopMaxMs(): Promise<{ main: number; rpc: number | undefined } | undefined> {
    const res = await fetch(`http://${this.metricsAddress}/metrics`, { signal: AbortSignal.timeout(10_000) });
    const text = await res.text();
    const m = /^hivemind_master_event_loop_lag_seconds\{stat="max"\} (\S+)$/m.exec(text);
    if (!m) return undefined;
    const threads = [...text.matchAll(/^hivemind_master_rpc_thread_event_loop_lag_seconds\{[^}]*stat="max"[^}]*\} (\S+)$/gm)].map((x) => Number(x[1]) * 1000);
    return { main: Number(m[1]) * 1000, rpc: threads.length ? Math.max(...threads) : undefined };
  }

  /** The size of the master's WAL file now (0 when there is none). */
  walBytes(): number {
    const file = join(this.home, 'master', 'master.db-wal');
    return existsSync(file) ? statSync(file).size : 0;
  }

  get pid(): number {
    return this.child.pid!;
  }

  get output(): string {
    return this.tail;
  }

  /** The admin token the master writes on its first start. */
  async adminToken(timeoutMs = 30_000): Promise<string> {
    const file = join(this.home, 'master', 'admin.token');
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (this.child.exitCode !== null) throw new Error(`the master exited (${this.child.exitCode}):\n${this.tail}`);
      const token = existsSync(file) ? readFileSync(file, 'utf8').trim() : '';
      if (token) return token;
      if (Date.now() > deadline) throw new Error(`no admin token from the master within ${timeoutMs} ms:\n${this.tail}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** SIGTERM to the group, SIGKILL after `graceMs`; then the temp dir goes. */
  async stop(graceMs = 10_000): Promise<void> {
    if (this.stopped) return;
    if (this.child.exitCode === null && this.child.signalCode === null) {
      const exited = new Promise((r) => this.child.once('exit', r));
      this.signal('SIGTERM');
      const t = setTimeout(() => this.signal('SIGKILL'), graceMs);
      await exited;
      clearTimeout(t);
    }
    this.signal('SIGKILL'); // children the master left behind, if any
    this.stopSync();
  }

  /** Kills the group at once and removes the temp dir: safe to call from an 'exit' handler. */
  stopSync(): void {
    this.stopped = true;
    this.signal('SIGKILL');
    rmSync(this.home, { recursive: true, force: true });
  }

  private signal(sig: NodeJS.Signals): void {
    try {
      process.kill(-this.pid, sig);
    } catch {
      // the group is gone already
    }
  }
}
