// End to end: `hivemind master start` and `hivemind worker start` as separate processes, driven
// through the CLI exactly as a user would: submit with input, wait, logs, result, failures.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { credentials } from '@grpc/grpc-js';
import { AdminClient } from '../../src/client/admin-client.js';
import { bearerMetadata } from '../../src/protocol/auth-metadata.js';
import { NodeServiceClient } from '../../src/protocol/gen/hivemind/v1/node.js';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { requireDockerImage } from '../helpers/requirements.js';
import { ProcessCluster } from '../helpers/process-cluster.js';
import { CliDaemon, freePort, runCli, waitFor } from '../helpers/cli-process.js';
import { recordHostile } from '../helpers/fault-ledger.js';
import { TEST_STORE, freshPgSchema } from '../helpers/test-store.js';
import { openMasterSql } from '../../src/master/sql/open-master-sql.js';

const IMAGE = 'hivemind/busybox:1';

test('a task goes from `hivemind submit` through the master to the worker and back as a result', async (t) => {
  if (!requireDockerImage(t, IMAGE)) return;
  const cluster = await ProcessCluster.start();
  const scratch = mkdtempSync(join(tmpdir(), 'hm-e2e-files-'));
  try {
    const input = join(scratch, 'in');
    mkdirSync(join(input, 'sub'), { recursive: true });
    writeFileSync(join(input, 'sub', 'a.txt'), 'payload from the input\n');

    const sub = await cluster.cli(['submit', '--image', IMAGE, '--input', input, '--memory', '64m', '--cpus', '0.5', '--',
      'sh', '-c', 'cat /input/sub/a.txt > /output/b.txt; echo "id=$HIVEMIND_TASK_ID"; echo to-stderr >&2']);
    assert.equal(sub.code, 0, sub.stderr);
    const taskId = sub.stdout.trim();
    assert.match(taskId, /^\S+$/);

    const wait = await cluster.cli(['wait', taskId]);
    assert.equal(wait.code, 0, `wait: ${wait.stdout} ${wait.stderr}\nworker: ${cluster.worker?.output}`);
    assert.match(wait.stdout, /succeeded/);

    const logs = await cluster.cli(['logs', taskId]);
    assert.equal(logs.code, 0, logs.stderr);
    assert.match(logs.stdout + logs.stderr, new RegExp(`id=${taskId}`));
    assert.match(logs.stdout + logs.stderr, /to-stderr/);

    const out = join(scratch, 'result.tar.gz');
    const res = await cluster.cli(['result', taskId, '-o', out, '--extract', join(scratch, 'result')]);
    assert.equal(res.code, 0, res.stderr);
    assert.equal(readFileSync(join(scratch, 'result', 'b.txt'), 'utf8'), 'payload from the input\n');
    const sha = execFileSync('sha256sum', [out]).toString().split(' ')[0];
    const info = JSON.parse((await cluster.cli(['get', taskId, '--json'])).stdout) as { outcome: { resultSha256: string }; events: unknown[] };
    assert.equal(info.outcome.resultSha256, sha, 'the downloaded archive matches the sha256 the worker reported');
    assert.ok(info.events.length >= 4, 'state transitions are recorded');

    // a failing task: `wait` exits with the task's exit code
    const fail = await cluster.cli(['submit', '--image', IMAGE, '--wait', '--', 'sh', '-c', 'echo oops >&2; exit 3']);
    assert.equal(fail.code, 3, fail.stdout + fail.stderr);
    assert.match(fail.stdout, /failed/);

    // an image that does not exist fails to start, with the engine's message
    const missing = await cluster.cli(['submit', '--image', 'hivemind/does-not-exist:1', '--wait', '--', 'true']);
    assert.equal(missing.code, 1, missing.stdout + missing.stderr);
    assert.match(missing.stdout, /start_failed/);

    const list = await cluster.cli(['tasks', '--json']);
    assert.equal((JSON.parse(list.stdout) as unknown[]).length, 3);
    const nodes = await cluster.cli(['nodes']);
    assert.match(nodes.stdout, /online/);
    // The PostgreSQL pass ran all of the above on `--store postgres://`, not on a SQLite file.
    assert.equal(existsSync(join(cluster.home, 'master', 'master.db')), TEST_STORE === 'sqlite', `master.db in the data dir (store ${TEST_STORE})`);
  } finally {
    await cluster.close();
    rmSync(scratch, { recursive: true, force: true });
  }
});

