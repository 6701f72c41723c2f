// What the fault and hostile-input tests did, for the summary that `npm run test:faults` and
// `npm test` print (scripts/fault-summary.ts). Each record is one JSON line appended to the file
// named by HIVEMIND_FAULT_LEDGER; without it, recording does nothing. A test records what it
// observed *before* asserting, so a failure still shows in the counts. A scenario with several
// tasks may record a line per task under the same name: the summary counts it once.
import { appendFileSync } from 'node:fs';

export interface ScenarioRecord {
  kind: 'scenario';
  name: string;
  /** Faults injected (kills, outages, restarts, a full disk...). */
  faults: number;
  /** Tasks submitted in the scenario that should be delivered. */
  submitted: number;
  /** Tasks that ended with their result at the master, verified. */
  delivered: number;
  /** Tasks whose result never arrived (or arrived wrong). */
  lost: number;
  /** Tasks run to completion or stored more than once. */
  duplicated: number;
}

export interface HostileRecord {
  kind: 'hostile';
  name: string;
  /** Hostile inputs tried. */
  tried: number;
  /** How many of them got through (accepted, escaped the sandbox, leaked a secret...). */
  escaped: number;
}

export type LedgerRecord = ScenarioRecord | HostileRecord;

export const LEDGER_ENV = 'HIVEMIND_FAULT_LEDGER';

function append(r: LedgerRecord): void {
  const file = process.env[LEDGER_ENV];
  if (file) appendFileSync(file, `${JSON.stringify(r)}\n`);
}

export function recordScenario(r: Omit<ScenarioRecord, 'kind'>): void {
  append({ kind: 'scenario', ...r });
}

/** One hostile input (or a batch of `tried`), and whether it got through. */
export function recordHostile(name: string, escaped: boolean | number, tried = 1): void {
  append({ kind: 'hostile', name, tried, escaped: typeof escaped === 'number' ? escaped : escaped ? 1 : 0 });
}

/** What a failover scenario reads of a task once it ended (`hivemind get ID --json`). */
export interface EndedTaskInfo {
  state: string;
  attempt: number;
  events: { state: string; attempt: number }[];
}

const END_STATES = new Set(['succeeded', 'failed', 'cancelled']);

/**
 * One task of a failover scenario: delivered when `delivered` (it succeeded with the expected
 * result, as the caller checked), and duplicated when it ended more than once, its result was
 * stored more than once in `masterLogs`, or it needed a second attempt. Problems name the task.
 */
export function judgeFailoverTask(id: string, info: EndedTaskInfo, delivered: boolean, masterLogs: string, detail: string): { delivered: boolean; duplicated: boolean; problems: string[] } {
  const problems: string[] = [];
  if (!delivered) problems.push(`${id}: ${JSON.stringify(info)} ${detail}`);
  const ends = info.events.filter((e) => END_STATES.has(e.state)).length;
  const stored = masterLogs.split('\n').filter((l) => l.includes('"result stored"') && l.includes(id)).length;
  const duplicated = ends > 1 || stored > 1 || info.attempt !== 1;
  if (duplicated) problems.push(`${id} ran or was stored more than once: attempt ${info.attempt}, ${ends} ends, stored ${stored}`);
  return { delivered, duplicated, problems };
}
