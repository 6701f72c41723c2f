// Prints the summary of the fault and hostile-input tests from the ledger they wrote
// (test/helpers/fault-ledger.ts) and exits non-zero when anything was lost, duplicated or
// escaped, or when nothing was recorded at all (the tests did not run).
//   node dist/scripts/fault-summary.js LEDGER_FILE
import { readFileSync } from 'node:fs';
import type { LedgerRecord } from '../test/helpers/fault-ledger.js';

function main(): number {
  const file = process.argv[2];
  if (!file) {
    console.error('usage: fault-summary LEDGER_FILE');
    return 2;
  }
  let text = '';
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    // no ledger: nothing ran
  }
  const records = text.split('\n').filter(Boolean).map((l) => JSON.parse(l) as LedgerRecord);
  const scenarios = records.filter((r) => r.kind === 'scenario');
  const hostile = records.filter((r) => r.kind === 'hostile');
  const sum = <T>(xs: T[], f: (x: T) => number) => xs.reduce((s, x) => s + f(x), 0);
  // A scenario with several tasks records one line per task, under the scenario's name.
  const byName = new Map<string, typeof scenarios>();
  for (const r of scenarios) byName.set(r.name, [...(byName.get(r.name) ?? []), r]);
  const rows: [string, number][] = [
    ['scenarios run', byName.size],
    ['faults injected', sum(scenarios, (r) => r.faults)],
    ['tasks submitted', sum(scenarios, (r) => r.submitted)],
    ['results delivered', sum(scenarios, (r) => r.delivered)],
    ['lost', sum(scenarios, (r) => r.lost)],
    ['duplicated', sum(scenarios, (r) => r.duplicated)],
    ['hostile inputs tried', sum(hostile, (r) => r.tried)],
    ['escaped', sum(hostile, (r) => r.escaped)],
  ];
  console.log('\n## Faults and hostile input\n');
  console.log('| measure | count |');
  console.log('|---|---:|');
  for (const [k, v] of rows) console.log(`| ${k} | ${v} |`);
  if (byName.size) {
    console.log('\n| scenario | faults | tasks | delivered | lost | duplicated |');
    console.log('|---|---:|---:|---:|---:|---:|');
    for (const [name, rs] of byName) {
      console.log(`| ${name} | ${sum(rs, (r) => r.faults)} | ${sum(rs, (r) => r.submitted)} | ${sum(rs, (r) => r.delivered)} | ${sum(rs, (r) => r.lost)} | ${sum(rs, (r) => r.duplicated)} |`);
    }
  }
  const bad = [...scenarios.filter((r) => r.lost || r.duplicated), ...hostile.filter((r) => r.escaped)];
  for (const r of bad) console.log(`FAILED: ${r.kind} "${r.name}": ${JSON.stringify(r)}`);
  if (records.length === 0) {
    console.log('FAILED: no fault or hostile-input test recorded anything');
    return 1;
  }
  const ok = bad.length === 0;
  console.log(ok ? '\nlost 0, duplicated 0, escaped 0' : '\nthe bar is lost 0, duplicated 0, escaped 0');
  return ok ? 0 : 1;
}

process.exit(main());
