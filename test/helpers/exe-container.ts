// A container from a Node-less Debian rootfs with the standalone executable copied alone into
// an empty directory: the fixture of the executable's and install.sh's ship tests. The host's
// Docker socket is mounted (the worker runs its tasks there), and a host temp dir is mounted at the
// same path, because the paths the worker hands to Docker for bind mounts are read on the host.
// The host's loop devices are passed, so the worker can make each task's bounded /output.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { runProcess, waitFor, type CliResult } from './cli-process.js';
import { loopDeviceArgs } from './loop-devices.js';

const run = promisify(execFile);

export const EXE_IN_CONTAINER = '/opt/hivemind/hivemind';
const LABEL = 'io.hivemind.test=executable';

export interface ExeContainerOptions {
  /**
   * Run docker's init as PID 1. Without it nothing reaps a process whose parent has exited (a
   * worker started in the background by install.sh), and its zombie still answers `kill -0`.
   */
  init?: boolean;
  /**
   * "host": the container shares the host's network, so the executable reaches services that
   * listen on the host's loopback only (the test PostgreSQL); the caller picks free ports.
   */
  network?: 'host';
}

export class ExeContainer {
  private constructor(
    readonly name: string,
    /** Host temp dir, mounted at the same path; HOME and HIVEMIND_HOME live under it. */
    readonly shared: string,
  ) {}

  static async start(exe: string, image: string, opts: ExeContainerOptions = {}): Promise<ExeContainer> {
    const shared = mkdtempSync(join(tmpdir(), 'hm-exe-'));
    const name = `hm-exe-test-${process.pid}-${Date.now().toString(36)}`;
    const c = new ExeContainer(name, shared);
    try {
      await run('docker', [
        'run', '-d', '--rm', '--name', name, '--label', LABEL, ...(opts.init ? ['--init'] : []),
        ...(opts.network ? ['--network', opts.network] : []),
        '-v', '/var/run/docker.sock:/var/run/docker.sock',
        // `worker start` refuses to run where it cannot bound a task's /output: give it the loop devices
        ...loopDeviceArgs(),
        '-v', `${shared}:${shared}`,
        '-e', `HOME=${shared}/home`, '-e', `HIVEMIND_HOME=${shared}/home`, '-e', 'HIVEMIND_LOG_LEVEL=info',
        image, 'sleep', 'infinity',
      ]);
      await run('docker', ['exec', name, 'mkdir', '-p', '/opt/hivemind', `${shared}/home`]);
      await run('docker', ['cp', exe, `${name}:${EXE_IN_CONTAINER}`]);
      return c;
    } catch (err) {
      await c.close();
      throw err;
    }
  }

  /** Runs a shell command in the container. */
  async sh(script: string, timeoutMs = 60_000): Promise<CliResult> {
    return runProcess('docker', ['exec', this.name, 'sh', '-c', script], { timeoutMs, what: script });
  }

  /** Copies a host file into the container. */
  async copyIn(hostPath: string, containerPath: string): Promise<void> {
    await run('docker', ['cp', hostPath, `${this.name}:${containerPath}`]);
  }

  /** Runs `hivemind ARGS` in the container and waits for it. */
  hivemind(args: string[], timeoutMs = 120_000): Promise<CliResult> {
    return runProcess('docker', ['exec', this.name, EXE_IN_CONTAINER, ...args], { timeoutMs, what: args.join(' ') });
  }

  /** Starts `hivemind ARGS` in the container as a long-running process. */
  daemon(id: string, args: string[]): ExeDaemon {
    const pidFile = `/tmp/${id}.pid`;
    // The shell writes its pid and execs: that pid is the hivemind process, to be signalled later.
    const child = spawn('docker', ['exec', this.name, 'sh', '-c', `echo $$ > ${pidFile}; exec "$@"`, 'sh', EXE_IN_CONTAINER, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    return new ExeDaemon(this, child, pidFile);
  }

  /**
   * Starts `hivemind master start` on ADDRESS (a development master, report interval 1 s, then
   * `extra` flags) and waits for its admin token. The caller stops the returned daemon.
   */
  async master(address: string, dataDir: string, extra: readonly string[] = []): Promise<ExeMaster> {
    const daemon = this.daemon('master', ['master', 'start', '--listen', address, '--data-dir', dataDir, '--report-interval', '1s', ...extra]);
    try {
      // waitFor retries on a throw, so an exited process is a value, checked right after.
      const adminToken = await waitFor('the master admin token', () => {
        if (!daemon.running) return 'exited';
        try {
          return readFileSync(`${dataDir}/admin.token`, 'utf8').trim() || undefined;
        } catch {
          return undefined;
        }
      }, 60_000, 200);
      if (!daemon.running) throw new Error(`master exited:\n${daemon.output}`);
      return new ExeMaster(this, daemon, address, adminToken);
    } catch (err) {
      await daemon.stop().catch(() => undefined);
      throw err;
    }
  }

  async close(): Promise<void> {
    await run('docker', ['rm', '-f', this.name]).catch(() => undefined);
    rmSync(this.shared, { recursive: true, force: true });
  }
}

/** A hivemind process inside the container; stop() signals it there, not the docker client. */
export class ExeDaemon {
  output = '';
  readonly exited: Promise<number>;

  constructor(private readonly c: ExeContainer, readonly child: ChildProcess, private readonly pidFile: string) {
    child.stdout!.on('data', (d: Buffer) => (this.output += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (this.output += d.toString()));
    this.exited = new Promise((resolve) => child.on('exit', (code, sig) => resolve(code ?? (sig ? 128 : -1))));
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  async stop(timeoutMs = 60_000): Promise<number> {
    if (!this.running) return this.exited;
    await this.c.sh(`kill -TERM "$(cat ${this.pidFile})"`);
    const t = setTimeout(() => void this.c.sh(`kill -KILL "$(cat ${this.pidFile})"`), timeoutMs);
    try {
      return await this.exited;
    } finally {
      clearTimeout(t);
    }
  }
}

/** A development master run by the executable in the container. */
export class ExeMaster {
  constructor(private readonly c: ExeContainer, readonly daemon: ExeDaemon, readonly address: string, readonly adminToken: string) {}

  /** The flags an admin command needs to reach this master. */
  get admin(): string[] {
    return ['--master', this.address, '--admin-token', this.adminToken];
  }

  /** A fresh enrollment token (hm1.…) from `hivemind token create`. */
  async enrollmentToken(): Promise<string> {
    let last = '';
    try {
      return await waitFor('an enrollment token', async () => {
        const r = await this.c.hivemind(['token', 'create', ...this.admin]);
        last = r.stderr;
        return r.code === 0 ? r.stdout.trim() : undefined;
      }, 30_000, 500);
    } catch (err) {
      throw new Error(`${(err as Error).message}\nlast token create: ${last}\nmaster:\n${this.daemon.output}`);
    }
  }
}
