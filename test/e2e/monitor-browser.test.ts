// The monitor page in Debian's Chromium (playwright-core, no browser download): node state, a
// submitted task running with its log streaming, then in the history with its outcome; 10,000
// tasks of history and a task flooding its log leave the page bounded and usable. The data cache
// panel with seeded entries and a task fetching its data, against an in-process monitor over a
// real data cache. The Services panel with a fake node's replicas: state, health, restarts, last
// exit, requests per second from the pipe counters, and a replica's live log. Screenshots land in
// test-artifacts/.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { chromium, type Browser, type Page } from 'playwright-core';
import { requireChromium, requireDockerImage } from '../helpers/requirements.js';
import { ProcessCluster } from '../helpers/process-cluster.js';
import { freePort, waitFor } from '../helpers/cli-process.js';
import { createFakeNvidiaSmi } from '../helpers/fake-nvidia-smi.js';
import { monitorFixture, seededDataCache } from '../helpers/fake-monitored-node.js';
import { MonitorServer } from '../../src/monitor/monitor-server.js';
import { systemClock } from '../../src/common/clock.js';
import { silentLogger } from '../../src/common/logger.js';
import { ResourceReport, TaskState, type ReplicaStatus } from '../../src/protocol/gen/hivemind/v1/common.js';
import { TaskUpdate } from '../../src/protocol/gen/hivemind/v1/node.js';
import { CacheIndex } from '../../src/worker/data-cache/cache-index.js';

const IMAGE = 'hivemind/busybox:1';
const ARTIFACTS = join(process.cwd(), 'test-artifacts');

async function launch(): Promise<Browser> {
  return chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  });
}

/** Page errors and CSP violations fail the test: the page must run clean under its policy. */
function watchErrors(page: Page): string[] {
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(`console: ${m.text()}`);
  });
  return errors;
}

const byTestId = (id: string) => `[data-testid="${id}"]`;

/** 10,000 finished tasks written straight into the worker's history (no outbox entries). */
function seedHistory(dbFile: string, n: number): void {
  const db = new BetterSqlite3(dbFile);
  db.pragma('busy_timeout = 10000');
  const insert = db.prepare(
    `INSERT INTO tasks (task_id, attempt, spec, state, outcome, created_at, updated_at, finished_at, result_size, result_sha256, result_uploaded, log_tail)
     VALUES (?, 1, ?, ?, ?, ?, ?, ?, 1024, ?, 1, 'seeded log tail')`,
  );
  const t0 = Date.now() - n * 1000 - 3_600_000;
  db.transaction(() => {
    for (let i = 0; i < n; i++) {
      const id = `seed${String(i).padStart(5, '0')}`;
      const failed = i % 7 === 0;
      const spec = JSON.stringify({ taskId: id, attempt: 1, spec: { image: IMAGE, command: ['true'], env: {}, maxOutputBytes: 0 }, inputSize: 0, inputSha256: '' });
      const outcome = JSON.stringify({ kind: 1, exitCode: failed ? 1 : 0, message: 'seeded', durationMs: 1000, resultSize: 1024, resultSha256: 'ab'.repeat(32) });
      const at = t0 + i * 1000;
      insert.run(id, spec, failed ? 'TASK_STATE_FAILED' : 'TASK_STATE_SUCCEEDED', outcome, at, at + 900, at + 900, 'ab'.repeat(32));
    }
  })();
  db.close();
}

