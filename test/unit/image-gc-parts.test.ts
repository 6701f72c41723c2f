// The image GC's schedule (at start, every interval, never twice at once, stopped by close()) and
// the log of image pulls and uses the runner writes into.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AbortedError } from '../../src/common/errors.js';
import { silentLogger } from '../../src/common/logger.js';
import type { PruneResult } from '../../src/runtime/image-pruner.js';
import { ImagePruneSchedule, type Pruner } from '../../src/runtime/image-prune-schedule.js';
import { imageUseLog } from '../../src/runtime/image-use-log.js';
import { ManualClock } from '../../src/common/clock.js';

const EMPTY: PruneResult = { removed: [], freedBytes: 0, keptBytes: 0 };

/** A pruner whose collections end only when the test says so. */
class HeldPruner implements Pruner {
  readonly signals: AbortSignal[] = [];
  private readonly ends: Array<(r: PruneResult | Error) => void> = [];

  prune(signal: AbortSignal): Promise<PruneResult> {
    this.signals.push(signal);
    return new Promise((resolve, reject) => {
      const end = (r: PruneResult | Error) => (r instanceof Error ? reject(r) : resolve(r));
      this.ends.push(end);
      signal.addEventListener('abort', () => end(new AbortedError('aborted')), { once: true });
    });
  }

  finish(r: PruneResult | Error = EMPTY): void {
    this.ends.shift()!(r);
  }
}

const settle = () => new Promise((r) => setImmediate(r));

test('collects at start and every interval, never two at once', async (t) => {
  t.mock.timers.enable({ apis: ['setInterval'] });
  const pruner = new HeldPruner();
  const schedule = new ImagePruneSchedule(pruner, 600_000, silentLogger());
  t.after(() => schedule.close());
  assert.equal(pruner.signals.length, 0, 'nothing before start');
  schedule.start();
  schedule.start();
  assert.equal(pruner.signals.length, 1, 'one collection at start, however often start is called');
  t.mock.timers.tick(600_000);
  assert.equal(pruner.signals.length, 1, 'the interval passes while a collection runs: no second one');
  pruner.finish();
  await settle();
  t.mock.timers.tick(599_999);
  assert.equal(pruner.signals.length, 1);
  t.mock.timers.tick(1);
  assert.equal(pruner.signals.length, 2);
  // A failed collection is logged; the schedule goes on.
  pruner.finish(new Error('engine unreachable'));
  await settle();
  t.mock.timers.tick(600_000);
  assert.equal(pruner.signals.length, 3);
  pruner.finish();
});

test('close aborts the collection under way, waits for it, and stops the timer', async (t) => {
  t.mock.timers.enable({ apis: ['setInterval'] });
  const pruner = new HeldPruner();
  const schedule = new ImagePruneSchedule(pruner, 1_000, silentLogger());
  schedule.start();
  let closed = false;
  const closing = schedule.close().then(() => (closed = true));
  assert.equal(pruner.signals[0]!.aborted, true);
  await closing;
  assert.equal(closed, true);
  t.mock.timers.tick(10_000);
  schedule.start();
  schedule.runSoon();
  assert.equal(pruner.signals.length, 1, 'nothing runs after close');
  await schedule.close();
});

test('imageUseLog records pulls and uses with the clock, and a store failure never reaches the task', () => {
  const clock = new ManualClock(5_000);
  const calls: string[] = [];
  let broken = false;
  const log = imageUseLog(
    {
      recordImagePulled: (image, at) => {
        if (broken) throw new Error('SQLITE_FULL: database or disk is full');
        calls.push(`pulled ${image} ${at}`);
      },
      recordImageUsed: (image, at) => {
        if (broken) throw new Error('SQLITE_FULL: database or disk is full');
        calls.push(`used ${image} ${at}`);
        return true;
      },
    },
    clock,
    silentLogger(),
  );
  log.pulled('alpine:3');
  clock.advance(10);
  log.used('alpine:3');
  assert.deepEqual(calls, ['pulled alpine:3 5000', 'used alpine:3 5010']);
  broken = true;
  assert.doesNotThrow(() => log.pulled('debian:12'));
  assert.doesNotThrow(() => log.used('debian:12'));
});
