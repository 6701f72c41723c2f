// Two masters on one PostgreSQL schema and one shared data dir, one active and one standby: the
// active one is killed with -9 while tasks run, the standby takes the lease over and serves.
// Every task ends exactly once with its result delivered (the fault summary: lost 0, duplicated 0),
// and the standby's /readyz says 503 before and 200 after. The worker and the CLI are given both
// masters (`--master a,b`, HIVEMIND_MASTER=a,b) and find the active one by themselves, before and
// after the failover. And a master whose lease is taken over exits 1.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CliDaemon, fileExists, freePort, runCli, waitFor } from '../helpers/cli-process.js';
import { judgeFailoverTask, recordScenario, type EndedTaskInfo } from '../helpers/fault-ledger.js';
import { requireDockerImage, requirePostgres } from '../helpers/requirements.js';
import { freshPgSchema, testPgUrl } from '../helpers/test-store.js';
import { PgDriver } from '../../src/master/sql/pg-driver.js';

const IMAGE = 'hivemind/busybox:1';
// Two: the worker offers this host's CPUs, and the test hosts have two.
const TASKS = 2;

async function readyz(port: number): Promise<{ status: number; body: string } | undefined> {
  try {
    const r = await fetch(`http://127.0.0.1:${port}/readyz`, { signal: AbortSignal.timeout(1000) });
    return { status: r.status, body: await r.text() };
  } catch {
    return undefined;
  }
}


test('kill -9 of the active master while tasks run: the standby takes over, every task ends once with its result', async (t) => {
  if (!requirePostgres(t, testPgUrl()) || !requireDockerImage(t, IMAGE)) return;
  const home = mkdtempSync(join(tmpdir(), 'hm-standby-'));
  const shared = join(home, 'master');
  const { url } = freshPgSchema();
  const masters: { name: string; grpc: number; ops: number; daemon?: CliDaemon }[] = [];
  for (const name of ['a', 'b']) masters.push({ name, grpc: await freePort(), ops: await freePort() });
  const startMaster = (m: (typeof masters)[number]) => {
    // Each its own HIVEMIND_HOME (the local pointer); the data dir is the shared one.
    const mhome = join(home, `home-${m.name}`);
    m.daemon = new CliDaemon(
      ['master', 'start', '--listen', `127.0.0.1:${m.grpc}`, '--data-dir', shared, '--store', url, '--lease', '2s', '--report-interval', '1s', '--metrics-listen', `127.0.0.1:${m.ops}`, '--gateway-listen', 'off'],
      { PATH: process.env.PATH, HOME: mhome, HIVEMIND_HOME: mhome, HIVEMIND_LOG_LEVEL: 'info' },
    );
  };
  let worker: CliDaemon | undefined;
  const outputs = () => masters.map((m) => `${m.name}:\n${m.daemon?.output ?? ''}`).join('\n');
  try {
    const [a, b] = masters as [(typeof masters)[number], (typeof masters)[number]];
    startMaster(a);
    await waitFor('master a active', async () => (await readyz(a.ops))?.status === 200 || undefined, 30_000, 100);
    startMaster(b);
    const standby = await waitFor('master b listening as a standby', async () => {
      const r = await readyz(b.ops);
      // "starting" comes first, while its listener (and RPC thread) comes up.
      return r?.status === 503 && !/^not ready: starting/.test(r.body) ? r : undefined;
    }, 30_000, 100);
    assert.match(standby.body, /standby: master \S+ holds the lease/);
    const tokenFile = join(shared, 'admin.token');
    assert.ok(fileExists(tokenFile));
    const adminToken = readFileSync(tokenFile, 'utf8').trim();
    // The standby refuses the CLI with the agreed message.
    const refused = await runCli(['nodes', '--json'], { PATH: process.env.PATH, HOME: home, HIVEMIND_HOME: home, HIVEMIND_MASTER: `127.0.0.1:${b.grpc}`, HIVEMIND_ADMIN_TOKEN: adminToken }, 30_000);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /standby master: \S+ is active/);

    // Both masters, the standby first: the CLI and the worker skip it and use the active one.
    const both = `127.0.0.1:${b.grpc},127.0.0.1:${a.grpc}`;
    const env = { PATH: process.env.PATH, HOME: home, HIVEMIND_HOME: home, HIVEMIND_MASTER: both, HIVEMIND_ADMIN_TOKEN: adminToken };
    const cli = (args: string[], timeoutMs = 30_000) => runCli(args, env, timeoutMs);
    const listed = await cli(['nodes', '--json']);
    assert.equal(listed.code, 0, listed.stderr);
    const tok = await cli(['token', 'create']);
    assert.equal(tok.code, 0, tok.stderr);
    worker = new CliDaemon(
      ['worker', 'start', '--master', both, '--token', tok.stdout.trim(), '--data-dir', join(home, 'worker'), '--report-interval', '1s', '--max-tasks', String(TASKS)],
      { ...env, HIVEMIND_MASTER: undefined, HIVEMIND_GATEWAY_PORT: '0', HIVEMIND_MONITOR_PORT: '0' },
    );
    const ids: string[] = [];
    for (let i = 0; i < TASKS; i++) {
      const s = await cli(['submit', '--image', IMAGE, '--', 'sh', '-c', `sleep 8; echo task-${i} > /output/r.txt`]);
      assert.equal(s.code, 0, s.stderr);
      ids.push(s.stdout.trim());
    }
    await waitFor('every task running', async () => {
      for (const id of ids) if ((JSON.parse((await cli(['get', id, '--json'])).stdout) as EndedTaskInfo).state !== 'running') return undefined;
      return true;
    }, 90_000, 250);

    a.daemon!.child.kill('SIGKILL');
    const killedAt = Date.now();
    await a.daemon!.exited;
    await waitFor('master b to take over', async () => (await readyz(b.ops))?.status === 200 || undefined, 30_000, 50);
    const failoverMs = Date.now() - killedAt;
    t.diagnostic(`standby ready ${failoverMs} ms after the kill (lease 2 s)`);

    let delivered = 0;
    let duplicated = 0;
    const problems: string[] = [];
    for (const [i, id] of ids.entries()) {
      const w = await cli(['wait', id], 120_000);
      const info = JSON.parse((await cli(['get', id, '--json'])).stdout) as EndedTaskInfo;
      const dir = join(home, `result-${id}`);
      const r = await cli(['result', id, '-o', `${dir}.tar.gz`, '--extract', dir]);
      const ok = w.code === 0 && info.state === 'succeeded' && r.code === 0 && readFileSync(join(dir, 'r.txt'), 'utf8') === `task-${i}\n`;
      const judged = judgeFailoverTask(id, info, ok, outputs(), `${w.stderr} ${r.stderr}`);
      if (judged.delivered) delivered++;
      if (judged.duplicated) duplicated++;
      problems.push(...judged.problems);
    }
    recordScenario({ name: 'active master killed -9, standby took over (PostgreSQL)', faults: 1, submitted: TASKS, delivered, lost: TASKS - delivered, duplicated });
    assert.deepEqual(problems, []);
    assert.equal(delivered, TASKS);
    assert.ok(failoverMs < 10_000, `the standby took ${failoverMs} ms`);
    assert.match(b.daemon!.output, /master lease taken: this master is active/);
  } catch (err) {
    // The processes' logs explain a failure better than the assertion alone.
    throw new Error(`${String(err)}\n${outputs()}\nworker:\n${worker?.output ?? ''}`, { cause: err });
  } finally {
    await worker?.stop('SIGTERM');
    for (const m of masters) await m.daemon?.stop('SIGTERM');
    rmSync(home, { recursive: true, force: true });
  }
});

