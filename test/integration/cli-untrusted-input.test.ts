// The `hivemind` CLI as a process against a real master (gRPC, SQLite or PostgreSQL) that holds what a hostile
// node sent: a name and outcome messages full of terminal controls, and a gzip bomb as a result.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createGzip } from 'node:zlib';
import { status, type ServiceError } from '@grpc/grpc-js';
import tarStream from 'tar-stream';
import { AdminClient } from '../../src/client/admin-client.js';
import { Master } from '../../src/master/master.js';
import { OutcomeKind, TaskState } from '../../src/protocol/gen/hivemind/v1/common.js';
import { runCli, type CliResult } from '../helpers/cli-process.js';
import { recordHostile } from '../helpers/fault-ledger.js';
import { ScriptedNode } from '../helpers/scripted-node.js';
import { masterStoreOption } from '../helpers/test-store.js';

// Window title, clear screen, red, an 8-bit CSI, a right-to-left override, a carriage return.
const HOSTILE = '\u001b]0;owned\u0007\u001b[2J\u001b[31m\u009b2J\u202eevil\rX';
const RAW_CONTROL = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/;

async function harness(t: TestContext) {
  const dir = await mkdtemp(join(tmpdir(), 'hm-cli-untrusted-'));
  const master = await Master.create({ listenAddress: '127.0.0.1:0', gatewayListen: '127.0.0.1:0', dataDir: join(dir, 'master'), shutdownGraceMs: 200, ...masterStoreOption() });
  const address = await master.start();
  const adminToken = (await readFile(master.adminTokenPath, 'utf8')).trim();
  const admin = AdminClient.connect(address, adminToken);
  const nodes: ScriptedNode[] = [];
  t.after(async () => {
    for (const n of nodes) n.close();
    admin.close();
    await master.close();
    await rm(dir, { recursive: true, force: true });
  });
  const cli = (args: string[]): Promise<CliResult> => runCli([...args, '--master', address, '--admin-token', adminToken], { ...process.env, HOME: dir, HIVEMIND_CONFIG: '' }, 60_000);
  const node = async (name: string): Promise<{ node: ScriptedNode; refusedName: boolean }> => {
    const n = new ScriptedNode(address);
    nodes.push(n);
    try {
      await n.register((await admin.createToken()).token, name);
      return { node: n, refusedName: false };
    } catch (err) {
      // A master that validates node names may refuse this one: the outcome path is still tested.
      if ((err as ServiceError).code !== status.INVALID_ARGUMENT) throw err;
      await n.register((await admin.createToken()).token, 'plain-name');
      return { node: n, refusedName: true };
    }
  };
  return { dir, admin, cli, node };
}

