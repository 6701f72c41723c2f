// The node's bandwidth cap on each egress task (--egress-rate), enforced with tc token buckets
// (tbf), each on the sending side of the task's veth pair: the host end for what goes to the
// container (its downloads), the container's eth0, from the host through its network namespace,
// for what it sends (uploads). Not an ingress policer: act_police is often not built (it is not on
// this project's CI kernel), tbf always is; and the task, without CAP_NET_ADMIN, cannot remove a
// qdisc of its own eth0. Applied once the container runs: its first few ms are not capped.
import { readdir, readFile } from 'node:fs/promises';
import { execFile } from 'node:child_process';
import { ConfigError, EgressUnavailableError } from '../common/errors.js';
import { MAX_EGRESS_RATE_BPS, MIN_EGRESS_RATE_BPS } from '../protocol/task-spec-rules.js';

/** "10mbit", "512kbit", "1gbit", "2000000" (bits per second) to bits per second. */
export function parseRate(v: string, what = '--egress-rate'): number {
  const m = /^(\d+(?:\.\d+)?)\s*(bit|kbit|mbit|gbit)?$/i.exec(v.trim());
  const scale = { bit: 1, kbit: 1e3, mbit: 1e6, gbit: 1e9 } as const;
  const bps = m ? Math.round(Number(m[1]) * scale[(m[2]?.toLowerCase() ?? 'bit') as keyof typeof scale]) : NaN;
  if (!Number.isFinite(bps) || bps < MIN_EGRESS_RATE_BPS || bps > MAX_EGRESS_RATE_BPS) throw new ConfigError(`${what} "${v}" must be a rate from 8kbit to 100gbit, such as 10mbit`);
  return bps;
}

/** The tc arguments of one direction's token bucket on `dev` at `bps`. */
export function tbfArgs(dev: string, bps: number): string[] {
  // The bucket holds at least 20 ms at the rate and never less than 32 KiB (a few full-size frames).
  const burst = Math.max(32 * 1024, Math.ceil(bps / 8 / 50));
  return ['qdisc', 'replace', 'dev', dev, 'root', 'tbf', 'rate', `${bps}bit`, 'burst', String(burst), 'latency', '50ms'];
}

/** The commands that cap a container (main process `pid`, host-side veth `veth`) at `bps` both ways. */
export function rateCommands(veth: string, pid: number, bps: number): { file: string; args: string[] }[] {
  return [
    { file: 'tc', args: tbfArgs(veth, bps) },
    { file: 'nsenter', args: ['-t', String(pid), '-n', 'tc', ...tbfArgs('eth0', bps)] },
  ];
}

/** Runs a command; resolves with its exit code and stderr. */
export type CommandRun = (file: string, args: readonly string[]) => Promise<{ code: number; stderr: string }>;

export const execCommand: CommandRun = (file, args) =>
  new Promise((resolve) => {
    execFile(file, args, { timeout: 10_000 }, (err, _stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 127) : 0;
      resolve({ code, stderr: String(stderr || (err ? err.message : '')).trim() });
    });
  });

/** The host-side interface of a running container's eth0, from its main process's pid. */
export async function hostVethOf(pid: number): Promise<string> {
  const peer = Number((await readFile(`/proc/${pid}/root/sys/class/net/eth0/iflink`, 'utf8')).trim());
  for (const name of await readdir('/sys/class/net')) {
    const index = Number((await readFile(`/sys/class/net/${name}/ifindex`, 'utf8').catch(() => '')).trim());
    if (index === peer) return name;
  }
  throw new EgressUnavailableError(`no host interface has index ${peer} (the peer of the container's eth0)`);
}

/** The cap a task gets: the lower of the node's (--egress-rate) and the task's own (spec.egress_rate_bps); undefined: none. */
export function effectiveRate(nodeBps: number | undefined, taskBps: number | undefined): number | undefined {
  const caps = [nodeBps, taskBps].filter((b): b is number => b !== undefined && b > 0);
  return caps.length ? Math.min(...caps) : undefined;
}

export class EgressShaper {
  constructor(
    /** The node's cap on every egress task (--egress-rate); undefined: only tasks asking for one are capped. */
    readonly nodeBps: number | undefined,
    private readonly run: CommandRun = execCommand,
    private readonly vethOf: (pid: number) => Promise<string> = hostVethOf,
  ) {}

  /**
   * Caps the container whose main process is `pid` at the lower of the node's and the task's
   * rate; undefined when neither sets one. Throws EgressUnavailableError naming the failed command.
   */
  async apply(pid: number, taskBps?: number): Promise<{ dev: string; bps: number } | undefined> {
    const bps = effectiveRate(this.nodeBps, taskBps);
    if (bps === undefined) return undefined;
    const dev = await this.vethOf(pid);
    for (const c of rateCommands(dev, pid, bps)) {
      const r = await this.run(c.file, c.args);
      if (r.code !== 0) throw new EgressUnavailableError(`${c.file} ${c.args.join(' ')} failed (exit ${r.code}): ${r.stderr}`);
    }
    return { dev, bps };
  }
}
