// The old generation's room after a mark-compact: a fixed amount as a factor of what is live,
// 4x for a small heap (a worker streaming a result), down to 1.5x for a master holding 10,000
// nodes' streams.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HEADROOM_BYTES, MASTER_SEMI_SPACE_BYTES, MAX_GROWING_PERCENT, MIN_GROWING_PERCENT, growingPercentFor } from '../../src/common/heap-tuning.js';

const MB = 1024 * 1024;

test('a small live heap grows 4x; a large one by the headroom, at least 1.5x', () => {
  assert.equal(growingPercentFor(30 * MB), MAX_GROWING_PERCENT, 'a streaming worker keeps 4x');
  assert.equal(growingPercentFor(HEADROOM_BYTES), 100, 'as much garbage room as is live: 2x');
  assert.equal(growingPercentFor(256 * MB), 50);
  assert.equal(growingPercentFor(200 * MB), 64, 'the headroom over what is live, rounded');
  assert.equal(growingPercentFor(1024 * MB), MIN_GROWING_PERCENT, 'never below 1.5x');
});

test('what a heap statistic cannot be gives the default of 4x', () => {
  for (const v of [0, -1, Number.NaN]) assert.equal(growingPercentFor(v), MAX_GROWING_PERCENT);
});

test('the master\'s young generation stops growing near its cap (V8 alone grows it past twice that)', async () => {
  const { spawnSync } = await import('node:child_process');
  const { fileURLToPath } = await import('node:url');
  const tuning = fileURLToPath(new URL('../../src/common/heap-tuning.js', import.meta.url));
  // Allocates for 1.5 s with a quarter of it kept a while (what makes V8 grow the new space) and
  // prints the largest new space it saw (used + available: one semi-space).
  const program = (cap: boolean) => `
    import v8 from 'node:v8';
    ${cap ? `import { capYoungGeneration } from ${JSON.stringify(tuning)}; capYoungGeneration();` : ''}
    const keep = []; let most = 0; const t0 = Date.now();
    const tick = () => {
      for (let i = 0; i < 20000; i++) { keep.push({ a: i, b: 'x' + i, c: [i, i] }); if (keep.length > 300000) keep.splice(0, 1000); }
      const s = v8.getHeapSpaceStatistics().find((x) => x.space_name === 'new_space');
      most = Math.max(most, s.space_used_size + s.space_available_size);
      if (Date.now() - t0 < 1500) setImmediate(tick); else console.log(most);
    };
    tick();`;
  const run = (cap: boolean) => {
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', program(cap)], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    return Number(r.stdout.trim());
  };
  const capped = run(true);
  const uncapped = run(false);
  assert.ok(uncapped > 2 * MASTER_SEMI_SPACE_BYTES, `without the cap V8 grew the new space to ${(uncapped / MB).toFixed(1)} MiB only: this test cannot tell the cap works here`);
  assert.ok(capped <= 2 * MASTER_SEMI_SPACE_BYTES + MB, `with the cap the new space reached ${(capped / MB).toFixed(1)} MiB`);
});