test('monitor page in Chromium: live node, running task with its log, history, 10,000 tasks and a log flood', async (t) => {
  if (!requireChromium(t) || !requireDockerImage(t, IMAGE)) return;
  mkdirSync(ARTIFACTS, { recursive: true });
  const port = await freePort();
  // Two GPUs through a fake nvidia-smi (documented CSV): the page must chart them.
  const gpus = await createFakeNvidiaSmi();
  t.after(() => gpus.cleanup());
  const cluster = await ProcessCluster.start({ workerArgs: ['--monitor-port', String(port)], workerEnv: { PATH: `${gpus.dir}:${process.env.PATH}` } });
  const base = `http://127.0.0.1:${port}`;
  let browser: Browser | undefined;
  try {
    await waitFor('the monitor', async () => (await fetch(`${base}/healthz`).catch(() => undefined))?.status === 200);
    browser = await launch();
    const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    const errors = watchErrors(page);
    page.on('dialog', (d) => void d.accept());
    await page.goto(`${base}/`);
    assert.equal(new URL(page.url()).pathname, '/monitor.html', '/ redirects to the page');

    // Node state, pushed over Socket.IO.
    await page.locator(byTestId('connection')).filter({ hasText: 'live' }).waitFor();
    await page.locator(byTestId('node-state')).filter({ hasText: /^connected$/ }).waitFor();
    assert.equal((await page.locator(byTestId('node-accepting')).textContent())?.trim(), 'accepting');
    for (const chart of ['chart-cpu', 'chart-memory', 'chart-disk', 'chart-network', 'chart-gpu0-util', 'chart-gpu0-mem', 'chart-gpu1-temp', 'chart-gpu1-power']) {
      await page.locator(`${byTestId(chart)} canvas`).waitFor();
    }

    // A task appears as running; its log streams into the page; then it is in the history.
    const sub = await cluster.cli(['submit', '--image', IMAGE, '--memory', '64m', '--timeout', '5m', '--',
      'sh', '-c', 'for i in 1 2 3 4 5 6 7 8; do echo "tick $i"; sleep 0.5; done; echo ok > /output/ok']);
    assert.equal(sub.code, 0, sub.stderr);
    const taskId = sub.stdout.trim();
    const row = page.locator(`${byTestId('running-task')}[data-task-id="${taskId}"]`);
    await row.waitFor();
    await row.getByRole('button', { name: /log/i }).click();
    await page.locator(byTestId('log-view')).filter({ hasText: 'tick 3' }).waitFor();
    await page.screenshot({ path: join(ARTIFACTS, 'monitor-running.png'), fullPage: true });
    const done = page.locator(`${byTestId('history-row')}[data-task-id="${taskId}"]`);
    await done.locator(byTestId('history-state')).filter({ hasText: 'succeeded' }).waitFor({ timeout: 60_000 });
    await row.waitFor({ state: 'detached' });
    await page.screenshot({ path: join(ARTIFACTS, 'monitor.png'), fullPage: true });

    // 10,000 tasks in the history: the page shows one page at a time and pages on demand.
    seedHistory(join(cluster.home, 'worker', 'worker.db'), 10_000);
    await page.reload();
    await page.locator(byTestId('history-row')).first().waitFor();
    const firstPage = await page.locator(byTestId('history-row')).count();
    assert.ok(firstPage > 0 && firstPage <= 200, `one page of history in the DOM, not 10,000 rows (${firstPage})`);
    const firstIds = await page.locator(byTestId('history-row')).evaluateAll((rows) => rows.map((r) => r.getAttribute('data-task-id')));
    await page.locator(byTestId('history-older')).click();
    await waitFor('the next history page', async () => {
      const ids = await page.locator(byTestId('history-row')).evaluateAll((rows) => rows.map((r) => r.getAttribute('data-task-id')));
      return ids.length > 0 && !ids.some((id) => firstIds.includes(id)) ? true : undefined;
    });
    await page.locator(byTestId('history-filter')).selectOption('failed');
    await waitFor('failed tasks only', async () => {
      const states = await page.locator(byTestId('history-state')).allTextContents();
      return states.length > 0 && states.every((s) => s.trim() === 'failed') ? true : undefined;
    });

    // A task flooding its log (far more than 5,000 lines a second): the view keeps a bounded
    // tail and the page still answers clicks while it runs.
    const flood = (await cluster.cli(['submit', '--image', IMAGE, '--', 'sh', '-c',
      'timeout 8 sh -c \'i=0; while :; do i=$((i+1)); echo "flood line $i of the log"; done\'; true'])).stdout.trim();
    const floodRow = page.locator(`${byTestId('running-task')}[data-task-id="${flood}"]`);
    await floodRow.waitFor();
    await floodRow.getByRole('button', { name: /log/i }).click();
    await page.locator(byTestId('log-view')).filter({ hasText: 'flood line' }).waitFor();
    // Longest gap between animation frames over 3 s of flooding: reported, not asserted.
    const maxGapMs = await page.evaluate(
      () =>
        new Promise<number>((resolve) => {
          // Runs in the page, which has requestAnimationFrame; the test's tsconfig has no DOM types.
          const requestAnimationFrame = (globalThis as unknown as { requestAnimationFrame(cb: (now: number) => void): number }).requestAnimationFrame;
          let last = performance.now();
          let max = 0;
          const end = last + 3000;
          const frame = (now: number) => {
            max = Math.max(max, now - last);
            last = now;
            if (now < end) requestAnimationFrame(frame);
            else resolve(max);
          };
          requestAnimationFrame(frame);
        }),
    );
    process.stderr.write(`monitor page under a log flood: longest frame gap ${maxGapMs.toFixed(0)} ms\n`);
    const lines = await page.locator(byTestId('log-view')).evaluate((el) => (el.textContent ?? '').split('\n').length);
    assert.ok(lines <= 2100, `the log view keeps a bounded tail (${lines} lines)`);
    await page.locator(byTestId('pause-toggle')).click(); // confirm() is accepted by the dialog handler
    await page.locator(byTestId('node-accepting')).filter({ hasText: 'paused' }).waitFor();
    await page.locator(byTestId('pause-toggle')).filter({ hasText: 'Resume' }).click();
    await page.locator(byTestId('node-accepting')).filter({ hasText: 'accepting' }).waitFor();
    const floodDone = await cluster.cli(['wait', flood]);
    assert.equal(floodDone.code, 0, floodDone.stdout + floodDone.stderr);
    await page.screenshot({ path: join(ARTIFACTS, 'monitor-flood.png'), fullPage: true });

    assert.deepEqual(errors, [], 'no page errors and no CSP violations');
  } finally {
    await browser?.close();
    await cluster.close();
  }
});

