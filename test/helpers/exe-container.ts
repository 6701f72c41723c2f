// A container from a Node-less Debian rootfs with the standalone executable copied alone into
// an empty directory: the fixture of the executable's ship test. The host's Docker socket is
// mounted (the worker runs its tasks there), and a host temp dir is mounted at the same path,
// because the paths the worker hands to Docker for bind mounts are read on the host.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { CliResult } from './cli-process.js';

const run = promisify(execFile);

export const EXE_IN_CONTAINER = '/opt/hivemind/hivemind';
const LABEL = 'io.hivemind.test=executable';

export class ExeContainer {
  private constructor(
    readonly name: string,
    /** Host temp dir, mounted at the same path; HOME and HIVEMIND_HOME live under it. */
    readonly shared: string,
  ) {}

  static async start(exe: string, image: string): Promise<ExeContainer> {
    const shared = mkdtempSync(join(tmpdir(), 'hm-exe-'));
    const name = `hm-exe-test-${process.pid}-${Date.now().toString(36)}`;
    const c = new ExeContainer(name, shared);
    try {
      await run('docker', [
        'run', '-d', '--rm', '--name', name, '--label', LABEL,
        '-v', '/var/run/docker.sock:/var/run/docker.sock',
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
  async sh(script: string): Promise<CliResult> {
    return this.collect(spawn('docker', ['exec', this.name, 'sh', '-c', script], { stdio: ['ignore', 'pipe', 'pipe'] }), script, 60_000);
  }

  /** Runs `hivemind ARGS` in the container and waits for it. */
  hivemind(args: string[], timeoutMs = 120_000): Promise<CliResult> {
    return this.collect(spawn('docker', ['exec', this.name, EXE_IN_CONTAINER, ...args], { stdio: ['ignore', 'pipe', 'pipe'] }), args.join(' '), timeoutMs);
  }

  /** Starts `hivemind ARGS` in the container as a long-running process. */
  daemon(id: string, args: string[]): ExeDaemon {
    const pidFile = `/tmp/${id}.pid`;
    // The shell writes its pid and execs: that pid is the hivemind process, to be signalled later.
    const child = spawn('docker', ['exec', this.name, 'sh', '-c', `echo $$ > ${pidFile}; exec "$@"`, 'sh', EXE_IN_CONTAINER, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    return new ExeDaemon(this, child, pidFile);
  }

  private collect(child: ChildProcess, what: string, timeoutMs: number): Promise<CliResult> {
    return new Promise((resolve, reject) => {
      let stdout = '';
      let stderr = '';
      child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`${what} did not finish within ${timeoutMs} ms\nstdout: ${stdout}\nstderr: ${stderr}`));
      }, timeoutMs);
      child.on('error', reject);
      child.on('close', (code) => {
        clearTimeout(timer);
        resolve({ code: code ?? -1, stdout, stderr });
      });
    });
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
