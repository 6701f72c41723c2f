// A task's own progress (docs/progress.md) through a real master, worker and Docker: the lines it
// prints reach `get`, `tasks` and `wait`; a task flooding progress lines (a million, huge ones,
// malformed JSON, NaN, a thousand metrics) is counted right and costs the master one update a
// second, and the node stays responsive.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { requireDockerImage } from '../helpers/requirements.js';
import { freePort } from '../helpers/cli-process.js';
import { ProcessCluster } from '../helpers/process-cluster.js';
import { recordHostile } from '../helpers/fault-ledger.js';

const IMAGE = 'hivemind/busybox:1';

interface ProgressJson {
  fraction?: number;
  message: string;
  metrics: Record<string, number>;
  atMs: number;
  updates: number;
  rejected: number;
}
interface TaskJson {
  taskId: string;
  state: string;
  progress?: ProgressJson;
  outcome?: { durationMs: number; exitCode: number };
  startedAtMs: number;
  finishedAtMs: number;
}

test('progress lines reach get, tasks and wait; a flood of them is counted and throttled', { timeout: 300_000 }, async (t) => {
  if (!requireDockerImage(t, IMAGE)) return;
  const monitorPort = await freePort();
  const monitor = `http://127.0.0.1:${monitorPort}`;
  const cluster = await ProcessCluster.start({ reportInterval: '2s', workerArgs: ['--monitor-port', String(monitorPort)] });
  try {
    const submit = async (script: string): Promise<string> => {
      const r = await cluster.cli(['submit', '--image', IMAGE, '--', 'sh', '-c', script]);
      assert.equal(r.code, 0, r.stderr);
      return r.stdout.trim();
    };
    const get = async (id: string): Promise<TaskJson> => JSON.parse((await cluster.cli(['get', id, '--json'])).stdout) as TaskJson;
    /** Updates the node sent the master for the attempt (the seq it handed out last). */
    const updatesSent = (id: string): number => {
      const db = new Database(join(cluster.home, 'worker', 'worker.db'), { readonly: true, fileMustExist: true });
      try {
        return (db.prepare('SELECT next_seq - 1 AS n FROM tasks WHERE task_id = ?').get(id) as { n: number }).n;
      } finally {
        db.close();
      }
    };

    await t.test('a task printing progress: the last report in get --json, the column in tasks, the line in get', async () => {
      const id = await submit(
        [
          'for i in 1 2 3 4; do',
          '  echo "HIVEMIND_PROGRESS {\\"fraction\\": 0.$((i*2)), \\"message\\": \\"step $i/5\\", \\"metrics\\": {\\"loss\\": 0.$((9-i))}}"',
          '  sleep 1.2',
          'done',
          'echo "HIVEMIND_PROGRESS {\\"fraction\\": 1, \\"message\\": \\"done\\", \\"metrics\\": {\\"loss\\": 0.1}}" >&2',
          'sleep 2',
        ].join('\n'),
      );
      // While it runs: the column shows a percentage.
      const seen = await waitForValue(async () => {
        const list = JSON.parse((await cluster.cli(['tasks', '--json'])).stdout) as TaskJson[];
        const mine = list.find((x) => x.taskId === id);
        return mine?.progress?.fraction !== undefined ? mine : undefined;
      });
      assert.equal(seen.state, 'running');
      // The node's own monitor shows it in the running task's view, and /metrics its fraction.
      const running = await waitForValue(async () => {
        const s = (await (await fetch(`${monitor}/api/status`)).json()) as { running: { taskId: string; progress: ProgressJson | null }[] };
        return s.running.find((r) => r.taskId === id && r.progress?.fraction !== undefined && r.progress.fraction !== null);
      });
      assert.match(running.progress!.message, /^(step \d\/5|done)$/);
      assert.match(await (await fetch(`${monitor}/metrics`)).text(), new RegExp(`^hivemind_task_progress_fraction\\{task_id="${id}"\\} (0\\.\\d+|1)$`, 'm'));
      const table = (await cluster.cli(['tasks'])).stdout.split('\n');
      assert.match(table[0]!, /PROGRESS/);
      assert.match(table.find((l) => l.startsWith(id)) ?? '', /\s\d{1,3}%(\s|$)/);

      const w = await cluster.cli(['wait', id], 120_000);
      assert.equal(w.code, 0, w.stderr);
      assert.doesNotMatch(w.stderr, /\r|\x1b/, 'wait in a pipe draws no live line');
      const info = await get(id);
      assert.equal(info.state, 'succeeded');
      assert.deepEqual({ ...info.progress, atMs: 0 }, { fraction: 1, message: 'done', metrics: { loss: 0.1 }, atMs: 0, updates: 5, rejected: 0 });
      const history = (await (await fetch(`${monitor}/api/tasks/${id}`)).json()) as { task: { progress: ProgressJson | null } };
      assert.equal(history.task.progress?.message, 'done');
      assert.match(await (await fetch(`${monitor}/metrics`)).text(), /^hivemind_worker_progress_lines_total 5$/m);
      const shown = (await cluster.cli(['get', id])).stdout;
      assert.match(shown, /^progress {2}\[#{20}\] 100% {2}done {2}loss=0\.1$/m);
      // Five lines over ~7 s: each second at most one progress update, plus the state changes.
      assert.ok(updatesSent(id) <= 5 + 6, `updates sent: ${updatesSent(id)}`);
    });

    const runToEnd = async (id: string): Promise<{ info: TaskJson; slowest: number }> => {
      // The node stays responsive meanwhile: the master keeps hearing from it.
      const started = Date.now();
      let slowest = 0;
      for (;;) {
        const t0 = Date.now();
        const nodes = JSON.parse((await cluster.cli(['nodes', '--json'])).stdout) as { online: boolean }[];
        slowest = Math.max(slowest, Date.now() - t0);
        assert.ok(nodes.every((n) => n.online), 'the node stayed online');
        const info = await get(id);
        if (['succeeded', 'failed', 'cancelled'].includes(info.state)) return { info, slowest };
        assert.ok(Date.now() - started < 240_000, 'the task ends');
        await new Promise((r) => setTimeout(r, 1000));
      }
    };

    await t.test('hostile: huge lines, malformed JSON, NaN, Infinity, 1000 metrics among good lines are counted exactly', async () => {
      const metrics = Array.from({ length: 1000 }, (_, i) => `\\"m${i}\\": ${i}`).join(', ');
      const big = 'x'.repeat(8000);
      const id = await submit(
        [
          'seq 1 1000 | sed "s/.*/HIVEMIND_PROGRESS {\\"fraction\\": 0.5}/"',
          `echo "HIVEMIND_PROGRESS {\\"message\\": \\"${big}\\"}"`,
          'echo "HIVEMIND_PROGRESS {not json"',
          'echo "HIVEMIND_PROGRESS {\\"fraction\\": NaN}"',
          'echo "HIVEMIND_PROGRESS {\\"fraction\\": Infinity}" >&2',
          `echo "HIVEMIND_PROGRESS {\\"metrics\\": {${metrics}}}"`,
          'echo "HIVEMIND_PROGRESS {\\"fraction\\": 0.99, \\"message\\": \\"last good\\"}"',
          'sleep 2',
        ].join('\n'),
      );
      const { info } = await runToEnd(id);
      const p = info.progress;
      const escaped = !p || p.updates !== 1006 || p.rejected !== 5 || p.message !== 'last good' || Object.keys(p.metrics).length !== 0;
      recordHostile('progress end to end: a huge line, malformed JSON, NaN, Infinity, 1000 metrics', escaped);
      assert.equal(info.state, 'succeeded', JSON.stringify(info));
      assert.deepEqual({ updates: p?.updates, rejected: p?.rejected, fraction: p?.fraction, message: p?.message, metrics: p?.metrics }, { updates: 1006, rejected: 5, fraction: 0.99, message: 'last good', metrics: {} });
    });

    await t.test('hostile: a million progress lines as fast as it can: the node stays responsive, the master hears at most one a second', async () => {
      const id = await submit(
        [
          'i=0; while [ $i -lt 1000 ]; do seq 1 1000 | sed "s/.*/HIVEMIND_PROGRESS {\\"fraction\\": 0.5, \\"message\\": \\"batch $i\\"}/"; i=$((i+1)); done',
          'sleep 1',
          'echo "HIVEMIND_PROGRESS {\\"fraction\\": 0.99, \\"message\\": \\"last good\\"}"',
          'sleep 2',
        ].join('\n'),
      );
      const { info, slowest } = await runToEnd(id);
      const sent = updatesSent(id);
      // The node reads a flood's log on after the container ended (to its end): the span is from the
      // first RUNNING to the terminal update, as the master saw them.
      const seconds = Math.ceil((info.finishedAtMs - info.startedAtMs) / 1000);
      const p = info.progress;
      // Docker keeps 10 MiB of a task's log: a flood that outruns the node's log stream loses
      // lines there (the log says where), and lines the node never read are not counted.
      const escaped = !p || p.updates > 1_000_001 || p.updates < 1 || p.message !== 'last good' || sent > seconds + 8 || slowest > 10_000;
      recordHostile('progress end to end: a million progress lines as fast as the task can print them', escaped);
      t.diagnostic(`flood: ${p?.updates} of 1000001 lines read (${p?.rejected} refused, torn where Docker's log skipped) in ${info.outcome?.durationMs} ms (read over ${seconds} s), ${sent} updates to the master, slowest nodes call ${slowest} ms`);
      assert.equal(info.state, 'succeeded', JSON.stringify(info));
      assert.equal(p?.message, 'last good');
      assert.ok(p!.updates >= 1 && p!.updates <= 1_000_001, `updates ${p?.updates}`);
      assert.ok(p!.rejected <= p!.updates);
      assert.ok(sent <= seconds + 8, `${sent} updates in ${seconds} s: over one a second`);
      assert.ok(slowest < 10_000, `a nodes call took ${slowest} ms`);
    });
  } finally {
    await cluster.close();
  }
});

async function waitForValue<T>(fn: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > until) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 300));
  }
}
