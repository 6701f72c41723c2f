// A ServiceHost in memory for `hivemind service` unit tests: files with modes, the commands run
// (with scripted exit codes), background starts, and what was printed.
import type { BackgroundProcess, PathInfo, ServiceHost } from '../../src/service/service-host.js';

interface Entry {
  kind: 'file' | 'dir';
  mode: number;
  data: Buffer;
}

export class FakeServiceHost implements ServiceHost {
  readonly files = new Map<string, Entry>();
  readonly ran: string[] = [];
  readonly started: { argv: readonly string[]; env: NodeJS.ProcessEnv; outputFile: string }[] = [];
  readonly stdout: string[] = [];
  readonly stderr: string[] = [];
  /** Exit codes by command line; 0 otherwise. */
  readonly exitCodes = new Map<string, number>();
  /** Commands (by line) that `succeeds` answers true to. */
  readonly succeeding = new Set<string>();
  readonly alive = new Set<number>();
  readonly killed: number[] = [];
  /** The pid the next background start gets; it writes its pid file when `writesPidFile`. */
  nextPid = 4242;
  writesPidFile: string | undefined;
  env: NodeJS.ProcessEnv = {};

  constructor(
    hostOs: 'linux' | 'windows' = 'linux',
    private readonly opts: { admin?: boolean; systemd?: boolean } = {},
  ) {
    this.machine.hostOs = hostOs;
  }

  out = (line: string) => void this.stdout.push(line);
  err = (line: string) => void this.stderr.push(line);

  private parentsOf(path: string): void {
    const parts = path.split('/');
    for (let i = 1; i < parts.length; i++) {
      const dir = parts.slice(0, i).join('/');
      if (dir && !this.files.has(dir)) this.files.set(dir, { kind: 'dir', mode: 0o755, data: Buffer.alloc(0) });
    }
  }

  addFile(path: string, data: string | Buffer, mode = 0o644): void {
    this.parentsOf(path);
    this.files.set(path, { kind: 'file', mode, data: Buffer.from(data) });
  }

  addDir(path: string, mode = 0o755): void {
    this.parentsOf(path);
    this.files.set(path, { kind: 'dir', mode, data: Buffer.alloc(0) });
  }

  text(path: string): string | undefined {
    return this.files.get(path)?.data.toString('utf8');
  }

  fs = {
    stat: (path: string): PathInfo | undefined => {
      const e = this.files.get(path);
      return e && { kind: e.kind, mode: e.mode };
    },
    present: (path: string) => this.files.has(path),
    readFile: (path: string) => {
      const e = this.files.get(path);
      if (e?.kind !== 'file') throw Object.assign(new Error(`ENOENT: ${path}`), { code: 'ENOENT' });
      return e.data;
    },
    writeFileAtomic: (path: string, data: Buffer, mode: number) => this.addFile(path, data, mode),
    copyFileAtomic: (from: string, path: string, mode: number) => this.addFile(path, this.fs.readFile(from), mode),
    chmod: (path: string, mode: number) => {
      this.files.get(path)!.mode = mode;
    },
    makeDir: (path: string, mode: number) => this.addDir(path, mode),
    remove: (path: string) => {
      for (const k of [...this.files.keys()]) if (k === path || k.startsWith(`${path}/`)) this.files.delete(k);
    },
    list: (dir: string) => [...this.files.keys()].filter((k) => k.startsWith(`${dir}/`) && !k.slice(dir.length + 1).includes('/')).map((k) => k.slice(dir.length + 1)),
  };

  commands = {
    run: (argv: readonly string[]) => {
      const line = argv.join(' ');
      this.ran.push(line);
      return this.exitCodes.get(line) ?? 0;
    },
    succeeds: (argv: readonly string[]) => this.succeeding.has(argv.join(' ')),
    startBackground: (argv: readonly string[], env: NodeJS.ProcessEnv, outputFile: string): BackgroundProcess => {
      const pid = this.nextPid++;
      this.started.push({ argv, env, outputFile });
      this.alive.add(pid);
      if (this.writesPidFile) this.addFile(this.writesPidFile, `${pid}\n`, 0o600);
      return { pid, exited: () => !this.alive.has(pid) };
    },
  };

  readonly machine = {
    hostOs: 'linux' as 'linux' | 'windows',
    isAdmin: () => this.opts.admin ?? true,
    systemdBooted: () => this.opts.systemd ?? false,
    initName: () => 'tini',
    processAlive: (pid: number) => this.alive.has(pid),
    kill: (pid: number) => {
      this.killed.push(pid);
      this.alive.delete(pid);
    },
    sleep: async () => undefined,
    scratchDir: () => '/tmp/scratch',
  };
}
