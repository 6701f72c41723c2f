// The summary `npm run test:faults` prints: scenarios counted once however many tasks they
// record, the bar (lost 0, duplicated 0, escaped 0) failing the run, and an empty ledger failing
// it too (the tests did not run).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const SCRIPT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'scripts', 'fault-summary.js');

function summarise(t: { after(fn: () => void): void }, lines: object[]): { code: number; out: string } {
  const dir = mkdtempSync(join(tmpdir(), 'hm-ledger-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'ledger.jsonl');
  writeFileSync(file, lines.map((l) => `${JSON.stringify(l)}\n`).join(''));
  const r = spawnSync(process.execPath, [SCRIPT, file], { encoding: 'utf8' });
  return { code: r.status ?? -1, out: r.stdout + r.stderr };
}

const task = (name: string, o: Partial<{ faults: number; delivered: number; lost: number; duplicated: number }> = {}) =>
  ({ kind: 'scenario', name, faults: 0, submitted: 1, delivered: 1, lost: 0, duplicated: 0, ...o });

test('a scenario that records several tasks counts once; the sums and the per-scenario table are right', (t) => {
  const r = summarise(t, [task('master down', { faults: 1 }), task('master down'), task('disk full', { faults: 1 }), { kind: 'hostile', name: 'zip slip', tried: 7, escaped: 0 }]);
  assert.equal(r.code, 0, r.out);
  for (const row of ['| scenarios run | 2 |', '| faults injected | 2 |', '| tasks submitted | 3 |', '| results delivered | 3 |', '| hostile inputs tried | 7 |', '| escaped | 0 |', '| master down | 1 | 2 | 2 | 0 | 0 |', '| disk full | 1 | 1 | 1 | 0 | 0 |']) {
    assert.ok(r.out.includes(`${row}\n`), `${row}\n${r.out}`);
  }
  assert.match(r.out, /lost 0, duplicated 0, escaped 0\n$/);
});

test('anything lost, duplicated or escaped fails the summary and is named', (t) => {
  for (const [bad, what] of [[task('kill -9', { delivered: 0, lost: 1 }), 'kill -9'], [task('requeue', { duplicated: 1 }), 'requeue'], [{ kind: 'hostile', name: 'bomb', tried: 1, escaped: 1 }, 'bomb']] as const) {
    const r = summarise(t, [task('fine'), bad]);
    assert.equal(r.code, 1, r.out);
    assert.match(r.out, new RegExp(`FAILED: (scenario|hostile) "${what}"`));
    assert.match(r.out, /the bar is lost 0, duplicated 0, escaped 0/);
  }
});

test('an empty ledger fails: the fault tests did not run', (t) => {
  const r = summarise(t, []);
  assert.equal(r.code, 1);
  assert.match(r.out, /FAILED: no fault or hostile-input test recorded anything/);
});