test('monitor page in Chromium: the data cache panel with seeded entries, and a task fetching its data', async (t) => {
  if (!requireChromium(t)) return;
  mkdirSync(ARTIFACTS, { recursive: true });
  const { store, node } = await monitorFixture(t);
  const dir = join(ARTIFACTS, `cache-${process.pid}`);
  t.after(() => import('node:fs/promises').then((fs) => fs.rm(dir, { recursive: true, force: true })));
  // One data set used twice through the real cache (a miss, then a hit), and a pinned directory
  // entry seeded straight into its index, as `hivemind worker cache pin` would leave it.
  const { cache, ref } = await seededDataCache(t, dir);
  const pinned = 'ab'.repeat(32);
  const index = CacheIndex.open(join(dir, 'cache', 'index.db'));
  index.beginDownload(pinned, 'dir', 2 * 2 ** 20, Date.now() - 86_400_000);
  index.markReady(pinned, Date.now() - 86_400_000);
  index.setPinned(pinned, true);
  index.close();
  const held = await cache.acquire(ref, 'task-held', new AbortController().signal);
  node.dataCache = cache;
  // A task accepted and fetching its data sets.
  store.insertTask({ taskId: 'fetcher', attempt: 1, inputSize: 0, inputSha256: '', spec: { image: IMAGE, command: ['true'], env: new Map(), network: 0, maxOutputBytes: 0, data: [] } }, [], Date.now());
  const m = await MonitorServer.start({ host: '127.0.0.1', port: 0 }, { node, store, clock: systemClock, logger: silentLogger() });
  t.after(() => m.close());
  let browser: Browser | undefined;
  try {
    browser = await launch();
    const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    const errors = watchErrors(page);
    await page.goto(`http://127.0.0.1:${m.port}/monitor.html`);
    await page.locator(byTestId('connection')).filter({ hasText: 'live' }).waitFor();

    const rows = page.locator(byTestId('cache-entry'));
    await rows.first().waitFor();
    assert.equal(await rows.count(), 2);
    const used = page.locator(`${byTestId('cache-entry')}[data-digest="${ref.digest}"]`);
    const usedText = (await used.textContent()) ?? '';
    assert.ok(usedText.includes(`sha256:${ref.digest.slice(0, 12)}…`), usedText);
    assert.ok(usedText.includes('300 KiB') && usedText.includes('file'), usedText);
    assert.equal((await used.locator(byTestId('cache-entry-marks')).textContent())?.trim(), 'in use');
    const seeded = page.locator(`${byTestId('cache-entry')}[data-digest="${pinned}"]`);
    assert.ok(((await seeded.textContent()) ?? '').includes('directory'));
    assert.equal((await seeded.locator(byTestId('cache-entry-marks')).textContent())?.trim(), 'pinned');
    // Two hits (the second use and the lease above) and one miss.
    assert.equal((await page.locator(byTestId('cache-hit-rate')).textContent())?.trim(), '67 % (2 hits, 1 miss)');
    assert.match((await page.locator(byTestId('cache-totals')).textContent()) ?? '', /^2 data sets, 2\.3 MiB of 10\.0 MiB \(23 %\); pinned 2\.0 MiB, in use 300 KiB$/);

    // The task's data coming in: its row says so, with how far it has come.
    node.running = [{ taskId: 'fetcher', attempt: 1 }];
    node.emit('task-updated', TaskUpdate.fromPartial({ taskId: 'fetcher', attempt: 1, state: TaskState.TASK_STATE_ACCEPTED, atMs: Date.now() }));
    node.emit('task-data-progress', { taskId: 'fetcher', attempt: 1, receivedBytes: 460 * 2 ** 20, totalBytes: 2 ** 30 });
    const row = page.locator(`${byTestId('running-task')}[data-task-id="fetcher"]`);
    await row.locator(byTestId('data-progress')).filter({ hasText: '45% (460 MiB of 1.0 GiB)' }).waitFor();
    assert.equal((await row.locator('.badge').first().textContent())?.trim(), 'fetching data');
    await page.screenshot({ path: join(ARTIFACTS, 'monitor-data-cache.png'), fullPage: true });
    node.emit('task-updated', TaskUpdate.fromPartial({ taskId: 'fetcher', attempt: 1, state: TaskState.TASK_STATE_PULLING, atMs: Date.now() }));
    await row.locator(byTestId('data-progress')).waitFor({ state: 'hidden' });
    assert.deepEqual(errors, [], 'no page errors and no CSP violations');
  } finally {
    held.release();
    await browser?.close();
  }
});

