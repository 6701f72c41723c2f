// A command run in a task's running container (docker exec): its output, its stdin, its window
// size, its exit code and a kill. The worker's exec session drives the ExecProcess port;
// DockerExecProcess is its dockerode implementation (unit tests use fakes).
//
// Killing: Docker has no "kill this exec" call, and closing the attach connection leaves the
// command running (moby#9098). The engine reports the exec's host pid (exec inspect `Pid`), which
// this node sees when it shares the Docker host's pid namespace (the supported setup): the kill
// sends SIGKILL to the command's process group and to the command itself, so a shell's children
// go with it. When that pid is not ours to signal (a remote or rootless daemon), it runs `kill`
// in the same container as the same user with the command's pid inside the container (NSpid),
// which needs a `kill` in the image. When neither works the kill fails with an EngineError: the
// command then ends with its task (a session never outlives its task: the container is removed).
import { readFile } from 'node:fs/promises';
import type { Duplex } from 'node:stream';
import type Docker from 'dockerode';
import { EngineError, errorMessage } from '../common/errors.js';
import { StreamFrameDecoder } from './log-frames.js';

export interface TerminalDims {
  cols: number;
  rows: number;
}

/** What to run, and how (the container's own user is given by the caller: never privileged). */
export interface ExecOptions {
  /** argv, the first element is looked up in the container's PATH. */
  argv: string[];
  /** The task's user ("uid:gid"): an exec never runs as anyone else. */
  user: string;
  /** A pseudo-terminal: stdout and stderr merged, as a terminal has them. */
  tty: boolean;
  /** Whether stdin is attached; without it the command's stdin is empty. */
  stdin: boolean;
  /** With tty: the initial window size. */
  size?: TerminalDims;
}

export interface ExecOutputSink {
  output(stream: 'stdout' | 'stderr', data: Buffer): void;
}

export interface ExecProcess {
  /** Starts delivering the command's output (once); with tty everything is stdout. */
  readOutput(sink: ExecOutputSink): void;
  /** Stops reading output until resume(): the receiver is full (the engine then holds the command). */
  pause(): void;
  resume(): void;
  /** Writes to the command's stdin; resolves once the connection took it (backpressure). */
  writeStdin(data: Buffer): Promise<void>;
  /** Closes the command's stdin (half-close): `cat` ends. Idempotent. */
  closeStdin(): void;
  /** With tty: changes the window size. */
  resize(size: TerminalDims, signal?: AbortSignal): Promise<void>;
  /** The command's exit code once its output ended (128+N when a signal N killed it). Never rejects. */
  readonly exitCode: Promise<number>;
  /** Kills the command and whatever it started (see the head of this file). Idempotent. */
  kill(): Promise<void>;
}

/** What the command's exit code is when the engine does not say (the connection broke). */
export const EXEC_UNKNOWN_EXIT = 137;

/** How long the attach stream may stay open after a kill before it is cut. */
const KILL_STREAM_GRACE_MS = 2_000;

export class DockerExecProcess implements ExecProcess {
  readonly exitCode: Promise<number>;
  private started = false;
  private stdinClosed = false;
  private killing: Promise<void> | undefined;
  private readonly ended: Promise<void>;

  private constructor(
    private readonly container: Docker.Container,
    private readonly exec: Docker.Exec,
    private readonly socket: Duplex,
    private readonly opts: ExecOptions,
  ) {
    this.socket.pause();
    this.ended = new Promise<void>((resolve) => {
      this.socket.once('end', resolve);
      this.socket.once('close', resolve);
      this.socket.once('error', () => resolve());
    });
    this.exitCode = this.ended.then(() => this.waitExitCode());
    // Without stdin the connection is never half-closed: the engine takes the client's end of a
    // stream with no stdin attached as a detach and stops sending output.
    if (!opts.stdin) this.stdinClosed = true;
  }

  /** Creates and starts the exec; the command runs once this resolves. */
  static async start(container: Docker.Container, opts: ExecOptions, signal?: AbortSignal): Promise<DockerExecProcess> {
    const exec = await container.exec({
      Cmd: opts.argv,
      User: opts.user,
      Privileged: false,
      AttachStdin: opts.stdin,
      AttachStdout: true,
      AttachStderr: true,
      Tty: opts.tty,
      ...(opts.tty ? { Env: ['TERM=xterm'] } : {}),
      abortSignal: signal,
    } as Docker.ExecCreateOptions);
    // ConsoleSize (Engine API 1.42+) sizes the terminal before the command starts; older daemons
    // ignore it, and the resize right after start is what they get (docker's own CLI does both).
    const size = opts.tty && opts.size ? { ConsoleSize: [opts.size.rows, opts.size.cols] } : {};
    const socket = (await exec.start({ hijack: true, stdin: opts.stdin, Detach: false, Tty: opts.tty, ...size } as Docker.ExecStartOptions)) as unknown as Duplex;
    const proc = new DockerExecProcess(container, exec, socket, opts);
    if (opts.tty && opts.size) await proc.resize(opts.size, signal).catch(() => undefined);
    return proc;
  }

