// Which of a task's CPU, memory and pids limits the node's engine enforces. A rootful engine
// enforces what the kernel supports; a rootless one (Podman as an ordinary user) only what cgroup
// v2 delegates to that user through systemd: on cgroup v1 nothing, and Podman then drops the limits
// with a warning while the container runs anyway. Pure: engine-identity.ts feeds it /info's answers.
import { LimitKind } from '../protocol/gen/hivemind/v1/common.js';

export interface CgroupView {
  rootless: boolean;
  /** /info's CgroupVersion: "1", "2" (or "v1", "v2"); empty when not said. */
  cgroupVersion: string;
  cgroupDriver: string;
  /** Podman's cgroup controllers available to its containers (/libpod/info host.cgroupControllers); absent: not said. */
  controllers?: readonly string[] | undefined;
  memoryLimit?: boolean | undefined;
  cpuCfsQuota?: boolean | undefined;
  pidsLimit?: boolean | undefined;
}

export interface LimitDecision {
  /** In LimitKind order; empty: every limit holds. */
  unenforced: LimitKind[];
  /** Why, for the log and doctor; undefined when every limit holds. */
  why?: string;
}

export const ROOTLESS_CGROUP_V1_FIX = 'rootless Podman on cgroup v1 cannot enforce memory, CPU or pids limits: use cgroup v2 with the cpu, memory and pids controllers delegated to the user (systemd), or rootful Podman or Docker';

const ALL: LimitKind[] = [LimitKind.LIMIT_KIND_CPUS, LimitKind.LIMIT_KIND_MEMORY, LimitKind.LIMIT_KIND_PIDS];
const CONTROLLER: Record<number, string> = { [LimitKind.LIMIT_KIND_CPUS]: 'cpu', [LimitKind.LIMIT_KIND_MEMORY]: 'memory', [LimitKind.LIMIT_KIND_PIDS]: 'pids' };

/** /info's cgroup version as a bare number: "1", "2" ("v1"/"v2" in some answers); empty when not said. */
export function cgroupVersionOf(v: string): string {
  return v.trim().replace(/^v/i, '');
}

export function decideLimits(c: CgroupView): LimitDecision {
  const flag: Record<number, boolean | undefined> = { [LimitKind.LIMIT_KIND_CPUS]: c.cpuCfsQuota, [LimitKind.LIMIT_KIND_MEMORY]: c.memoryLimit, [LimitKind.LIMIT_KIND_PIDS]: c.pidsLimit };
  if (c.rootless) {
    if (cgroupVersionOf(c.cgroupVersion) !== '2') {
      return { unenforced: [...ALL], why: `the engine runs rootless on cgroup v${cgroupVersionOf(c.cgroupVersion) || '1'}, where an ordinary user gets no cgroup to limit containers with` };
    }
    // Rootless on cgroup v2: only systemd hands the user a delegated subtree.
    if (c.cgroupDriver !== 'systemd') {
      return { unenforced: [...ALL], why: `the engine runs rootless on cgroup v2 with the ${c.cgroupDriver || 'unknown'} cgroup driver: only the systemd driver gets a delegated cgroup` };
    }
    if (c.controllers) {
      const missing = ALL.filter((k) => !c.controllers!.includes(CONTROLLER[k]!));
      return missing.length === 0 ? { unenforced: [] } : { unenforced: missing, why: `the ${missing.map((k) => CONTROLLER[k]).join(', ')} cgroup controller${missing.length > 1 ? 's are' : ' is'} not delegated to the engine's user` };
    }
  }
  const off = ALL.filter((k) => flag[k] === false);
  return off.length === 0 ? { unenforced: [] } : { unenforced: off, why: `the engine reports no support for ${off.map((k) => CONTROLLER[k]).join(', ')} limits (/info)` };
}
