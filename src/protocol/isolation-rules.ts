// Isolation levels (docs/security.md): their names in flags, configs and listings, and which node
// may take which task. Pure; shared by the master (placement), the node (it checks an assignment
// again) and the CLI.
import { Isolation } from './gen/hivemind/v1/common.js';

export type IsolationName = 'runc' | 'gvisor';

export const ISOLATION_NAMES: readonly IsolationName[] = ['runc', 'gvisor'];

const BY_NAME: Record<IsolationName, Isolation> = { runc: Isolation.ISOLATION_RUNC, gvisor: Isolation.ISOLATION_GVISOR };

export function isIsolationName(s: string): s is IsolationName {
  return (ISOLATION_NAMES as readonly string[]).includes(s);
}

export function isolationOf(name: IsolationName): Isolation {
  return BY_NAME[name];
}

/** The name shown to users; UNSPECIFIED is runc (today's behaviour), an unknown number shows as such. */
export function isolationName(i: Isolation): string {
  if (i === Isolation.ISOLATION_GVISOR) return 'gvisor';
  if (i === Isolation.ISOLATION_RUNC || i === Isolation.ISOLATION_UNSPECIFIED) return 'runc';
  return `unknown(${Number(i)})`;
}

/**
 * Whether a node offering `offered` may take a task needing `need`. A task that names no isolation
 * goes anywhere (a gVisor-only node runs it under gVisor); one that names runc needs a node that
 * offers runc: an empty list is a node older than isolations, which runs everything under runc.
 */
export function offersIsolation(need: Isolation | undefined, offered: readonly Isolation[] | undefined): boolean {
  if (need === undefined || need === Isolation.ISOLATION_UNSPECIFIED) return true;
  if (!offered || offered.length === 0) return need === Isolation.ISOLATION_RUNC;
  return offered.includes(need);
}

/** What is wrong with a node's NodeFacts.isolations (known values, each once), or undefined. */
export function offeredIsolationsViolation(field: string, offered: readonly Isolation[]): string | undefined {
  if (offered.length > ISOLATION_NAMES.length) return `${field}: ${offered.length} entries, over the ${ISOLATION_NAMES.length} isolations there are`;
  const seen = new Set<Isolation>();
  for (const i of offered) {
    if (i !== Isolation.ISOLATION_RUNC && i !== Isolation.ISOLATION_GVISOR) return `${field}: ${Number(i)} is not an isolation a node offers (runc = 1, gvisor = 2)`;
    if (seen.has(i)) return `${field}: ${isolationName(i)} is listed twice`;
    seen.add(i);
  }
  return undefined;
}
