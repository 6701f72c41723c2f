// docs/cli-json.md is the one description of the CLI's --json output: this checks the converter's
// output for messages with every field set against the field tables there, both ways (a field
// printed but not documented fails, as does a documented field no longer printed), and that enums
// come out as the documented words, never numbers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { NodeInfo, TaskInfo } from '../../src/protocol/gen/hivemind/v1/admin.js';
import { DataKind, Isolation, LimitKind, OutcomeKind, TaskNetwork, TaskState } from '../../src/protocol/gen/hivemind/v1/common.js';
import { nodeJson, taskJson } from '../../src/cli/json-output.js';
import { outcomeName, stateName } from '../../src/cli/task-format.js';
import { dataKindName } from '../../src/cli/service-format.js';

const DOC = join(import.meta.dirname, '..', '..', '..', 'docs', 'cli-json.md');

/** A task with every optional part present and one element in each list, so every field shows. */
export function fullTask(): TaskInfo {
  return TaskInfo.fromPartial({
    taskId: 't',
    spec: { image: 'i', command: ['c'], env: new Map([['K', 'v']]), limits: {}, data: [{ kind: DataKind.DATA_KIND_FILE }], service: {}, isolation: Isolation.ISOLATION_GVISOR, network: TaskNetwork.TASK_NETWORK_EGRESS, egressRateBps: 2_000_000 },
    state: TaskState.TASK_STATE_SUCCEEDED,
    outcome: { kind: OutcomeKind.OUTCOME_KIND_OOM_KILLED, netRxBytes: 1, netTxBytes: 2 },
    events: [{ state: TaskState.TASK_STATE_RUNNING }],
    dataProgress: {},
    replica: {},
    progress: { fraction: 0.5, metrics: new Map([['loss', 0.3]]) },
  });
}

export function fullNode(): NodeInfo {
  return NodeInfo.fromPartial({
    nodeId: 'n',
    facts: { gpus: [{}], labels: new Map([['k', 'v']]), isolations: [Isolation.ISOLATION_RUNC], allowsEgress: true, engine: 'podman-rootless', unenforcedLimits: [LimitKind.LIMIT_KIND_MEMORY] },
    lastReport: { gpus: [{}], tasks: [{}], free: { gpuIndexes: [0] }, tunnel: {}, cache: { held: [{}] } },
    taskIds: ['t'],
  });
}

/** Where the doc says a field is a map (an object of any keys): its keys are data, not fields. */
function fieldTypes(value: unknown, maps: ReadonlySet<string>, path = '', out = new Map<string, string>()): Map<string, string> {
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    const p = path ? `${path}.${k}` : k;
    if (maps.has(p)) out.set(p, 'map');
    else if (Array.isArray(v)) {
      const first = v[0] as unknown;
      if (first !== null && typeof first === 'object') fieldTypes(first, maps, `${p}[]`, out.set(p, 'object[]'));
      else out.set(p, `${typeof first}[]`);
    } else if (v !== null && typeof v === 'object') fieldTypes(v, maps, p, out.set(p, 'object'));
    else out.set(p, typeof v);
  }
  return out;
}

/** The rows `| \`path\` | type | … |` of the table under `### heading`. */
function documented(doc: string, heading: string): Map<string, string> {
  const start = doc.indexOf(`\n### ${heading}\n`);
  assert.ok(start >= 0, `docs/cli-json.md has no "### ${heading}" section`);
  const end = doc.indexOf('\n#', start + 5);
  const rows = new Map<string, string>();
  for (const m of doc.slice(start, end < 0 ? undefined : end).matchAll(/^\| `([^`]+)` \| ([^|]+?) \|/gm)) rows.set(m[1]!, m[2]!.trim());
  return rows;
}

/** The doc's type of an enum field is `word`: the printed value must be a string from its word list. */
function normalise(doc: Map<string, string>): Map<string, string> {
  return new Map([...doc].map(([p, t]) => [p, t === 'word' ? 'string' : t]));
}

function mapsOf(doc: Map<string, string>): Set<string> {
  return new Set([...doc].filter(([, t]) => t === 'map').map(([p]) => p));
}

const doc = readFileSync(DOC, 'utf8');

for (const [heading, value] of [
  ['Task', () => taskJson(fullTask())],
  ['Node', () => nodeJson(fullNode())],
] as const) {
  test(`docs/cli-json.md's ${heading} table lists exactly the fields --json prints, with their types`, () => {
    const rows = documented(doc, heading);
    assert.deepEqual(Object.fromEntries(fieldTypes(value(), mapsOf(rows))), Object.fromEntries(normalise(rows)));
  });
}

test('enums print as the words docs/cli-json.md lists, never as numbers', () => {
  const words = (name: string) => {
    const m = doc.match(new RegExp(`^- ${name}: (.+)$`, 'm'));
    assert.ok(m, `docs/cli-json.md lists no "- ${name}:" words`);
    return m[1]!.split(', ').map((w) => w.replace(/`/g, ''));
  };
  const all = <E extends object>(e: E) => Object.values(e).filter((v): v is number => typeof v === 'number' && v > 0);
  assert.deepEqual(all(TaskState).map(stateName), words('state'));
  assert.deepEqual(all(OutcomeKind).map(outcomeName), words('outcome kind'));
  assert.deepEqual(all(DataKind).map(dataKindName), words('data kind'));
  const t = taskJson(fullTask());
  assert.equal(t.state, 'succeeded');
  assert.equal(t.outcome?.kind, 'oom_killed');
  assert.equal(t.events[0]?.state, 'running');
  assert.equal(t.spec?.data[0]?.kind, 'file');
  assert.equal(t.spec?.isolation, 'gvisor');
  assert.equal(t.spec?.network, 'egress');
  assert.deepEqual(nodeJson(fullNode()).facts?.isolations, ['runc']);
  assert.deepEqual(nodeJson(fullNode()).facts?.unenforcedLimits, ['memory']);
  assert.equal(nodeJson(NodeInfo.fromPartial({ nodeId: 'old', facts: {} })).facts?.engine, 'docker', 'an older node saying no engine ran on Docker');
  assert.deepEqual(JSON.parse(JSON.stringify(t.spec?.env)), { K: 'v' });
});
