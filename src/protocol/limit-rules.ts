// The limits a node's engine may fail to enforce (NodeFacts.unenforced_limits) and the engine it
// names (NodeFacts.engine): their names, which limits a task sets, and whether a node may take it.
// Shared by the master's placement, the worker's refusal of a task it cannot bound, and the CLI.
import { LimitKind, type ResourceLimits } from './gen/hivemind/v1/common.js';

export type LimitName = 'cpus' | 'memory' | 'pids';
export const LIMIT_KINDS: readonly LimitKind[] = [LimitKind.LIMIT_KIND_CPUS, LimitKind.LIMIT_KIND_MEMORY, LimitKind.LIMIT_KIND_PIDS];

const NAMES: Record<number, LimitName> = { [LimitKind.LIMIT_KIND_CPUS]: 'cpus', [LimitKind.LIMIT_KIND_MEMORY]: 'memory', [LimitKind.LIMIT_KIND_PIDS]: 'pids' };
/** How a limit is asked for on `hivemind submit`, for the messages that name it. */
const FLAGS: Record<LimitName, string> = { cpus: '--cpus', memory: '--memory', pids: '--pids' };

export function limitName(k: LimitKind): string {
  return NAMES[k] ?? `limit ${Number(k)}`;
}

/** "memory (--memory) and pids (--pids)" */
export function describeLimits(kinds: readonly LimitKind[]): string {
  const parts = kinds.map((k) => (NAMES[k] ? `${NAMES[k]} (${FLAGS[NAMES[k]]})` : limitName(k)));
  return parts.length <= 1 ? (parts[0] ?? '') : `${parts.slice(0, -1).join(', ')} and ${parts.at(-1)}`;
}

/**
 * The limits a task sets explicitly (> 0). A limit left at 0 is the node's default, which the node
 * applies when it can: a task that sets none asked for no bound and may run on any node.
 */
export function limitsSetBy(l: Pick<ResourceLimits, 'cpus' | 'memoryBytes' | 'pids'> | undefined): LimitKind[] {
  if (!l) return [];
  const out: LimitKind[] = [];
  if (l.cpus > 0) out.push(LimitKind.LIMIT_KIND_CPUS);
  if (l.memoryBytes > 0) out.push(LimitKind.LIMIT_KIND_MEMORY);
  if (l.pids > 0) out.push(LimitKind.LIMIT_KIND_PIDS);
  return out;
}

/** The limits of `needed` that a node not enforcing `unenforced` would drop; empty: it may take the task. */
export function limitsNotHeld(needed: readonly LimitKind[] | undefined, unenforced: readonly LimitKind[] | undefined): LimitKind[] {
  if (!needed?.length || !unenforced?.length) return [];
  return needed.filter((k) => unenforced.includes(k));
}

/** What is wrong with a node's NodeFacts.unenforced_limits (known kinds, each once), or undefined. */
export function unenforcedLimitsViolation(field: string, kinds: readonly LimitKind[]): string | undefined {
  if (kinds.length > LIMIT_KINDS.length) return `${field}: ${kinds.length} entries, over the ${LIMIT_KINDS.length} limits there are`;
  const seen = new Set<LimitKind>();
  for (const k of kinds) {
    if (!LIMIT_KINDS.includes(k)) return `${field}: ${Number(k)} is not a limit kind (cpus = 1, memory = 2, pids = 3)`;
    if (seen.has(k)) return `${field}: ${limitName(k)} is listed twice`;
    seen.add(k);
  }
  return undefined;
}

/** NodeFacts.engine: the container engine a node runs tasks on. */
export type EngineName = 'docker' | 'podman' | 'podman-rootless';
export const ENGINE_NAMES: readonly EngineName[] = ['docker', 'podman', 'podman-rootless'];

/** An empty engine is a node older than the field, which ran on Docker. */
export function engineShown(engine: string | undefined): string {
  return engine || 'docker';
}

/** What is wrong with a node's NodeFacts.engine, or undefined (empty is allowed: an older node). */
export function engineViolation(field: string, engine: string): string | undefined {
  if (engine === '' || (ENGINE_NAMES as readonly string[]).includes(engine)) return undefined;
  return `${field}: ${JSON.stringify(engine.slice(0, 40))} is not an engine a node runs on (${ENGINE_NAMES.join(', ')})`;
}