test('SIGTERM drains: the running task finishes and is delivered, then the worker exits 0', async (t) => {
  if (!requireDockerImage(t, IMAGE)) return;
  const cluster = await ProcessCluster.start();
  try {
    const sub = await cluster.cli(['submit', '--image', IMAGE, '--', 'sh', '-c', 'sleep 3; echo finished > /output/done']);
    const taskId = sub.stdout.trim();
    // wait until it runs, then ask the worker to stop
    for (let i = 0; i < 100; i++) {
      const g = JSON.parse((await cluster.cli(['get', taskId, '--json'])).stdout) as { state: string };
      if (g.state === 'running') break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const code = await cluster.worker!.stop('SIGTERM', 60_000);
    assert.equal(code, 0, cluster.worker!.output);
    const got = await cluster.cli(['get', taskId]);
    assert.match(got.stdout, /state\s+succeeded/, `${got.stdout}\nworker:\n${cluster.worker!.output}\nmaster:\n${cluster.master.output}`);
  } finally {
    await cluster.close();
  }
});

test('bad configuration exits 2 with a message naming the setting', async () => {
  const env = { PATH: process.env.PATH, HIVEMIND_HOME: mkdtempSync(join(tmpdir(), 'hm-badcfg-')) };
  const r = await runCli(['worker', 'start', '--master', 'nowhere', '--token', 'x'], env);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /--master: expected HOST:PORT/);
  const r2 = await runCli(['worker', 'start', '--master', '127.0.0.1:1'], { ...env, HIVEMIND_MAX_TASKS: 'many' });
  assert.equal(r2.code, 2);
  assert.match(r2.stderr, /HIVEMIND_MAX_TASKS/);
  const r5 = await runCli(['worker', 'start'], env);
  assert.equal(r5.code, 2, r5.stderr);
  assert.match(r5.stderr, /--master is required .* join token/);
  const r3 = await runCli(['tasks'], env);
  assert.equal(r3.code, 2);
  assert.match(r3.stderr, /hivemind dev/);
  const r4 = await runCli(['submit', '--image', 'x', '--memory', 'lots', '--', 'true'], { ...env, HIVEMIND_MASTER: '127.0.0.1:1', HIVEMIND_ADMIN_TOKEN: 't' });
  assert.equal(r4.code, 2);
  assert.match(r4.stderr, /--memory: "lots" is not a size/);
  rmSync(env.HIVEMIND_HOME, { recursive: true, force: true });
});

