// The CLI follows a task across a failover: two real masters on one PostgreSQL store and one data
// dir (A active, B standby), a worker on both, a task printing numbered lines on stdout and
// stderr. `hivemind submit --wait`, `hivemind logs --follow` and `hivemind wait`, given both
// addresses and attached to A, keep going when A is killed with -9 and B takes over, and end on B
// when the task ends: every line printed exactly once, the exit codes the task's. An exec session
// relayed by A ends with a message saying it does not move.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CliDaemon, fileExists, runCli, waitFor } from '../helpers/cli-process.js';
import { twoMasters } from '../helpers/two-masters.js';

const IMAGE = 'hivemind/busybox:1';
const LINES = 60;

test('hivemind wait, logs --follow and submit --wait go on across a kill -9 of the active master and end on the standby that took over, each line once', { timeout: 240_000 }, async (t) => {
  const fx = await twoMasters(t, 'hm-clifail-');
  if (!fx) return;
  const { store, home, procs, env, a, b } = fx;
  // One data dir for both, as operators set them up (docs/operations.md): logs are read by either.
  const dataDir = join(home, 'master');
  mkdirSync(dataDir, { recursive: true });
  const startMaster = (address: string) => {
    const m = new CliDaemon(
      ['master', 'start', '--listen', address, '--data-dir', dataDir, '--store', store, '--report-interval', '1s', '--lease', '2s'],
      { ...env, HIVEMIND_GATEWAY_LISTEN: '127.0.0.1:0', HIVEMIND_METRICS_LISTEN: '127.0.0.1:0' },
    );
    procs.push(m);
    return m;
  };
  const masterA = startMaster(a);
  await waitFor("master A's admin token", () => fileExists(join(dataDir, 'admin.token')) || undefined);
  const adminToken = readFileSync(join(dataDir, 'admin.token'), 'utf8').trim();
  const cliEnv = { ...env, HIVEMIND_ADMIN_TOKEN: adminToken };
  const cli = (master: string, args: string[]) => runCli([...args, '--master', master], cliEnv);
  await waitFor('master A to answer', async () => (await cli(a, ['nodes', '--json'])).code === 0 || undefined);
  startMaster(b);
  await waitFor('master B to answer as a standby', async () => /standby master: \S+ is active/.test((await cli(b, ['nodes', '--json'])).stderr) || undefined);

  const tok = await cli(a, ['token', 'create']);
  assert.equal(tok.code, 0, tok.stderr);
  const worker = new CliDaemon(
    ['worker', 'start', '--master', `${a},${b}`, '--token', tok.stdout.trim(), '--data-dir', join(home, 'worker'), '--report-interval', '1s', '--max-tasks', '1'],
    { ...env, HIVEMIND_GATEWAY_PORT: '0' },
  );
  procs.push(worker);
  await waitFor('the node online on A', async () => {
    if (worker.child.exitCode !== null) throw new Error(`worker exited: ${worker.output}`);
    const nodes = JSON.parse((await cli(a, ['nodes', '--json'])).stdout || '[]') as { online: boolean }[];
    return nodes.some((n) => n.online) || undefined;
  }, 60_000, 300);

  // A line every 150 ms, stdout and stderr both: about 9 s, long enough to span the failover.
  const script = `i=1; while [ $i -le ${LINES} ]; do echo "out $i"; echo "err $i" >&2; i=$((i+1)); sleep 0.15; done`;
  const both = `${a},${b}`;
  // An attached submit (output and state followed together, as `run` does) is the third follower.
  const attached = new CliDaemon(['submit', '--master', both, '--wait', '--image', IMAGE, '--', 'sh', '-c', script], cliEnv);
  procs.push(attached);
  const taskId = await waitFor('the attached submit to name its task', () => /submitted (\w+)\n/.exec(attached.output)?.[1], 60_000, 50);

  const follow = (args: string[]) => new CliDaemon([...args, '--master', both], cliEnv);
  const logs = follow(['logs', '--follow', taskId]);
  const wait = follow(['wait', taskId, '--json']);
  procs.push(logs, wait);
  // Both are attached to A and the task is printing when A dies.
  await waitFor('the log follower to print a few lines', () => /out 5\n/.test(logs.output) || undefined, 60_000, 50);
  // An exec session in the task's container, relayed by A: it cannot move, it must say so.
  const exec = new CliDaemon(['exec', '--master', both, taskId, '--', 'sh', '-c', 'echo exec-started; sleep 60'], cliEnv);
  procs.push(exec);
  await waitFor('the exec session to start', () => exec.output.includes('exec-started') || undefined, 30_000, 50);
  const killedAt = performance.now();
  await masterA.stop('SIGKILL');

  await waitFor('the log follower to move to B', () => logs.output.includes(`going on with ${b}`) || undefined, 60_000, 50);
  const movedMs = performance.now() - killedAt;
  const [logsCode, waitCode, attachedCode, execCode] = await Promise.all([logs.exited, wait.exited, attached.exited, exec.exited]);
  const tookMs = performance.now() - killedAt;
  assert.equal(waitCode, 0, wait.output);
  assert.equal(logsCode, 0, logs.output);
  const end = JSON.parse(wait.output.slice(wait.output.indexOf('{'), wait.output.lastIndexOf('}') + 1)) as { state: string; outcome?: { exitCode?: number } };
  assert.match(end.state, /succeeded/i, wait.output);
  assert.match(wait.output, new RegExp(`watch task ${taskId}: lost master ${a} \\(.*\\); going on with ${b}`));
  assert.match(logs.output, new RegExp(`logs of task ${taskId}: lost master ${a} \\(.*\\); going on with ${b}`));

  assert.equal(attachedCode, 0, attached.output);
  assert.notEqual(execCode, 0, exec.output);
  assert.match(exec.output, new RegExp(`exec: the session ended: its master ${a} went away \\(.*\\); exec sessions do not move to another master`), exec.output);
  assert.match(attached.output, new RegExp(`\\n${taskId} succeeded`));
  assert.match(attached.output, new RegExp(`lost master ${a} \\(.*\\); going on with ${b}`));

  // The followers printed the stored log exactly: nothing twice, nothing the store has missing,
  // each stream in order.
  const lines = (output: string) => output.split('\n').filter((l) => /^(out|err) \d+$/.test(l));
  const of = (output: string, s: string) => lines(output).filter((l) => l.startsWith(s)).map((l) => Number(l.split(' ')[1]));
  const stored = await runCli(['logs', taskId, '--master', both], cliEnv);
  assert.equal(stored.code, 0, stored.stderr);
  for (const [name, p] of [['logs --follow', logs], ['submit --wait', attached]] as const) {
    for (const s of ['out', 'err']) {
      const got = of(p.output, s);
      assert.deepEqual(got, of(stored.stdout, s), `${name}, ${s}, against the stored log: ${p.output}`);
      assert.ok(got.every((n, i) => i === 0 || n > got[i - 1]!), `${name}: ${s} lines in order, none twice`);
    }
    assert.equal(of(p.output, 'out').at(-1), LINES, `${name} followed the task to its end`);
  }
  // Nothing is lost between the node and the masters: what the node wrote to A that A never
  // stored is resent to B (the node keeps chunks until a master holds them), and nothing twice.
  const all = Array.from({ length: LINES }, (_, i) => i + 1);
  for (const s of ['out', 'err']) assert.deepEqual(of(stored.stdout, s), all, `the stored log has every ${s} line once, in order: ${stored.stdout}`);
  const lines2 = lines(logs.output);
  t.diagnostic(`exec said: ${exec.output.trim().split('\n').at(-1)}`);
  t.diagnostic(`the log follower was on B ${Math.round(movedMs)} ms after A was killed (lease 2 s); both ended ${Math.round(tookMs)} ms after it, when the task did; ${lines2.length} lines printed, each once`);
});
