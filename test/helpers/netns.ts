// Test hosts as Linux network namespaces joined by veth links to a bridge in a "switch"
// namespace, all created (and deleted) by the test itself. Traffic never leaves these namespaces.
import { execFileSync, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import type { CommandRunner } from '../../src/tunnel/command-runner.js';
import { execaRunner } from '../../src/tunnel/command-runner.js';

function sh(args: string[]): string {
  return execFileSync(args[0]!, args.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] }).toString();
}

export interface LabHost {
  name: string;
  ns: string;
  /** Underlay address (no prefix). */
  ip: string;
}

let labSeq = 0;

export class NetLab {
  private constructor(readonly id: string, readonly switchNs: string, readonly hosts: Map<string, LabHost>) {}

  /** Creates one namespace per host name, all on 192.168.<n>.0/24 through a bridge. */
  static create(hostNames: string[]): NetLab {
    const id = `${process.pid % 10000}${String.fromCharCode(97 + (labSeq++ % 26))}`;
    const subnet = 100 + ((process.pid + labSeq) % 100);
    const switchNs = `hmt${id}-sw`;
    const hosts = new Map<string, LabHost>();
    const lab = new NetLab(id, switchNs, hosts);
    try {
      sh(['ip', 'netns', 'add', switchNs]);
      sh(['ip', '-n', switchNs, 'link', 'add', 'br0', 'type', 'bridge']);
      sh(['ip', '-n', switchNs, 'link', 'set', 'br0', 'up']);
      hostNames.forEach((name, i) => {
        const ns = `hmt${id}-${name}`;
        const ip = `192.168.${subnet}.${i + 1}`;
        sh(['ip', 'netns', 'add', ns]);
        hosts.set(name, { name, ns, ip });
        const a = `h${id}${i}`;
        const b = `s${id}${i}`;
        sh(['ip', 'link', 'add', a, 'netns', ns, 'type', 'veth', 'peer', 'name', b, 'netns', switchNs]);
        sh(['ip', '-n', switchNs, 'link', 'set', b, 'master', 'br0', 'up']);
        sh(['ip', '-n', ns, 'link', 'set', 'lo', 'up']);
        sh(['ip', '-n', ns, 'link', 'set', a, 'name', 'eth0']);
        sh(['ip', '-n', ns, 'address', 'add', `${ip}/24`, 'dev', 'eth0']);
        sh(['ip', '-n', ns, 'link', 'set', 'eth0', 'up']);
      });
    } catch (err) {
      lab.destroy();
      throw err;
    }
    return lab;
  }

  host(name: string): LabHost {
    const h = this.hosts.get(name);
    if (!h) throw new Error(`no host ${name} in the lab`);
    return h;
  }

  /** Runs a command in a host's namespace and returns stdout. */
  exec(host: string, args: string[]): string {
    return sh(['ip', 'netns', 'exec', this.host(host).ns, ...args]);
  }

  /** A CommandRunner whose programs run inside a host's namespace. */
  runner(host: string): CommandRunner {
    const ns = this.host(host).ns;
    return { run: (file, args, opts) => execaRunner.run('ip', ['netns', 'exec', ns, file, ...args], opts) };
  }

  /** Spawns a long-running process inside a host's namespace. */
  spawn(host: string, file: string, args: string[], opts: SpawnOptions = {}): ChildProcess {
    return spawn('ip', ['netns', 'exec', this.host(host).ns, file, ...args], { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
  }

  destroy(): void {
    for (const h of this.hosts.values()) {
      // Deleting a namespace deletes its interfaces; wireguard-go exits when its link goes.
      try {
        // wireguard-go's links are plain tun devices: delete every link but lo and eth0.
        for (const link of sh(['ip', '-n', h.ns, '-o', 'link', 'show']).split('\n')) {
          const m = /^\d+: ([^:@]+)/.exec(link);
          if (m && m[1] !== 'lo' && m[1] !== 'eth0') sh(['ip', '-n', h.ns, 'link', 'del', m[1]!]);
        }
      } catch {
        // namespace already gone
      }
      deleteNamespace(h.ns);
    }
    deleteNamespace(this.switchNs);
  }
}

/** Kills what still runs in a namespace, then deletes it (and the interfaces in it); quiet if gone. */
export function deleteNamespace(ns: string): void {
  try {
    for (const pid of sh(['ip', 'netns', 'pids', ns]).split('\n').filter(Boolean)) process.kill(Number(pid), 'SIGKILL');
  } catch {
    // nothing left running, or no namespace
  }
  try {
    sh(['ip', 'netns', 'del', ns]);
  } catch {
    // already gone
  }
}
