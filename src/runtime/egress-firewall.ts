// The egress firewall: the worker's own iptables chains that keep the egress bridge away from the
// host, the LAN, the tunnel and the masters (egress-policy.ts says what; docs/egress.md why here).
// It is installed at start and checked rule by rule; a node that cannot install it does not offer
// egress. It is never removed while the worker runs nor when it stops: tasks it reattaches after a
// restart keep the bridge, and the rules only ever restrict that bridge. `remove` is for tests and
// for an operator turning egress off.
import { execFile } from 'node:child_process';
import { EgressUnavailableError } from '../common/errors.js';
import { accountingRules, egressJumps, egressRules, parseAccounting, type EgressNames } from './egress-policy.js';

/** Runs iptables (filter table) with these arguments; resolves with its exit code, stdout and stderr. */
export interface IptablesRunner {
  run(args: readonly string[], signal?: AbortSignal): Promise<{ code: number; stderr: string; stdout?: string }>;
}

/** The host's iptables; `prefix` runs it elsewhere (tests: `ip netns exec NAME`). */
export class ExecIptables implements IptablesRunner {
  constructor(private readonly prefix: readonly string[] = [], private readonly binary = 'iptables') {}

  run(args: readonly string[], signal?: AbortSignal): Promise<{ code: number; stderr: string; stdout: string }> {
    const argv = [...this.prefix, this.binary, '-w', '5', ...args];
    return new Promise((resolve) => {
      execFile(argv[0]!, argv.slice(1), { signal, timeout: 15_000, maxBuffer: 4 * 1024 * 1024 }, (err, stdout, stderr) => {
        const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : 127) : 0;
        resolve({ code, stdout: String(stdout), stderr: String(stderr || (err && code === 127 ? err.message : '')).trim() });
      });
    });
  }
}

export class EgressFirewall {
  constructor(private readonly iptables: IptablesRunner, private readonly names: EgressNames, private readonly extraBlocked: readonly string[]) {}

  private async must(args: readonly string[], signal?: AbortSignal): Promise<void> {
    const r = await this.iptables.run(args, signal);
    if (r.code !== 0) throw new EgressUnavailableError(`iptables ${args.join(' ')} failed (exit ${r.code}): ${r.stderr || 'no message'}`);
  }

  private async has(args: readonly string[], signal?: AbortSignal): Promise<boolean> {
    return (await this.iptables.run(args, signal)).code === 0;
  }

  /** Creates or refills both chains and adds the jumps (first in DOCKER-USER and INPUT), then checks every rule. */
  async install(signal?: AbortSignal): Promise<void> {
    const probe = await this.iptables.run(['-L', 'DOCKER-USER', '-n'], signal);
    if (probe.code === 127) throw new EgressUnavailableError(`iptables is not installed or not runnable: ${probe.stderr}`);
    if (probe.code !== 0) {
      throw new EgressUnavailableError(`the DOCKER-USER chain is missing or unreadable (${probe.stderr || `exit ${probe.code}`}): Docker must manage iptables ("iptables": true in daemon.json) and the worker must run as root`);
    }
    const rules = egressRules(this.names, this.extraBlocked);
    for (const [chain, list] of [[this.names.forwardChain, rules.forward], [this.names.inputChain, rules.input]] as const) {
      if (!(await this.has(['-L', chain, '-n'], signal))) await this.must(['-N', chain], signal);
      await this.must(['-F', chain], signal);
      for (const r of list) await this.must(['-A', chain, ...r], signal);
    }
    // Not flushed: the counters of tasks a restarted worker reattaches to go on (track resets a new task's).
    if (!(await this.has(['-L', this.names.accountingChain, '-n'], signal))) await this.must(['-N', this.names.accountingChain], signal);
    for (const j of egressJumps(this.names)) {
      if (!(await this.has(['-C', j.chain, ...j.rule], signal))) await this.must(['-I', j.chain, '1', ...j.rule], signal);
    }
    await this.verify(signal);
  }

  /** Starts counting a task's bytes by its address; `fresh` drops what an earlier holder of the address left. */
  async track(ip: string, fresh: boolean, signal?: AbortSignal): Promise<void> {
    // The task is already running: as few iptables runs as can be (each one a process, and each
    // waits for the xtables lock Docker holds while it starts containers).
    const r = accountingRules(ip);
    for (const rule of [r.tx, r.rx]) {
      const absent = fresh ? await this.deleteAll(this.names.accountingChain, rule, signal) : !(await this.has(['-C', this.names.accountingChain, ...rule], signal));
      if (absent) await this.must(['-A', this.names.accountingChain, ...rule], signal);
    }
  }

  /** The bytes counted for the address so far. */
  async counts(ip: string, signal?: AbortSignal): Promise<{ rxBytes: number; txBytes: number }> {
    const r = await this.iptables.run(['-L', this.names.accountingChain, '-n', '-v', '-x'], signal);
    if (r.code !== 0) throw new EgressUnavailableError(`reading the byte counters failed (exit ${r.code}): ${r.stderr}`);
    return parseAccounting(r.stdout ?? '', ip);
  }

  /** Stops counting the address (its rules removed). */
  async untrack(ip: string, signal?: AbortSignal): Promise<void> {
    const r = accountingRules(ip);
    for (const rule of [r.tx, r.rx]) await this.deleteAll(this.names.accountingChain, rule, signal);
  }

  /** Deletes every copy of the rule (at most 16); whether none is left. */
  private async deleteAll(chain: string, rule: readonly string[], signal?: AbortSignal): Promise<boolean> {
    for (let i = 0; i < 16; i++) {
      if (!(await this.has(['-C', chain, ...rule], signal))) return true;
      await this.must(['-D', chain, ...rule], signal);
    }
    return !(await this.has(['-C', chain, ...rule], signal));
  }

  /** Throws EgressUnavailableError naming the first rule that is not in place. */
  async verify(signal?: AbortSignal): Promise<void> {
    const rules = egressRules(this.names, this.extraBlocked);
    const want = [
      ...rules.forward.map((r) => [this.names.forwardChain, r] as const),
      ...rules.input.map((r) => [this.names.inputChain, r] as const),
      ...egressJumps(this.names).map((j) => [j.chain, j.rule] as const),
    ];
    for (const [chain, r] of want) {
      if (!(await this.has(['-C', chain, ...r], signal))) throw new EgressUnavailableError(`the egress rule "iptables -A ${chain} ${r.join(' ')}" is not in place after installing it`);
    }
  }

  /** Removes the jumps and both chains (whatever of them exists). */
  async remove(signal?: AbortSignal): Promise<void> {
    for (const j of egressJumps(this.names)) await this.deleteAll(j.chain, j.rule, signal);
    for (const chain of [this.names.forwardChain, this.names.inputChain, this.names.accountingChain]) {
      if (!(await this.has(['-L', chain, '-n'], signal))) continue;
      await this.must(['-F', chain], signal);
      await this.must(['-X', chain], signal);
    }
  }
}
