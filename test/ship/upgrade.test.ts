// Upgrading across a schema change: a node that ran an earlier build (worker schema 3, before
// `logs_sent_until`) is stopped and started again with this build on the same data dirs, as
// install.sh does when it replaces the executable. The node keeps its identity and its history,
// the migrations run, old results stay downloadable and new tasks run.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { requireCommit, requireDockerImage } from '../helpers/requirements.js';
import { ProcessCluster } from '../helpers/process-cluster.js';
import { CLI } from '../helpers/cli-process.js';
import { OldBuild, SCHEMA3_COMMIT, workerDbFacts } from '../helpers/old-build.js';
import { MIGRATIONS } from '../../src/worker/store/migrations.js';

const IMAGE = 'hivemind/busybox:1';
const OLD_COMMIT = SCHEMA3_COMMIT;


/** sha256 and mode of every file of the node's state other than its databases, pid file and spool. */
function stateFiles(dir: string, prefix = ''): Map<string, string> {
  const out = new Map<string, string>();
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    const rel = prefix + name;
    const st = statSync(p);
    if (st.isDirectory()) {
      for (const [k, v] of stateFiles(p, `${rel}/`)) out.set(k, v);
    } else if (/\.(db|db-wal|db-shm|pid)$/.test(name) || rel.startsWith('spool/') || rel.startsWith('results/')) {
      continue;
    } else {
      out.set(rel, `${(st.mode & 0o777).toString(8)} ${createHash('sha256').update(readFileSync(p)).digest('hex')}`);
    }
  }
  return out;
}

test('an upgrade across a worker schema change keeps identity and history, runs the migrations, and the node works on', async (t) => {
  if (!requireDockerImage(t, IMAGE) || !requireCommit(t, OLD_COMMIT)) return;
  const old = OldBuild.build(OLD_COMMIT);
  const scratch = mkdtempSync(join(tmpdir(), 'hm-upgrade-'));
  let cluster: ProcessCluster | undefined;
  try {
    cluster = await ProcessCluster.start({ cli: old.cli });
    const workerDir = join(cluster.home, 'worker');
    const version = await cluster.cli(['--version']);
    process.stderr.write(`old build: ${version.stdout.trim()}\n`);

    const before = await cluster.cli(['submit', '--image', IMAGE, '--wait', '--', 'sh', '-c', 'echo from-the-old-build; echo kept > /output/r.txt']);
    assert.equal(before.code, 0, before.stdout + before.stderr);
    const oldTask = (await cluster.cli(['tasks', '--json'])).stdout;
    const oldTaskId = (JSON.parse(oldTask) as { taskId: string }[])[0]!.taskId;
    const nodesBefore = JSON.parse((await cluster.cli(['nodes', '--json'])).stdout) as { nodeId: string }[];
    assert.equal(nodesBefore.length, 1);

    assert.equal(await cluster.worker!.stop('SIGTERM'), 0, cluster.worker!.output);
    assert.equal(await cluster.master.stop('SIGTERM'), 0, cluster.master.output);
    const oldDb = workerDbFacts(join(workerDir, 'worker.db'));
    assert.equal(oldDb.version, 3, 'the old build wrote schema 3');
    assert.ok(!oldDb.columns.includes('logs_sent_until'));
    assert.deepEqual(oldDb.tasks.map((r) => r.task_id), [oldTaskId]);
    const filesBefore = stateFiles(workerDir);
    assert.ok(filesBefore.has('identity.json'), `identity.json in ${[...filesBefore.keys()].join(', ')}`);

    // The upgrade: same data dirs, this build.
    cluster.cliPath = CLI;
    await cluster.restartMaster();
    await cluster.startWorker();
    const newDb = workerDbFacts(join(workerDir, 'worker.db'));
    assert.equal(newDb.version, MIGRATIONS.length, 'the migrations ran up to this build\'s schema');
    assert.ok(newDb.columns.includes('logs_sent_until'));
    assert.deepEqual(newDb.tasks, oldDb.tasks, 'the task history is kept as it was');
    assert.deepEqual(stateFiles(workerDir), filesBefore, 'identity (and every other state file) is unchanged, byte for byte and mode');

    const nodesAfter = JSON.parse((await cluster.cli(['nodes', '--json'])).stdout) as { nodeId: string; online: boolean }[];
    assert.deepEqual(nodesAfter.map((n) => [n.nodeId, n.online]), [[nodesBefore[0]!.nodeId, true]], 'the same node, not a second registration');

    const res = await cluster.cli(['result', oldTaskId, '-o', join(scratch, 'old.tar.gz'), '--extract', join(scratch, 'old')]);
    assert.equal(res.code, 0, res.stderr);
    assert.equal(readFileSync(join(scratch, 'old', 'r.txt'), 'utf8'), 'kept\n');
    const logs = await cluster.cli(['logs', oldTaskId]);
    assert.match(logs.stdout, /from-the-old-build/);

    const after = await cluster.cli(['submit', '--image', IMAGE, '--wait', '--', 'sh', '-c', 'echo from-the-new-build']);
    assert.equal(after.code, 0, after.stdout + after.stderr + cluster.worker!.output);
    const history = workerDbFacts(join(workerDir, 'worker.db')).tasks;
    assert.equal(history.length, 2);
    assert.equal(history[0]!.task_id, oldTaskId);
    assert.ok(existsSync(join(cluster.home, 'master')));
  } finally {
    await cluster?.close();
    old.remove();
    rmSync(scratch, { recursive: true, force: true });
  }
});