  readOutput(sink: ExecOutputSink): void {
    if (this.started) return;
    this.started = true;
    const decoder = this.opts.tty ? undefined : new StreamFrameDecoder((stream, data) => sink.output(stream, data));
    this.socket.on('data', (d: Buffer) => (decoder ? decoder.push(d) : sink.output('stdout', d)));
    this.socket.resume();
  }

  pause(): void {
    this.socket.pause();
  }

  resume(): void {
    if (this.started) this.socket.resume();
  }

  writeStdin(data: Buffer): Promise<void> {
    if (this.stdinClosed || this.socket.destroyed || !this.socket.writable) return Promise.resolve();
    return new Promise<void>((resolve) => {
      // The callback fires once the bytes went to the socket (or it failed: the output side reports that).
      this.socket.write(data, () => resolve());
    });
  }

  closeStdin(): void {
    if (this.stdinClosed) return;
    this.stdinClosed = true;
    if (!this.socket.destroyed && this.socket.writable) this.socket.end();
  }

  async resize(size: TerminalDims, signal?: AbortSignal): Promise<void> {
    if (!this.opts.tty) return;
    try {
      await this.exec.resize({ h: size.rows, w: size.cols, abortSignal: signal } as { h: number; w: number });
    } catch (err) {
      // Podman answers a done resize with 201 Created (Docker: 200), which dockerode calls unexpected.
      if ((err as { statusCode?: number }).statusCode === 201) return;
      throw new EngineError(`resize the exec's terminal: ${errorMessage(err)}`, { cause: err });
    }
  }

  kill(): Promise<void> {
    // The stream ends by itself once the command died; cutting it first would leave the engine
    // reporting the exec as running for seconds. Cut only when it does not end.
    this.killing ??= this.killNow().finally(() => {
      const cut = setTimeout(() => this.socket.destroy(), KILL_STREAM_GRACE_MS);
      void this.ended.then(() => clearTimeout(cut));
    });
    return this.killing;
  }

  private async killNow(): Promise<void> {
    // Right after the start the engine may not have the process yet (not running, no exit code,
    // or running without a pid): wait for it, a kill must not miss a command that is starting.
    let info = await this.inspect();
    for (let i = 0; i < 100 && info && ((!info.Running && info.ExitCode === null) || (info.Running && !info.Pid)); i++) {
      await new Promise((r) => setTimeout(r, 20));
      info = await this.inspect();
    }
    if (!info?.Running || !info.Pid) return;
    const pid = info.Pid;
    try {
      signalGroup(pid);
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ESRCH') return;
    }
    // Not ours to signal: `kill` inside the container, as the same user, with its pid in there.
    const nsPid = await innerPid(pid);
    if (nsPid === undefined) throw new EngineError(`kill the exec (host pid ${pid}): this node cannot signal it and does not see its pid inside the container`);
    const killer = await DockerExecProcess.start(this.container, { argv: ['kill', '-KILL', `-${nsPid}`, `${nsPid}`], user: this.opts.user, tty: false, stdin: false });
    killer.readOutput({ output: () => undefined });
    await killer.exitCode;
  }

  private async inspect(): Promise<{ Running: boolean; ExitCode: number | null; Pid: number } | undefined> {
    try {
      return (await this.exec.inspect()) as unknown as { Running: boolean; ExitCode: number | null; Pid: number };
    } catch {
      return undefined;
    }
  }

  /** The engine records the exit code a moment after the output ends; asks a few times. */
  private async waitExitCode(): Promise<number> {
    for (let i = 0; i < 50; i++) {
      const info = await this.inspect();
      if (!info) return EXEC_UNKNOWN_EXIT;
      if (!info.Running && info.ExitCode !== null) return info.ExitCode;
      await new Promise((r) => setTimeout(r, 20 * Math.min(i + 1, 10)));
    }
    return EXEC_UNKNOWN_EXIT;
  }
}

/** SIGKILL to the command's process group (when it leads one) and to the command itself. */
function signalGroup(pid: number): void {
  try {
    process.kill(-pid, 'SIGKILL');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
  }
  process.kill(pid, 'SIGKILL');
}

/** The pid of a host process inside its own pid namespace (the last NSpid field), if /proc shows it. */
async function innerPid(hostPid: number): Promise<number | undefined> {
  try {
    const status = await readFile(`/proc/${hostPid}/status`, 'utf8');
    const m = /^NSpid:\s*([\d\s]+)$/m.exec(status);
    const last = m?.[1]?.trim().split(/\s+/).pop();
    return last ? Number(last) : undefined;
  } catch {
    return undefined;
  }
}
