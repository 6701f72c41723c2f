// A master and a worker (or more, see addWorker) as separate `hivemind` processes on loopback, in
// a temp HIVEMIND_HOME: the fixture of the end-to-end tests and of the benchmark.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TEST_STORE, freshPgSchema } from './test-store.js';
import { CLI, CliDaemon, fileExists, freePort, runCli, waitFor, type CliResult } from './cli-process.js';

export interface ClusterOptions {
  reportInterval?: string;
  maxTasks?: number;
  workerArgs?: string[];
  /** Extra environment of the worker process (e.g. a PATH with a fake nvidia-smi). */
  workerEnv?: NodeJS.ProcessEnv;
  /** The worker's data dir (default HOME/worker), e.g. on a small tmpfs. */
  workerDataDir?: string;
  /** An ordinary user the worker process runs as (runuser; its data dir must be that user's). Default: this user. */
  workerUser?: string;
  /** The CLI entry script the master, the worker and `cli()` run (default this build's). */
  cli?: string;
  /** More master addresses for the worker's --master list, after the cluster's own (e.g. a standby the test stands in for). */
  extraMasters?: string[];
  /** Extra flags of `hivemind master start` (e.g. `--node-timeout 5s`). */
  masterArgs?: string[];
  /**
   * The master's `--store` URL. Default: none (SQLite in its data dir), or with
   * HIVEMIND_TEST_STORE=postgres a fresh schema of the test PostgreSQL (test-store.ts).
   */
  store?: string;
}

/** A worker started by addWorker, next to `cluster.worker`. */
export interface ExtraWorker {
  daemon: CliDaemon;
  nodeId: string;
  dataDir: string;
}

/** The node id a worker logged when it registered (first start of its data dir). */
export function registeredNodeId(worker: CliDaemon): string | undefined {
  for (const line of worker.output.split('\n')) {
    if (!line.includes('"registered with the master"')) continue;
    try {
      return (JSON.parse(line) as { nodeId?: string }).nodeId;
    } catch {
      // a torn line; the next read has it whole
    }
  }
  return undefined;
}

export class ProcessCluster {
  private constructor(
    readonly home: string,
    readonly address: string,
    readonly adminToken: string,
    readonly env: NodeJS.ProcessEnv,
    public master: CliDaemon,
    public worker: CliDaemon | undefined,
    private readonly masterArgs: string[] = [],
    private readonly masterEnv: NodeJS.ProcessEnv = {},
    /** The CLI entry script every process of this cluster runs; an upgrade test swaps it. */
    public cliPath: string = CLI,
  ) {}

  /** Workers started by addWorker; close() stops them too. */
  readonly extraWorkers: ExtraWorker[] = [];

  /** Starts the master again on the same address and data dir (after `master.stop()`). */
  async restartMaster(): Promise<CliDaemon> {
    this.master = new CliDaemon(this.masterArgs, this.masterEnv, this.cliPath);
    await waitFor('the restarted master to answer', async () => {
      if (this.master.child.exitCode !== null) throw new Error(`master exited: ${this.master.output}`);
      return (await this.cli(['nodes', '--json'])).code === 0 || undefined;
    }, 30_000, 200);
    return this.master;
  }