test('nodes, tasks, get and wait print a hostile node name and outcome message escaped, never raw', async (t) => {
  const h = await harness(t);
  const { node, refusedName } = await h.node(HOSTILE);
  const taskId = await h.admin.submit({ image: 'busybox', command: ['true'] });
  node.online();
  const a = await node.nextAssignment();
  assert.equal(a.taskId, taskId);
  await node.update(taskId, 1, TaskState.TASK_STATE_ACCEPTED, HOSTILE);
  await node.update(taskId, 1, TaskState.TASK_STATE_RUNNING, HOSTILE);
  await node.update(taskId, 1, TaskState.TASK_STATE_FAILED, HOSTILE, {
    kind: OutcomeKind.OUTCOME_KIND_EXITED, exitCode: 3, message: HOSTILE, durationMs: 10, resultSize: 0, resultSha256: '',
  });

  const runs: Record<string, CliResult> = {
    nodes: await h.cli(['nodes']),
    tasks: await h.cli(['tasks']),
    get: await h.cli(['get', taskId]),
    wait: await h.cli(['wait', taskId]),
    'nodes --json': await h.cli(['nodes', '--json']),
    'get --json': await h.cli(['get', taskId, '--json']),
    // The master's NOT_FOUND quotes the id it was given.
    'get (error)': await h.cli(['get', `no-such-${HOSTILE}`]),
  };
  const leaked = Object.entries(runs).filter(([, r]) => RAW_CONTROL.test(r.stdout) || RAW_CONTROL.test(r.stderr)).map(([k]) => k);
  recordHostile('CLI: terminal controls in a node name and outcome messages, through a real master', leaked.length, Object.keys(runs).length);
  assert.deepEqual(leaked, [], leaked.map((k) => `${k}: ${JSON.stringify(runs[k])}`).join('\n'));
  assert.equal(runs.nodes!.code, 0, runs.nodes!.stderr);
  if (!refusedName) assert.match(runs.nodes!.stdout, /\\x1b\]0;owned\\x07\\x1b\[2J/);
  assert.match(runs.get!.stdout, /outcome {3}exited, exit 3, 10ms, \\x1b\]0;owned\\x07\\x1b\[2J\\x1b\[31m\\x9b2J\\u202eevil\\rX/);
  assert.match(runs.tasks!.stdout, /\\x1b\[31m/);
  assert.equal(runs.wait!.code, 3, 'wait exits with the task\'s exit code');
  assert.equal((JSON.parse(runs['get --json']!.stdout) as { outcome: { message: string } }).outcome.message, HOSTILE, '--json keeps the exact value');
  assert.notEqual(runs['get (error)']!.code, 0);
  assert.match(runs['get (error)']!.stderr, /no-such-\\x1b/);
});

/** A tar.gz holding one file of `size` zero bytes, made in 1 MiB steps. */
async function zeroBomb(size: number): Promise<Buffer> {
  const pack = tarStream.pack();
  const gz = pack.pipe(createGzip({ level: 9 }));
  const parts: Buffer[] = [];
  gz.on('data', (d: Buffer) => parts.push(d));
  const done = new Promise<void>((resolve, reject) => {
    gz.on('end', () => resolve());
    gz.on('error', reject);
  });
  const entry = pack.entry({ name: 'zeros', size }, (err) => (err ? gz.destroy(err) : pack.finalize()));
  const mib = Buffer.alloc(1024 ** 2);
  for (let left = size; left > 0; left -= mib.length) {
    if (!entry.write(left >= mib.length ? mib : mib.subarray(0, left))) await new Promise<void>((r) => entry.once('drain', () => r()));
  }
  (entry as unknown as { end(): void }).end();
  await done;
  return Buffer.concat(parts);
}

test('result --extract of a 256 MiB gzip bomb for a task capped at 1 MiB stops at the cap, names the flag, and leaves nothing', async (t) => {
  const h = await harness(t);
  const { node } = await h.node('bomber');
  const taskId = await h.admin.submit({ image: 'busybox', command: ['true'], maxOutputBytes: 1024 ** 2 });
  node.online();
  await node.nextAssignment();
  await node.update(taskId, 1, TaskState.TASK_STATE_ACCEPTED);
  await node.update(taskId, 1, TaskState.TASK_STATE_RUNNING);
  const bomb = await zeroBomb(256 * 1024 ** 2);
  const stored = await node.upload(taskId, 1, bomb);
  await node.update(taskId, 1, TaskState.TASK_STATE_SUCCEEDED, '', {
    kind: OutcomeKind.OUTCOME_KIND_EXITED, exitCode: 0, message: '', durationMs: 10, resultSize: stored.size, resultSha256: stored.sha256,
  });

  const work = join(h.dir, 'work');
  const archive = join(work, 'r.tar.gz');
  const dest = join(work, 'out');
  await mkdir(work);
  const started = Date.now();
  const r = await h.cli(['result', taskId, '-o', archive, '--extract', dest]);
  const tookMs = Date.now() - started;
  const left = existsSync(work) ? (await readdir(work)).filter((n) => n !== 'r.tar.gz') : [];
  recordHostile("CLI: result --extract of a gzip bomb (256 MiB of zeros in a small gzip) for a task capped at 1 MiB", r.code === 0 || left.length > 0, 1);
  t.diagnostic(`bomb: ${bomb.length} bytes of gzip for 256 MiB; refused in ${tookMs} ms`);
  assert.equal(r.code, 1, `stdout: ${r.stdout}\nstderr: ${r.stderr}`);
  assert.match(r.stderr, new RegExp(`task ${taskId}: the result unpacks to more than 1\\.0 MiB \\(the task's max output\\), stopped at "zeros"; nothing was extracted`));
  assert.match(r.stderr, /--max-extract SIZE/);
  assert.deepEqual(left, [], 'no extracted file, no staging directory');
  assert.equal((await stat(archive)).size, bomb.length, 'the verified archive is kept');

  // Raising the cap names the flag as the source; still under 256 MiB, still nothing left.
  const raised = await h.cli(['result', taskId, '-o', archive, '--extract', dest, '--max-extract', '2m']);
  assert.equal(raised.code, 1);
  assert.match(raised.stderr, /more than 2\.0 MiB \(--max-extract\)/);
  assert.deepEqual((await readdir(work)).filter((n) => n !== 'r.tar.gz'), []);
});
