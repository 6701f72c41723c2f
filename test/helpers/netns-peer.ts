// One network namespace joined to the root namespace by a veth pair on a private /30 (10.201.x.y):
// a host that the test's processes in the root namespace (master, worker, CLI) reach at `address`,
// with no route anywhere else. Created and deleted by the test itself.
import { execFileSync, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { deleteNamespace } from './netns.js';

function sh(args: string[]): string {
  return execFileSync(args[0]!, args.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] }).toString();
}

let peerSeq = 0;

export class PeerNamespace {
  private constructor(
    readonly ns: string,
    /** The veth end left in the root namespace (its peer is `eth0` inside `ns`). */
    readonly rootLink: string,
    /** The namespace's address (no prefix). */
    readonly address: string,
    /** The root namespace's address on the link. */
    readonly rootAddress: string,
  ) {}

  static create(): PeerNamespace {
    // pid and a counter pick the /30, so parallel test processes do not share a subnet or a name.
    const seq = peerSeq++;
    const tag = `${process.pid % 100000}${String.fromCharCode(97 + (seq % 26))}`;
    const base = 4 * ((process.pid + seq) % 64);
    const subnet = `10.201.${Math.floor(process.pid / 64) % 256}`;
    const peer = new PeerNamespace(`hmp${tag}`, `hmp${tag}r`, `${subnet}.${base + 2}`, `${subnet}.${base + 1}`);
    try {
      sh(['ip', 'netns', 'add', peer.ns]);
      sh(['ip', 'link', 'add', peer.rootLink, 'type', 'veth', 'peer', 'name', `hmp${tag}n`, 'netns', peer.ns]);
      sh(['ip', 'address', 'add', `${peer.rootAddress}/30`, 'dev', peer.rootLink]);
      sh(['ip', 'link', 'set', peer.rootLink, 'up']);
      sh(['ip', '-n', peer.ns, 'link', 'set', 'lo', 'up']);
      sh(['ip', '-n', peer.ns, 'link', 'set', `hmp${tag}n`, 'name', 'eth0']);
      sh(['ip', '-n', peer.ns, 'address', 'add', `${peer.address}/30`, 'dev', 'eth0']);
      sh(['ip', '-n', peer.ns, 'link', 'set', 'eth0', 'up']);
    } catch (err) {
      peer.destroy();
      throw err;
    }
    return peer;
  }

  /** Spawns a long-running process inside the namespace. */
  spawn(file: string, args: string[], opts: SpawnOptions = {}): ChildProcess {
    return spawn('ip', ['netns', 'exec', this.ns, file, ...args], { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
  }

  /** Kills what still runs in the namespace, then deletes it (which deletes both veth ends). */
  destroy(): void {
    deleteNamespace(this.ns);
    try {
      sh(['ip', 'link', 'del', this.rootLink]);
    } catch {
      // went with the namespace
    }
  }
}
