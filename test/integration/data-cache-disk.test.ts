// The node's data cache on a real, small filesystem (a 4 MiB tmpfs) whose budget says more than
// the disk has: a download that fills the disk ends with a clear reason naming the data set, the
// cache and the setting to lower; no entry is made of the partial bytes, and once there is room
// the download goes on from what arrived.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ManualClock } from '../../src/common/clock.js';
import { silentLogger } from '../../src/common/logger.js';
import { CacheFullError, DataCache, type DataRef } from '../../src/worker/data-cache/data-cache.js';
import { hashEntry, unpackDataSet } from '../../src/worker/data-cache/entry-files.js';
import { requireMount } from '../helpers/requirements.js';
import { recordScenario } from '../helpers/fault-ledger.js';

test('the disk under the data cache fills during a download: a clear reason, no entry, and a resume once there is room', async (t) => {
  if (!requireMount(t)) return;
  const disk = mkdtempSync(join(tmpdir(), 'hm-cache-disk-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', disk]);
  t.after(() => {
    execFileSync('umount', ['-l', disk]);
    rmSync(disk, { recursive: true, force: true });
  });
  const blob = randomBytes(3 * 1024 * 1024);
  const ref: DataRef = { digest: createHash('sha256').update(blob).digest('hex'), kind: 'file', sizeBytes: blob.length };
  let served = 0;
  const cache = await DataCache.open({
    dir: join(disk, 'cache'),
    budgetBytes: 100 * 1024 * 1024, // far more than the disk
    source: {
      async *fetch(_ref, offset) {
        for (let at = offset; at < blob.length; at += 64 * 1024) {
          const data = blob.subarray(at, Math.min(at + 64 * 1024, blob.length));
          served += data.length;
          yield { offset: at, data };
        }
      },
    },
    clock: new ManualClock(),
    logger: silentLogger(),
    unpack: unpackDataSet,
    hashEntry,
  });
  t.after(() => cache.close());
  // something else on the disk leaves less than the data set needs
  mkdirSync(join(disk, 'other'));
  execFileSync('dd', ['if=/dev/zero', `of=${join(disk, 'other', 'fill')}`, 'bs=1M', 'count=2'], { stdio: 'pipe' });
  await assert.rejects(cache.acquire(ref, 't1:1', new AbortController().signal), (err: unknown) => {
    assert.ok(err instanceof CacheFullError, String(err));
    assert.match(err.message, new RegExp(`^data set sha256:${ref.digest}: the disk under the data cache \\(.*\\) is full \\(ENOSPC\\); what arrived is kept, and the download goes on from there once there is room \\(lower --cache-max below the free space\\)$`));
    return true;
  });
  assert.equal(cache.list().find((e) => e.digest === ref.digest)?.state ?? 'none', 'downloading', 'never ready');
  const kept = statSync(join(disk, 'cache', 'partial', ref.digest)).size;
  assert.ok(kept > 0 && kept < blob.length);
  rmSync(join(disk, 'other'), { recursive: true });
  served = 0;
  const lease = await cache.acquire(ref, 't2:1', new AbortController().signal);
  assert.deepEqual(await readFile(lease.path), blob);
  assert.ok(served <= blob.length - kept + 64 * 1024, `resumed (${served} bytes served after ${kept} kept)`);
  recordScenario({ name: 'data cache disk full mid-download', faults: 1, submitted: 1, delivered: 1, lost: 0, duplicated: 0 });
  lease.release();
});
