// The `--json` shape of the protocol messages the client commands print: the message's own fields
// (camelCase, as in proto/), with every enum as the word the human output uses ("succeeded",
// "oom_killed", "file") instead of its number, and maps as plain objects. docs/cli-json.md documents
// each field; test/unit/cli-json-doc.test.ts fails when a field is added here (or to a message
// printed through here) without being documented there.
import type { NodeInfo, TaskEvent, TaskInfo } from '../protocol/gen/hivemind/v1/admin.js';
import { TaskNetwork, type DataMount, type TaskOutcome, type TaskSpec } from '../protocol/gen/hivemind/v1/common.js';
import { dataKindName } from './service-format.js';
import { outcomeName, stateName } from './task-format.js';
import { isolationName } from '../protocol/isolation-rules.js';
import { engineShown, limitName } from '../protocol/limit-rules.js';

function mapJson<V>(m: Map<string, V>): Record<string, V> {
  // Object.fromEntries defines own properties: a key named __proto__ survives (see proto-json.ts).
  return Object.fromEntries(m);
}

function dataMountJson(d: DataMount) {
  return { ...d, kind: dataKindName(d.kind) };
}

function specJson(s: TaskSpec) {
  return { ...s, env: mapJson(s.env), data: s.data.map(dataMountJson), network: networkName(s.network), ...(s.isolation ? { isolation: isolationName(s.isolation) } : {}) };
}

/** TaskSpec.network as a word: `none` (also when unset) or `egress`; a number no build knows as `unknown`. */
function networkName(n: TaskNetwork | undefined): string {
  if (n === undefined || n === TaskNetwork.TASK_NETWORK_UNSPECIFIED || n === TaskNetwork.TASK_NETWORK_NONE) return 'none';
  return n === TaskNetwork.TASK_NETWORK_EGRESS ? 'egress' : 'unknown';
}

function outcomeJson(o: TaskOutcome) {
  return { ...o, kind: outcomeName(o.kind) };
}

function eventJson(e: TaskEvent) {
  return { ...e, state: stateName(e.state) };
}

/** A task as `get`, `wait`, `cancel`, `submit --wait --json` and `tasks --json` (each element) print it. */
export function taskJson(t: TaskInfo) {
  return {
    ...t,
    spec: t.spec && specJson(t.spec),
    state: stateName(t.state),
    outcome: t.outcome && outcomeJson(t.outcome),
    events: t.events.map(eventJson),
    progress: t.progress && { ...t.progress, metrics: mapJson(t.progress.metrics) },
  };
}

/** A node as `nodes --json` prints each one. */
export function nodeJson(n: NodeInfo) {
  return { ...n, facts: n.facts && { ...n.facts, labels: mapJson(n.facts.labels), isolations: n.facts.isolations.map(isolationName), engine: engineShown(n.facts.engine), unenforcedLimits: n.facts.unenforcedLimits.map(limitName) } };
}