test('monitor page in Chromium: the Services panel shows the replicas, their health and traffic, and opens a replica log', async (t) => {
  if (!requireChromium(t)) return;
  mkdirSync(ARTIFACTS, { recursive: true });
  const { store, node } = await monitorFixture(t);
  const now = Date.now();
  const status = (over: Partial<ReplicaStatus>): ReplicaStatus => ({ healthy: false, restarts: 0, lastExit: '', lastExitAtMs: 0, healthMessage: '', restartAtMs: 0, running: false, ...over });
  const pipe = (taskId: string, connections: number) => ({ taskId, attempt: 1, connections, open: 0, bytesIn: connections * 1024, bytesOut: connections * 4096 });
  node.replicaList = [
    { taskId: 'web-r1', attempt: 1, service: 'web', index: 1, status: status({ running: true, healthy: false, healthMessage: 'GET /healthz: status 503', restarts: 2, lastExit: 'exited with code 3', lastExitAtMs: now - 60_000 }) },
    { taskId: 'web-r0', attempt: 1, service: 'web', index: 0, status: status({ running: true, healthy: true }) },
  ];
  const refused = { source: 0, key: 1, malformed: 0, timeout: 0, 'over-limit': 0 };
  node.gateway = { port: 7946, counters: { open: 0, relayed: 10, errors: 0, refused, replicas: [pipe('web-r0', 10), pipe('web-r1', 0)] } };
  for (const r of node.replicaList) store.insertTask({ taskId: r.taskId, attempt: 1, inputSize: 0, inputSha256: '', spec: { image: IMAGE, command: ['httpd', '-f'], env: new Map(), network: 0, maxOutputBytes: 0, data: [] } }, [], now);
  node.running = node.replicaList.map((r) => ({ taskId: r.taskId, attempt: 1 }));
  const m = await MonitorServer.start({ host: '127.0.0.1', port: 0 }, { node, store, clock: systemClock, logger: silentLogger() });
  t.after(() => m.close());
  let browser: Browser | undefined;
  try {
    browser = await launch();
    const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    const errors = watchErrors(page);
    await page.goto(`http://127.0.0.1:${m.port}/monitor.html`);
    await page.locator(byTestId('connection')).filter({ hasText: 'live' }).waitFor();

    const rows = page.locator(byTestId('replica-row'));
    await rows.first().waitFor();
    assert.equal(await rows.count(), 2);
    assert.deepEqual(await rows.evaluateAll((trs) => trs.map((tr) => tr.getAttribute('data-task'))), ['web-r0', 'web-r1'], 'by replica index');
    assert.match((await page.locator(byTestId('services-gateway')).textContent()) ?? '', /^listening on port 7946: 10 connections relayed, 0 open, 0 answered with an error, 1 refused/);
    const sick = page.locator(`${byTestId('replica-row')}[data-task="web-r1"]`);
    assert.equal((await sick.locator(byTestId('replica-state')).textContent())?.trim(), 'running');
    assert.equal((await sick.locator(byTestId('replica-health')).textContent())?.trim(), 'unhealthy');
    assert.equal((await sick.locator(byTestId('replica-health-message')).textContent())?.trim(), 'GET /healthz: status 503');
    assert.equal((await sick.locator(byTestId('replica-restarts')).textContent())?.trim(), '2');
    assert.match((await sick.locator(byTestId('replica-last-exit')).textContent()) ?? '', /^exited with code 3 \(/);

    // Traffic moves: 20 more connections to replica 0 over about two seconds shows as a rate
    // (pushed by the services timer, no event needed).
    node.gateway = { port: 7946, counters: { open: 1, relayed: 30, errors: 0, refused, replicas: [pipe('web-r0', 30), pipe('web-r1', 0)] } };
    const healthy = page.locator(`${byTestId('replica-row')}[data-task="web-r0"]`);
    const rps = await waitFor('a request rate on replica 0', async () => {
      const n = Number((await healthy.locator(byTestId('replica-rps')).textContent())?.trim());
      return n > 0 ? n : undefined;
    }, 15_000);
    assert.ok(rps <= 20, `at most 20 connections over at least a second: ${rps}/s`);
    assert.equal((await healthy.locator(byTestId('replica-traffic')).textContent())?.trim(), '30.0 KiB in / 120 KiB out');

    // A replica restarting after its health checks failed: pushed on its replica-status event.
    const restarting = { ...node.replicaList[0]!, status: status({ running: false, restarts: 3, lastExit: 'unhealthy: 3 checks failed', lastExitAtMs: Date.now(), restartAtMs: Date.now() + 30_000 }) };
    node.replicaList = [node.replicaList[1]!, restarting];
    node.emit('replica-status', restarting);
    await sick.locator(byTestId('replica-state')).filter({ hasText: 'restarting' }).waitFor();
    assert.match((await sick.locator(byTestId('replica-last-exit')).textContent()) ?? '', /^unhealthy: 3 checks failed \(.*\); restarts at /);

    // Its Logs button follows the replica's live log.
    await sick.locator(byTestId('replica-logs')).click();
    node.emit('task-log', { taskId: 'web-r1', attempt: 1, stream: 'stderr', data: Buffer.from('httpd: listening on :8080\n') });
    await page.locator(byTestId('log-view')).filter({ hasText: 'httpd: listening on :8080' }).waitFor();
    await page.screenshot({ path: join(ARTIFACTS, 'monitor-services.png'), fullPage: true });
    assert.deepEqual(errors, [], 'no page errors and no CSP violations');
  } finally {
    await browser?.close();
  }
});

/** One labelled x tick as the page drew it (CSS px within the chart's canvas). */
type DrawnTick = { label: string; left: number; width: number };
type ChartAxes = { xMin: number; xMax: number; yMin: number; yMax: number; ticks: DrawnTick[]; yLabels: string[]; plotLeft: number; plotWidth: number };

/** Each chart's x and y ranges and drawn x ticks, as the page records them on the chart's box. */
async function chartAxes(page: Page, ids: string[]): Promise<Record<string, ChartAxes>> {
  const out: Record<string, ChartAxes> = {};
  for (const id of ids) {
    const raw = await page.locator(byTestId(id)).getAttribute('data-axes');
    assert.ok(raw, `${id} records its axes`);
    out[id] = JSON.parse(raw) as ChartAxes;
  }
  return out;
}

/** A labelled tick closer to its neighbour than the two half-labels and a gap: an overlap. */
function overlappingTicks(ticks: DrawnTick[], gapPx: number): string[] {
  const bad: string[] = [];
  for (let i = 1; i < ticks.length; i++) {
    const a = ticks[i - 1]!;
    const b = ticks[i]!;
    if (b.left < a.left + a.width + gapPx) bad.push(`${a.label} (${a.left.toFixed(0)}+${a.width.toFixed(0)} px) touches ${b.label} (${b.left.toFixed(0)} px)`);
  }
  return bad;
}

test('monitor page in Chromium: a node\'s charts show the hour ending now, with 0, 1, 2 and 3600 samples, in readable labels', async (t) => {
  if (!requireChromium(t)) return;
  mkdirSync(ARTIFACTS, { recursive: true });
  // A node that has reported `n` times, once a second up to now, in the order a node stores them.
  const nodeWith = async (n: number) => {
    const { store, node } = await monitorFixture(t);
    const t0 = Date.now() - (n - 1) * 1000;
    for (let i = 0; i < n; i++) {
      const atMs = t0 + i * 1000;
      store.addSample(ResourceReport.fromPartial({ atMs, cpuPercent: 20 + (i % 50), memoryUsedBytes: 300 * 2 ** 20, memoryTotalBytes: 2 ** 30, diskUsedBytes: 5 * 2 ** 30, diskTotalBytes: 20 * 2 ** 30, netRxBytesPerSec: 1000 * (i % 7), netTxBytesPerSec: 0,
        gpus: [{ index: 0, utilizationPercent: 0, memoryUsedBytes: 0, memoryTotalBytes: 8 * 2 ** 30, temperatureC: 41, powerW: 0 }] }), { maxAgeMs: 2 * 3_600_000, maxCount: 10_000 });
      store.addContribution({ atMs, intervalMs: 1000, score: 0.5 + (i % 3), multiplier: 1, cpuPercent: 20, memoryPercent: 30, gpuPercent: 0 });
    }
    const m = await MonitorServer.start({ host: '127.0.0.1', port: 0 }, { node, store, clock: systemClock, logger: silentLogger() });
    t.after(() => m.close());
    return m;
  };
  const charts = ['chart-cpu', 'chart-memory', 'chart-disk', 'chart-network', 'chart-contribution'];
  // An idle GPU (0 W, 0 %) once there is a sample: whole-unit labels must not repeat.
  const gpuCharts = ['chart-gpu0-util', 'chart-gpu0-mem', 'chart-gpu0-temp', 'chart-gpu0-power'];
  let browser: Browser | undefined;
  try {
    browser = await launch();
    const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    const errors = watchErrors(page);
    for (const [count, width] of [[0, 1400], [1, 1400], [1, 420], [2, 1400], [3600, 1400], [3600, 420]] as const) {
      const m = await nodeWith(count);
      await page.setViewportSize({ width, height: 1000 });
      await page.goto(`http://127.0.0.1:${m.port}/monitor.html`);
      await page.locator(byTestId('connection')).filter({ hasText: 'live' }).waitFor();
      // The first load's points are drawn once both API answers are in.
      // (the oldest of 3600 may have left the hour by the time the page asks for it: seeding them
      // takes seconds on a loaded machine).
      const charted = async (id: string) => Number((await page.locator(byTestId(id)).getAttribute('data-points')) ?? -1);
      const least = count > 2 ? count - 120 : count;
      await waitFor(`${count} points charted`, async () =>
        (await charted('chart-cpu')) >= least && (await charted('chart-contribution')) >= least ? true : undefined).catch(async (e: Error) => {
        throw new Error(`${e.message}: cpu ${await charted('chart-cpu')}, contribution ${await charted('chart-contribution')}`);
      });
      const shot = join(ARTIFACTS, `monitor-charts-${count}-${width}.png`);
      await page.locator('#contribution').screenshot({ path: shot.replace('.png', '-contribution.png') });
      await page.locator('#resources').screenshot({ path: shot });
      const now = Date.now();
      for (const [id, a] of Object.entries(await chartAxes(page, count > 0 ? [...charts, ...gpuCharts] : charts))) {
        const where = `${id} with ${count} samples at ${width} px`;
        assert.ok(Math.abs(a.xMax - now) < 15_000, `${where}: the x axis ends now (${new Date(a.xMax).toISOString()} vs ${new Date(now).toISOString()})`);
        assert.ok(Math.abs(a.xMax - a.xMin - 3_600_000) < 1000, `${where}: the x axis spans one hour (${(a.xMax - a.xMin) / 1000} s)`);
        assert.ok(Number.isFinite(a.yMin) && Number.isFinite(a.yMax) && a.yMax > a.yMin, `${where}: a sane y range [${a.yMin}, ${a.yMax}]`);
        assert.ok(a.ticks.length >= 2, `${where}: at least two time labels (${JSON.stringify(a.ticks)})`);
        for (const tk of a.ticks) {
          assert.match(tk.label, /^\d\d:\d\d$/, `${where}: a clock label`);
          assert.ok(tk.left >= a.plotLeft - tk.width && tk.left + tk.width <= a.plotLeft + a.plotWidth + tk.width, `${where}: ${tk.label} within the plot`);
        }
        assert.deepEqual(overlappingTicks(a.ticks, 8), [], `${where}: time labels apart`);
        assert.equal(new Set(a.yLabels).size, a.yLabels.length, `${where}: distinct value labels (${a.yLabels.join(', ')})`);
      }
    }
    // No new sample: the window still moves on with the clock (every 10 s).
    const before = (await chartAxes(page, ['chart-contribution']))['chart-contribution']!.xMax;
    await waitFor('the x window moving on', async () => ((await chartAxes(page, ['chart-contribution']))['chart-contribution']!.xMax > before + 5000 ? true : undefined), 15_000, 500);
    assert.deepEqual(errors, [], 'no page errors and no CSP violations');
  } finally {
    await browser?.close();
  }
});
