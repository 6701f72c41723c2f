// The standalone Linux executable's master keeps its state in PostgreSQL: the executable, alone in
// an empty directory of a Node-less Debian container, runs `master start --store postgres://…` on a
// fresh schema of the test PostgreSQL, and its own CLI creates a token and submits a task; the rows
// are read back from that schema, and the data dir holds no master.db. The connection's thread is
// the SEA asset workers/pg-worker.cjs (scripts/build-exe.ts): nothing on disk could stand in for it.
// The container shares the host's network (the test PostgreSQL listens on the host's loopback
// only), so the master's ports are free host ports and its gateway and metrics listeners are off.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { freePort, waitFor } from '../helpers/cli-process.js';
import { ExeContainer } from '../helpers/exe-container.js';
import { executablePath, requireDockerImage, requireExecutable, requirePostgres } from '../helpers/requirements.js';
import { freshPgSchema, testPgUrl } from '../helpers/test-store.js';
import { PgDriver } from '../../src/master/sql/pg-driver.js';

const BASE_IMAGE = 'hivemind/debian-base:12';
const TASK_IMAGE = 'hivemind/busybox:1';

test('the executable alone in a container runs a master on PostgreSQL and serves its CLI from there', { timeout: 300_000 }, async (t) => {
  if (!requireExecutable(t) || !requireDockerImage(t, BASE_IMAGE) || !requirePostgres(t, testPgUrl())) return;
  const { url, schema } = freshPgSchema();
  const db = PgDriver.open(url);
  t.after(() => db.close());
  const c = await ExeContainer.start(executablePath(), BASE_IMAGE, { network: 'host' });
  t.after(() => c.close());
  assert.equal((await c.sh('command -v node nodejs || echo none')).stdout.trim(), 'none');

  const dataDir = `${c.shared}/master`;
  const m = await c.master(`127.0.0.1:${await freePort()}`, dataDir, ['--store', url, '--gateway-listen', 'off', '--metrics-listen', 'off']);
  try {
    // The admin token file can come before the log lines reach the docker client.
    await waitFor('the master to log that it serves', () => m.daemon.output.includes('master active: serving') || undefined, 30_000, 100);
    assert.match(m.daemon.output, /"store":"postgres:\/\/hivemind_test:\*\*\*@127\.0\.0\.1:55432\//, 'the master says where its store is, password hidden');

    const token = await m.enrollmentToken();
    assert.match(token, /^hm1\./);
    assert.deepEqual(db.prepare('SELECT count(*) AS n FROM enrollment_tokens').get(), { n: 1 }, `the token's row is in schema ${schema}`);

    const sub = await c.hivemind(['submit', '--image', TASK_IMAGE, ...m.admin, '--', 'echo', 'queued in PostgreSQL']);
    assert.equal(sub.code, 0, `${sub.stdout}\n${sub.stderr}\n${m.daemon.output}`);
    const taskId = sub.stdout.trim();
    const listed = await c.hivemind(['tasks', '--json', ...m.admin]);
    assert.equal(listed.code, 0, listed.stderr);
    assert.deepEqual((JSON.parse(listed.stdout) as { taskId: string; state: string }[]).map((x) => [x.taskId, x.state]), [[taskId, 'queued']], 'queued: no worker');
    const rows = db.prepare('SELECT id, spec FROM tasks').all() as { id: string; spec: string }[];
    assert.deepEqual(rows.map((r) => r.id), [taskId], `the task's row is in schema ${schema}`);
    assert.ok(rows[0]!.spec.includes('queued in PostgreSQL'), rows[0]!.spec);

    assert.ok(existsSync(dataDir), 'the data dir (inputs, results, logs) is made');
    assert.equal(existsSync(`${dataDir}/master.db`), false, 'no SQLite store beside the PostgreSQL one');
  } finally {
    await m.daemon.stop().catch(() => undefined);
  }
  assert.equal(await m.daemon.exited, 0, m.daemon.output);
});