test('master start: a master whose lease is taken over stops serving and exits 1, saying why', async (t) => {
  if (!requirePostgres(t, testPgUrl())) return;
  const home = mkdtempSync(join(tmpdir(), 'hm-standby-'));
  const { url } = freshPgSchema();
  const [grpc, ops] = [await freePort(), await freePort()];
  const master = new CliDaemon(
    ['master', 'start', '--listen', `127.0.0.1:${grpc}`, '--data-dir', join(home, 'master'), '--store', url, '--lease', '1s', '--metrics-listen', `127.0.0.1:${ops}`, '--gateway-listen', 'off'],
    { PATH: process.env.PATH, HOME: home, HIVEMIND_HOME: home, HIVEMIND_LOG_LEVEL: 'info' },
  );
  const db = PgDriver.open(url);
  try {
    await waitFor('the master active', async () => (await readyz(ops))?.status === 200 || undefined, 30_000, 100);
    db.prepare("UPDATE master_lease SET holder = 'another-host:1:abc', epoch = epoch + 1").run();
    const code = await Promise.race([master.exited, new Promise<string>((r) => setTimeout(() => r('still running after 10 s'), 10_000))]);
    assert.equal(code, 1, master.output);
    assert.match(master.output, /"reason":"the master lease \(epoch 1\) was taken over or had ended".*"msg":"master lease lost: exiting so that this master restarts as a standby"/);
  } finally {
    db.close();
    await master.stop('SIGKILL');
    rmSync(home, { recursive: true, force: true });
  }
});