  static async start(opts: ClusterOptions = {}): Promise<ProcessCluster> {
    const home = mkdtempSync(join(tmpdir(), 'hm-e2e-'));
    const port = await freePort();
    const address = `127.0.0.1:${port}`;
    // No monitor unless a test asks for one (--monitor-port): workers of parallel fixtures would share 5001.
    const baseEnv: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: home, HIVEMIND_HOME: home, HIVEMIND_LOG_LEVEL: 'info', HIVEMIND_MONITOR_PORT: '0' };
    const reportInterval = opts.reportInterval ?? '1s';
    const store = opts.store ?? (TEST_STORE === 'postgres' ? freshPgSchema().url : undefined);
    const masterArgs = ['master', 'start', '--listen', address, '--data-dir', join(home, 'master'), '--report-interval', reportInterval, ...(store ? ['--store', store] : []), ...(opts.masterArgs ?? [])];
    // The gateway on a free port: fixtures run side by side (gatewayUrl() reads where it listens). By
    // env, which a flag in masterArgs overrides and an older build under test ignores.
    // The operations listener (/healthz /readyz /metrics) likewise: metricsUrl() reads it.
    const masterEnv: NodeJS.ProcessEnv = { ...baseEnv, HIVEMIND_GATEWAY_LISTEN: '127.0.0.1:0', HIVEMIND_METRICS_LISTEN: '127.0.0.1:0' };
    const cliPath = opts.cli ?? CLI;
    const master = new CliDaemon(masterArgs, masterEnv, cliPath);
    const tokenFile = join(home, 'master', 'admin.token');
    try {
      await waitFor('the master admin token', () => fileExists(tokenFile) && readFileSync(tokenFile, 'utf8').trim().length > 0);
      const adminToken = readFileSync(tokenFile, 'utf8').trim();
      const env = { ...baseEnv, HIVEMIND_MASTER: address, HIVEMIND_ADMIN_TOKEN: adminToken };
      const cluster = new ProcessCluster(home, address, adminToken, env, master, undefined, masterArgs, masterEnv, cliPath);
      await waitFor('the master to answer', async () => (await cluster.cli(['nodes', '--json'])).code === 0);
      await cluster.startWorker(opts);
      return cluster;
    } catch (err) {
      await master.stop('SIGKILL');
      throw new Error(`${String(err)}\nmaster output:\n${master.output}`);
    }
  }

  async startWorker(opts: ClusterOptions = {}): Promise<CliDaemon> {
    const worker = await this.spawnWorker(opts.workerDataDir ?? join(this.home, 'worker'), opts);
    this.worker = worker;
    await waitFor(
      'the worker to be online',
      async () => {
        if (worker.child.exitCode !== null) throw new Error(`worker exited: ${worker.output}`);
        // This worker connected (registered and subscribed): after a restart the master still
        // lists the previous process online until it misses its reports.
        if (!/"to":"connected"/.test(worker.output)) return false;
        const r = await this.cli(['nodes', '--json']);
        const nodes = JSON.parse(r.stdout || '[]') as { online: boolean }[];
        return nodes.some((n) => n.online);
      },
      30_000,
      200,
    );
    return worker;
  }

  /**
   * Starts one more worker with its own data dir (default HOME/worker-N), leaving `worker` as it
   * is, and waits until the master lists its node online.
   */
  async addWorker(opts: ClusterOptions = {}): Promise<ExtraWorker> {
    const dataDir = opts.workerDataDir ?? join(this.home, `worker-${this.extraWorkers.length + 2}`);
    const daemon = await this.spawnWorker(dataDir, opts);
    const extra: ExtraWorker = { daemon, nodeId: '', dataDir };
    this.extraWorkers.push(extra);
    extra.nodeId = await waitFor('the added worker to register', () => {
      if (daemon.child.exitCode !== null) throw new Error(`worker exited: ${daemon.output}`);
      return registeredNodeId(daemon);
    }, 30_000, 100);
    await waitFor('the added worker to be online', async () => {
      if (daemon.child.exitCode !== null) throw new Error(`worker exited: ${daemon.output}`);
      const nodes = JSON.parse((await this.cli(['nodes', '--json'])).stdout || '[]') as { nodeId: string; online: boolean }[];
      return nodes.some((n) => n.nodeId === extra.nodeId && n.online) || undefined;
    }, 30_000, 200);
    return extra;
  }

  private async spawnWorker(dataDir: string, opts: ClusterOptions): Promise<CliDaemon> {
    const tok = await this.cli(['token', 'create']);
    if (tok.code !== 0) throw new Error(`token create failed: ${tok.stderr}`);
    return new CliDaemon(
      [
        'worker', 'start',
        '--master', [this.address, ...(opts.extraMasters ?? [])].join(','),
        '--token', tok.stdout.trim(),
        '--data-dir', dataDir,
        '--report-interval', opts.reportInterval ?? '1s',
        '--max-tasks', String(opts.maxTasks ?? 2),
        ...(opts.workerArgs ?? []),
      ],
      // Each worker's gateway pipe on a free port (by env: an older build under test ignores it).
      { ...this.env, HIVEMIND_MASTER: undefined, HIVEMIND_GATEWAY_PORT: '0', ...opts.workerEnv },
      this.cliPath,
      opts.workerUser,
    );
  }

  /** The master's gateway base URL, from its log line "gateway listening" (undefined before it listens). */
  gatewayUrl(): string | undefined {
    return this.urlLogged('gateway listening');
  }

  /** The master's operations listener (/healthz /readyz /metrics), from its log line (undefined before it listens). */
  metricsUrl(): string | undefined {
    return this.urlLogged('operations listening: /healthz /readyz /metrics');
  }

  private urlLogged(msg: string): string | undefined {
    for (const line of this.master.output.split('\n')) {
      if (!line.includes(`"${msg}"`)) continue;
      try {
        return (JSON.parse(line) as { url?: string }).url;
      } catch {
        // a torn line; the next read has it whole
      }
    }
    return undefined;
  }

  cli(args: string[], timeoutMs?: number): Promise<CliResult> {
    return runCli(args, this.env, timeoutMs, this.cliPath);
  }

  async close(): Promise<void> {
    const workers = [...this.extraWorkers.map((w) => w.daemon), ...(this.worker ? [this.worker] : [])];
    // A worker a test froze (SIGSTOP) would never act on the SIGTERM.
    for (const w of workers) if (w.child.exitCode === null && w.child.signalCode === null) w.child.kill('SIGCONT');
    for (const w of this.extraWorkers) await w.daemon.stop('SIGTERM').catch(() => undefined);
    await this.worker?.stop('SIGTERM').catch(() => undefined);
    await this.master.stop('SIGTERM').catch(() => undefined);
    rmSync(this.home, { recursive: true, force: true });
  }
}
