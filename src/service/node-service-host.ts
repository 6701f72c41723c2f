// The real ServiceHost: node:fs, child processes, and this machine's facts.
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, closeSync, copyFileSync, existsSync, lstatSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sleep } from '../common/sleep.js';
import type { BackgroundProcess, CommandRunner, MachineFacts, PathInfo, ServiceFs, ServiceHost } from './service-host.js';

export const nodeServiceFs: ServiceFs = {
  stat(path: string): PathInfo | undefined {
    try {
      const s = statSync(path);
      return { kind: s.isFile() ? 'file' : s.isDirectory() ? 'dir' : 'other', mode: s.mode & 0o7777 };
    } catch {
      return undefined;
    }
  },
  present(path: string): boolean {
    try {
      lstatSync(path);
      return true;
    } catch {
      return false;
    }
  },
  readFile: (path) => readFileSync(path),
  writeFileAtomic(path, data, mode) {
    const partial = `${path}.new.${process.pid}`;
    writeFileSync(partial, data, { mode });
    chmodSync(partial, mode);
    renameSync(partial, path);
  },
  copyFileAtomic(from, path, mode) {
    const partial = `${path}.new.${process.pid}`;
    copyFileSync(from, partial);
    chmodSync(partial, mode);
    renameSync(partial, path);
  },
  chmod: (path, mode) => chmodSync(path, mode),
  makeDir(path, mode) {
    mkdirSync(path, { recursive: true });
    chmodSync(path, mode);
  },
  remove: (path) => rmSync(path, { recursive: true, force: true }),
  list: (dir) => readdirSync(dir),
};

export const nodeCommandRunner: CommandRunner = {
  run(argv) {
    const r = spawnSync(argv[0]!, argv.slice(1), { stdio: 'inherit' });
    return r.error ? 127 : (r.status ?? 1);
  },
  succeeds(argv) {
    const r = spawnSync(argv[0]!, argv.slice(1), { stdio: 'ignore' });
    return !r.error && r.status === 0;
  },
  startBackground(argv, env, outputFile): BackgroundProcess {
    const fd = openSync(outputFile, 'a');
    try {
      // detached: its own session, so it outlives this command and the terminal it ran in (nohup)
      const child = spawn(argv[0]!, argv.slice(1), { detached: true, stdio: ['ignore', fd, fd], env });
      let exited = false;
      child.on('exit', () => (exited = true));
      child.on('error', () => (exited = true));
      child.unref();
      return { pid: child.pid ?? -1, exited: () => exited || child.pid === undefined };
    } finally {
      closeSync(fd);
    }
  },
};

function zombie(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) === 'Z';
  } catch {
    return false;
  }
}

export function nodeMachineFacts(): MachineFacts {
  const hostOs = process.platform === 'win32' ? 'windows' : 'linux';
  let scratch: string | undefined;
  return {
    hostOs,
    isAdmin: () => (hostOs === 'linux' ? process.getuid?.() === 0 : nodeCommandRunner.succeeds(['net', 'session'])),
    systemdBooted: () => existsSync('/run/systemd/system'),
    initName() {
      try {
        return readFileSync('/proc/1/comm', 'utf8').trim() || 'unknown';
      } catch {
        return 'unknown';
      }
    },
    processAlive(pid) {
      try {
        process.kill(pid, 0);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
      }
      return !zombie(pid);
    },
    kill(pid) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone already
      }
    },
    sleep,
    scratchDir(create) {
      if (!create) return join(tmpdir(), `hivemind-install.${process.pid}`);
      scratch ??= mkdtempSync(join(tmpdir(), 'hivemind-install.'));
      return scratch;
    },
  };
}

export function nodeServiceHost(stdout: NodeJS.WritableStream, stderr: NodeJS.WritableStream, env: NodeJS.ProcessEnv): ServiceHost {
  return {
    fs: nodeServiceFs,
    commands: nodeCommandRunner,
    machine: nodeMachineFacts(),
    out: (line) => stdout.write(`${line}\n`),
    err: (line) => stderr.write(`${line}\n`),
    env,
  };
}