test('a bad config file or an unusable data dir exits 2 naming the file, the line or key, and the fix', async () => {
  const home = mkdtempSync(join(tmpdir(), 'hm-cfgfile-'));
  const env = { PATH: process.env.PATH, HIVEMIND_HOME: home };
  const file = (name: string, text: string) => {
    writeFileSync(join(home, name), text);
    return join(home, name);
  };
  const withConfig = (path: string) => ['--config', path, 'worker', 'start', '--master', '127.0.0.1:1'];
  const withDataDir = (dir: string) => ['worker', 'start', '--master', '127.0.0.1:1', '--data-dir', dir];
  const cases: { name: string; args: string[]; want: RegExp }[] = [
    { name: 'malformed JSON', args: withConfig(file('syntax.json', '{\n  "worker": {\n    "maxTasks": 2,,\n  }\n}\n')), want: /syntax\.json is not valid JSON at line 3, column 19: .*\n  3 \|     "maxTasks": 2,,\n.*\^\nfix the JSON there/ },
    { name: 'unknown key', args: withConfig(file('typo.json', '{"worker": {"maxTask": 2}}')), want: /typo\.json line 1: unknown key "worker\.maxTask"; did you mean "maxTasks"\? \(known keys: .*maxTasks/ },
    { name: 'wrong type', args: withConfig(file('type.json', '{"worker": {"maxTasks": "two"}}')), want: /"worker\.maxTasks" in .*type\.json line 1: expected a number/ },
    { name: 'not an object', args: withConfig(file('array.json', '[1, 2]')), want: /must hold a JSON object/ },
    { name: 'missing file', args: withConfig(join(home, 'nope.json')), want: /cannot read config file .*nope\.json: ENOENT.*; pass an existing file to --config/ },
    { name: 'data dir is a file', args: withDataDir(file('plain-file', 'x')), want: /data directory \S+plain-file is not usable \(\S+ is not a directory\): choose a writable directory with --data-dir \(or HIVEMIND_DATA_DIR\), or fix its owner and permissions/ },
    { name: 'data dir under /proc', args: withDataDir('/proc/hivemind-worker'), want: /data directory \/proc\/hivemind-worker is not usable \(.+\): choose a writable directory with --data-dir/ },
  ];
  for (const c of cases) {
    const r = await runCli(c.args, env, 20_000);
    recordHostile(`config: ${c.name}`, r.code !== 2);
    assert.equal(r.code, 2, `${c.name}: ${r.stdout}${r.stderr}`);
    assert.match(r.stderr, c.want, c.name);
    assert.doesNotMatch(r.stderr, /\n\s+at /, `${c.name}: no stack trace`);
  }
  rmSync(home, { recursive: true, force: true });
});

test('worker start --log-file writes its log there, not to stderr (for service managers that keep no output)', async () => {
  const home = mkdtempSync(join(tmpdir(), 'hm-logfile-'));
  const logFile = join(home, 'logs', 'worker.log');
  // a master that is not there: the worker keeps retrying and logs it
  const worker = new CliDaemon(['worker', 'start', '--master', `127.0.0.1:${await freePort()}`, '--data-dir', join(home, 'w'), '--token', 'hm1.example', '--monitor-port', '0', '--log-file', logFile], { PATH: process.env.PATH, HIVEMIND_HOME: home });
  try {
    const read = () => { try { return readFileSync(logFile, 'utf8'); } catch { return ''; } };
    await waitFor('log lines in the file', () => {
      if (worker.child.exitCode !== null) throw new Error(worker.output);
      return read().split('\n').filter(Boolean).length >= 2 || undefined;
    }, 30_000);
    assert.equal(await worker.stop('SIGTERM'), 0, worker.output);
    const msgs = read().split('\n').filter(Boolean).map((l) => (JSON.parse(l) as { msg: string }).msg);
    assert.ok(msgs.length >= 2, msgs.join('\n'));
    assert.doesNotMatch(worker.output, /"level":\d+/, 'no log lines on stderr');
    assert.doesNotMatch(read(), /hm1\.example/, 'the token is not logged');
  } finally {
    await worker.stop('SIGKILL');
    rmSync(home, { recursive: true, force: true });
  }
});

test('a worker stopped (SIGTERM) while it is still starting drains and exits 0: it is not killed by the signal', async () => {
  const home = mkdtempSync(join(tmpdir(), 'hm-earlystop-'));
  // a master that is not there; the signal goes in as soon as start() opens the gateway pipe, before
  // its first call to the master has settled
  const worker = new CliDaemon(['worker', 'start', '--master', `127.0.0.1:${await freePort()}`, '--data-dir', join(home, 'w'), '--token', 'hm1.example', '--monitor-port', '0', '--gateway-port', '0'], { PATH: process.env.PATH, HIVEMIND_HOME: home });
  try {
    await waitFor('the worker to be starting', () => {
      if (worker.child.exitCode !== null) throw new Error(worker.output);
      return /gateway pipe listening|services are off|the gateway pipe did not open/.test(worker.output) || undefined;
    }, 30_000, 5);
    assert.equal(await worker.stop('SIGTERM'), 0, worker.output);
    assert.match(worker.output, /shutting down: draining running tasks/);
  } finally {
    await worker.stop('SIGKILL');
    rmSync(home, { recursive: true, force: true });
  }
});

test('`hivemind dev` runs a master and a worker, and the admin commands find it with no flags', async (t) => {
  if (!requireDockerImage(t, IMAGE)) return;
  const home = mkdtempSync(join(tmpdir(), 'hm-dev-'));
  const env = { PATH: process.env.PATH, HOME: home, HIVEMIND_HOME: home };
  const port = await freePort();
  const monitorPort = await freePort();
  const dev = new CliDaemon(['dev', '--port', String(port), '--report-interval', '1s', '--monitor-port', String(monitorPort)], env);
  try {
    await waitFor('hivemind dev to be up', () => {
      if (dev.child.exitCode !== null) throw new Error(dev.output);
      return /HiveMind dev is up/.test(dev.output) || undefined;
    }, 60_000);
    assert.match(dev.output, /hivemind submit --image hivemind\/busybox:1/, 'it prints how to submit a first task');
    assert.match(dev.output, new RegExp(`Monitor: http://127\\.0\\.0\\.1:${monitorPort}/monitor\\.html`), 'it prints the monitor address');
    assert.equal((await fetch(`http://127.0.0.1:${monitorPort}/healthz`)).status, 200);
    const r = await runCli(['submit', '--image', IMAGE, '--wait', '--', 'sh', '-c', 'echo hi > /output/hi'], env);
    assert.equal(r.code, 0, r.stdout + r.stderr + dev.output);
    assert.match(r.stdout, /succeeded/);
    assert.equal(await dev.stop('SIGINT'), 0, dev.output);
  } finally {
    await dev.stop('SIGKILL');
    rmSync(home, { recursive: true, force: true });
  }
});

test('an old Node gets a clear message, not a stack trace from a dependency', async (t) => {
  const { execFileSync: run } = await import('node:child_process');
  const { CLI } = await import('../helpers/cli-process.js');
  const old = '/usr/bin/node';
  let version = '';
  try {
    version = run(old, ['--version']).toString().trim();
  } catch {
    // no system Node
  }
  const major = Number(version.replace(/^v/, '').split('.')[0]);
  if (!(major > 0 && major < 22)) {
    t.skip(`needs a Node older than 22 at ${old} (found ${version || 'none'})`);
    return;
  }
  const entry = join(CLI, '..', 'hivemind.js');
  let out = '';
  let code = 0;
  try {
    run(old, [entry, '--version'], { stdio: 'pipe' });
  } catch (err) {
    const e = err as { status: number; stderr: Buffer };
    code = e.status;
    out = e.stderr.toString();
  }
  assert.equal(code, 1);
  assert.match(out, new RegExp(`needs Node\\.js 22 or newer .* this is ${version.replace(/\./g, '\\.')}`));
  assert.doesNotMatch(out, /TypeError|at .*node_modules/);
});

test('`hivemind tasks` and `hivemind nodes` (and --json) list page by page: 5 MB of tasks and a node with 3 MB of facts', async (t) => {
  const home = mkdtempSync(join(tmpdir(), 'hm-list-'));
  const port = await freePort();
  const address = `127.0.0.1:${port}`;
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: home, HIVEMIND_HOME: home, HIVEMIND_MASTER: address };
  const pgUrl = TEST_STORE === 'postgres' ? freshPgSchema().url : undefined;
  const master = new CliDaemon(['master', 'start', '--listen', address, '--data-dir', join(home, 'master'), ...(pgUrl ? ['--store', pgUrl] : [])], env);
  t.after(async () => {
    await master.stop('SIGKILL');
    rmSync(home, { recursive: true, force: true });
  });
  const tokenFile = join(home, 'master', 'admin.token');
  await waitFor('the master admin token', () => (existsSync(tokenFile) && readFileSync(tokenFile, 'utf8').trim()) || undefined);
  env.HIVEMIND_ADMIN_TOKEN = readFileSync(tokenFile, 'utf8').trim();
  const admin = AdminClient.connect(address, env.HIVEMIND_ADMIN_TOKEN);
  t.after(() => admin.close());
  await waitFor('the master to answer', () => admin.listTokens().then(() => true, () => undefined));
  // 80 tasks with a 60 kB argument (they need a GPU, so they stay queued): 4.8 MB in all.
  const ids: string[] = [];
  for (let i = 0; i < 80; i++) ids.push(await admin.submit({ image: IMAGE, command: ['echo', 'x'.repeat(60_000)], limits: { cpus: 0, memoryBytes: 0, pids: 0, gpus: 1, timeoutMs: 0 } }));
  // A node whose stored facts carry 3 MB of labels.
  const { token } = await admin.createToken();
  const nodes = new NodeServiceClient(address, credentials.createInsecure());
  t.after(() => nodes.close());
  const nodeId = await new Promise<string>((resolve, reject) => nodes.register({ name: 'big', facts: undefined }, bearerMetadata(token), (e, r) => (e ? reject(e) : resolve(r.nodeId))));
  // Written behind the master's back (no API stores facts this big), in whichever store it runs on.
  const db = openMasterSql(pgUrl ? { kind: 'postgres', url: pgUrl } : join(home, 'master', 'master.db'));
  db.prepare('UPDATE nodes SET facts = ? WHERE id = ?').run(JSON.stringify({ hostname: 'big', labels: { a: 'z'.repeat(1_500_000), b: 'z'.repeat(1_500_000) } }), nodeId);
  db.close();

  const all = await runCli(['tasks', '--limit', '0', '--json'], env);
  recordHostile('cli: `hivemind tasks --json` over 4.8 MB of tasks', all.code !== 0);
  assert.equal(all.code, 0, all.stderr);
  assert.deepEqual((JSON.parse(all.stdout) as { taskId: string }[]).map((x) => x.taskId), [...ids].reverse());
  const table = await runCli(['tasks'], env);
  assert.equal(table.code, 0, table.stderr);
  assert.equal(table.stdout.trim().split('\n').length, 81, 'a header and the 80 tasks (the default limit is 100)');
  const five = await runCli(['tasks', '--limit', '5', '--json'], env);
  assert.deepEqual((JSON.parse(five.stdout) as { taskId: string }[]).map((x) => x.taskId), [...ids].reverse().slice(0, 5));
  const bad = await runCli(['tasks', '--limit', '-1'], env);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--limit: "-1" is not a whole number/);

  for (const args of [['nodes'], ['nodes', '--json']]) {
    const r = await runCli(args, env);
    recordHostile(`cli: \`hivemind ${args.join(' ')}\` with a node holding 3 MB of facts`, r.code !== 0);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(nodeId));
  }
  const json = JSON.parse((await runCli(['nodes', '--json'], env)).stdout) as { truncated: boolean; facts: { labels: Record<string, string> } }[];
  assert.equal(json[0]!.truncated, true);
  assert.match(json[0]!.facts.labels['a']!, /…\(1500000 bytes\)$/);
  // The node can be removed by the id the listing gave.
  assert.equal((await runCli(['nodes', 'remove', nodeId], env)).code, 0);
});
