// The narrow edges `hivemind service` acts through: the file system, commands, background
// processes and a few facts about this machine. Production: node-service-host.ts; tests: fakes.

export interface PathInfo {
  kind: 'file' | 'dir' | 'other';
  /** Permission bits, e.g. 0o755. */
  mode: number;
}

export interface ServiceFs {
  /** What is at `path` (following links); undefined when nothing (or a dangling link). */
  stat(path: string): PathInfo | undefined;
  /** True when something, even a dangling link, is at `path`. */
  present(path: string): boolean;
  readFile(path: string): Buffer;
  /** Writes beside the target and renames: a running executable is replaced, never half-written. */
  writeFileAtomic(path: string, data: Buffer, mode: number): void;
  /** Copies `from` to `path` the same way. */
  copyFileAtomic(from: string, path: string, mode: number): void;
  chmod(path: string, mode: number): void;
  /** mkdir -p, then chmod of the last one. */
  makeDir(path: string, mode: number): void;
  /** rm -rf. */
  remove(path: string): void;
  list(dir: string): string[];
}

export interface BackgroundProcess {
  pid: number;
  /** True once it has exited. */
  exited(): boolean;
}

export interface CommandRunner {
  /** Runs a command with this process's stdout and stderr; its exit code (127 when it cannot start). */
  run(argv: readonly string[]): number;
  /** Runs a command silently: did it exit 0? */
  succeeds(argv: readonly string[]): boolean;
  /** Starts a command detached from this process, its output appended to `outputFile`. */
  startBackground(argv: readonly string[], env: NodeJS.ProcessEnv, outputFile: string): BackgroundProcess;
}

export interface MachineFacts {
  hostOs: 'linux' | 'windows';
  /** root on Linux, an elevated Administrator on Windows. */
  isAdmin(): boolean;
  /** sd_booted(): systemd is PID 1. */
  systemdBooted(): boolean;
  /** PID 1's name, for the message that says there is no systemd. */
  initName(): string;
  /** Alive, and not a zombie. */
  processAlive(pid: number): boolean;
  kill(pid: number): void;
  sleep(ms: number): Promise<void>;
  /** A scratch directory for a file a command reads (the task XML in UTF-16), created on demand. */
  scratchDir(create: boolean): string;
}

export interface ServiceHost {
  fs: ServiceFs;
  commands: CommandRunner;
  machine: MachineFacts;
  /** Lines for the user; `say` prefixes the caller's name. */
  out(line: string): void;
  err(line: string): void;
  env: NodeJS.ProcessEnv;
}
