// Which container engine answers on the node's socket: Docker, rootful Podman or rootless Podman,
// decided from what the engine says of itself (GET /version, /info, and Podman's /libpod/info),
// with what it enforces (engine-limits.ts). Pure: the answers come in as an EngineReport.
import type { LimitKind } from '../protocol/gen/hivemind/v1/common.js';
import type { EngineName } from '../protocol/limit-rules.js';
import { cgroupVersionOf, decideLimits } from './engine-limits.js';

/** What the engine says of itself, as read by ContainerEngine.describe. */
export interface EngineReport {
  /** GET /version: Version and the names of its Components (Podman's: "Podman Engine"; Docker's: "Engine"). */
  version: string;
  apiVersion: string;
  components: readonly string[];
  /** GET /info: "1" or "2" (Podman's compat API also says "1"/"2"; empty when not said). */
  cgroupVersion: string;
  /** GET /info: "cgroupfs", "systemd" or "none". */
  cgroupDriver: string;
  /** GET /info: e.g. "name=seccomp,profile=default", "name=rootless" (Docker and Podman alike). */
  securityOptions: readonly string[];
  /** GET /info: whether the kernel and engine support these limits (absent: not said). */
  memoryLimit?: boolean;
  cpuCfsQuota?: boolean;
  pidsLimit?: boolean;
  /** Podman only (GET /libpod/info): rootless, and the cgroup controllers available to its containers. */
  podman?: { rootless: boolean; cgroupControllers?: readonly string[] };
}

export interface EngineIdentity {
  engine: EngineName;
  /** "Docker" / "Podman", for people. */
  product: 'Docker' | 'Podman';
  rootless: boolean;
  version: string;
  cgroupVersion: string;
  cgroupDriver: string;
  /** The limits that would be dropped (NodeFacts.unenforced_limits), in LimitKind order. */
  unenforced: LimitKind[];
  /** Why those limits are not enforced, for the log and doctor; undefined when all hold. */
  unenforcedWhy?: string;
}

export function isPodman(r: Pick<EngineReport, 'components' | 'podman'>): boolean {
  return r.podman !== undefined || r.components.some((c) => /^podman engine$/i.test(c.trim()));
}

export function isRootless(r: Pick<EngineReport, 'securityOptions' | 'podman'>): boolean {
  return r.podman?.rootless ?? r.securityOptions.some((o) => o.split(',').includes('name=rootless'));
}

export function identifyEngine(r: EngineReport): EngineIdentity {
  const podman = isPodman(r);
  const rootless = isRootless(r);
  const limits = decideLimits({ rootless, cgroupVersion: r.cgroupVersion, cgroupDriver: r.cgroupDriver, controllers: r.podman?.cgroupControllers, memoryLimit: r.memoryLimit, cpuCfsQuota: r.cpuCfsQuota, pidsLimit: r.pidsLimit });
  return {
    engine: podman ? (rootless ? 'podman-rootless' : 'podman') : 'docker',
    product: podman ? 'Podman' : 'Docker',
    rootless,
    version: r.version,
    cgroupVersion: r.cgroupVersion,
    cgroupDriver: r.cgroupDriver,
    unenforced: limits.unenforced,
    ...(limits.why ? { unenforcedWhy: limits.why } : {}),
  };
}

/** "rootless Podman 4.3.1 (cgroup v1, cgroupfs)" */
export function describeEngine(id: EngineIdentity): string {
  const cgroup = [id.cgroupVersion ? `cgroup v${cgroupVersionOf(id.cgroupVersion)}` : '', id.cgroupDriver].filter(Boolean).join(', ');
  return `${id.rootless ? 'rootless' : 'rootful'} ${id.product} ${id.version}${cgroup ? ` (${cgroup})` : ''}`;
}
