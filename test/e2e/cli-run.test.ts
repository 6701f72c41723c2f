// End to end, with a real master, worker and Docker: `hivemind run` streams a task's output while it
// runs, unpacks its /output and exits with its code; `submit --wait` streams; Ctrl-C detaches (the
// task goes on) or, with --rm, cancels; `token create` finds the local master after `master start`;
// a transfer's progress line shows on a terminal only.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { requireDockerImage } from '../helpers/requirements.js';
import { ProcessCluster } from '../helpers/process-cluster.js';
import { CLI, CliDaemon, freePort, runCli, runProcess, waitFor } from '../helpers/cli-process.js';

const IMAGE = 'hivemind/busybox:1';

/** A CLI process whose output is watched as it comes (streaming is the point). */
class Attached {
  readonly child: ChildProcess;
  stdout = '';
  stderr = '';
  readonly exited: Promise<number>;
  constructor(args: string[], env: NodeJS.ProcessEnv, cwd?: string) {
    this.child = spawn(process.execPath, [CLI, ...args], { env, cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    this.child.stdout!.on('data', (d: Buffer) => (this.stdout += d.toString()));
    this.child.stderr!.on('data', (d: Buffer) => (this.stderr += d.toString()));
    this.exited = new Promise((resolve) => this.child.on('exit', (code, sig) => resolve(code ?? (sig ? 128 : -1))));
    const kill = setTimeout(() => this.child.kill('SIGKILL'), 120_000);
    void this.exited.then(() => clearTimeout(kill));
  }
  get ended(): boolean {
    return this.child.exitCode !== null || this.child.signalCode !== null;
  }
  taskId(): string | undefined {
    return /(?:hivemind: task|submitted) (\S+)/.exec(this.stderr)?.[1];
  }
}

async function taskState(cluster: ProcessCluster, id: string): Promise<string> {
  const r = await cluster.cli(['get', id, '--json']);
  return (JSON.parse(r.stdout) as { state: string }).state;
}

test('hivemind run and submit --wait: output streamed live, /output unpacked, the exit code the task\'s; Ctrl-C detaches, --rm cancels', async (t) => {
  if (!requireDockerImage(t, IMAGE)) return;
  const cluster = await ProcessCluster.start();
  const scratch = mkdtempSync(join(tmpdir(), 'hm-e2e-run-'));
  try {
    // run: the first line arrives while the task is still running
    const run = new Attached(['run', IMAGE, '--', 'sh', '-c', 'echo first; echo to-stderr >&2; sleep 3; echo last; echo kept > /output/o.txt; exit 4'], cluster.env, scratch);
    await waitFor('the first line of `run`', () => run.stdout.includes('first\n') || (run.ended ? Promise.reject(new Error(`run ended: ${run.stderr}`)) : undefined), 60_000, 50);
    const id = run.taskId();
    assert.ok(id, run.stderr);
    assert.equal(await taskState(cluster, id), 'running', 'the output streamed before the task ended');
    assert.equal(run.ended, false);
    const code = await run.exited;
    assert.equal(code, 4, `run exits with the task's code\n${run.stderr}`);
    assert.equal(run.stdout, 'first\nlast\n', 'stdout carries exactly the task\'s stdout');
    assert.match(run.stderr, /to-stderr/);
    assert.equal(readFileSync(join(scratch, id, 'o.txt'), 'utf8'), 'kept\n', "the task's /output is unpacked into ./<task id>/");

    // run --output-dir, --no-result
    const out = join(scratch, 'out');
    const r2 = await runCli(['run', IMAGE, '--output-dir', out, '--', 'sh', '-c', 'echo x > /output/y.txt'], cluster.env);
    assert.equal(r2.code, 0, r2.stderr);
    assert.equal(readFileSync(join(out, 'y.txt'), 'utf8'), 'x\n');
    const r3 = await runProcess(process.execPath, [CLI, 'run', IMAGE, '--no-result', '--', 'sh', '-c', 'echo x > /output/y.txt'], { env: cluster.env, timeoutMs: 60_000, what: 'run --no-result' });
    assert.equal(r3.code, 0, r3.stderr);
    const id3 = /hivemind: task (\S+)/.exec(r3.stderr)![1]!;
    assert.equal(existsSync(join(process.cwd(), id3)), false, '--no-result downloads nothing');

    // a timeout: its exit code and a one-line reason
    const slow = await runCli(['run', IMAGE, '--timeout', '1s', '--no-result', '--', 'sleep', '30'], cluster.env);
    assert.equal(slow.code, 124, slow.stderr);
    assert.match(slow.stderr, /hivemind: task \S+ failed: timed_out/);

    // submit --wait streams too
    const sw = new Attached(['submit', '--image', IMAGE, '--wait', '--', 'sh', '-c', 'echo one; sleep 3; echo two'], cluster.env);
    await waitFor('the first line of `submit --wait`', () => sw.stdout.includes('one\n') || (sw.ended ? Promise.reject(new Error(sw.stderr)) : undefined), 60_000, 50);
    assert.equal(await taskState(cluster, sw.taskId()!), 'running');
    assert.equal(await sw.exited, 0, sw.stderr);
    assert.match(sw.stdout, /^one\ntwo\n\S+ succeeded/);

    // Ctrl-C detaches: exit 130, how to reattach, and the task still succeeds
    const det = new Attached(['run', IMAGE, '--', 'sh', '-c', 'echo started; sleep 3; echo done > /output/d.txt'], cluster.env, scratch);
    await waitFor('the task to start', () => det.stdout.includes('started') || (det.ended ? Promise.reject(new Error(det.stderr)) : undefined), 60_000, 50);
    det.child.kill('SIGINT');
    assert.equal(await det.exited, 130, det.stderr);
    const detId = det.taskId()!;
    assert.match(det.stderr, new RegExp(`hivemind logs -f ${detId}.*hivemind wait ${detId}`));
    const w = await cluster.cli(['wait', detId]);
    assert.equal(w.code, 0, `the detached task goes on and succeeds: ${w.stdout}${w.stderr}`);

    // --rm: Ctrl-C cancels the task and waits for the cancellation to land
    const rm = new Attached(['run', IMAGE, '--rm', '--', 'sh', '-c', 'echo started; sleep 60'], cluster.env, scratch);
    await waitFor('the --rm task to start', () => rm.stdout.includes('started') || (rm.ended ? Promise.reject(new Error(rm.stderr)) : undefined), 60_000, 50);
    rm.child.kill('SIGINT');
    assert.equal(await rm.exited, 130, rm.stderr);
    assert.equal(await taskState(cluster, rm.taskId()!), 'cancelled', 'the cancellation landed before the command exited');

    // a progress line on a terminal (script gives the CLI a pty), nothing of it in a pipe
    const archive = join(scratch, 'r.tar.gz');
    const shq = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
    const pty = await runProcess('script', ['-qec', [process.execPath, CLI, 'result', id, '-o', archive].map(shq).join(' '), '/dev/null'], { env: cluster.env, timeoutMs: 60_000, what: 'result under a pty' });
    assert.equal(pty.code, 0, pty.stdout);
    assert.match(pty.stdout, new RegExp(`\\r\\x1b\\[2Kresult ${id}  \\[#+\\] 100%`), 'the download draws its line on a terminal');
    rmSync(archive);
    const piped = await cluster.cli(['result', id, '-o', archive]);
    assert.equal(piped.code, 0, piped.stderr);
    assert.equal(piped.stderr, '', 'nothing but the result in a pipe');
    assert.doesNotMatch(piped.stdout, /\x1b|\r/);

    // the input upload of run, and data put/get, draw theirs too
    const inputDir = join(scratch, 'in');
    const { mkdirSync } = await import('node:fs');
    mkdirSync(inputDir);
    writeFileSync(join(inputDir, 'big.bin'), Buffer.alloc(3 * 1024 * 1024, 7));
    const up = await runProcess('script', ['-qec', [process.execPath, CLI, 'run', IMAGE, '--no-result', '--input', inputDir, '--', 'wc', '-c', '/input/big.bin'].map(shq).join(' '), '/dev/null'], { env: cluster.env, timeoutMs: 60_000, what: 'run --input under a pty' });
    assert.equal(up.code, 0, up.stdout);
    assert.match(up.stdout, /\r\x1b\[2Kupload in\/  \[/, 'the input upload draws its line');
    assert.match(up.stdout, /3145728 \/input\/big\.bin/);
    const put = await runProcess('script', ['-qec', [process.execPath, CLI, 'data', 'put', join(inputDir, 'big.bin'), '--name', 'big'].map(shq).join(' '), '/dev/null'], { env: cluster.env, timeoutMs: 60_000, what: 'data put under a pty' });
    assert.equal(put.code, 0, put.stdout);
    assert.match(put.stdout, /\r\x1b\[2Kdata put big\.bin  \[#+\] 100%  3\.0 MiB \/ 3\.0 MiB/);
    const get = await runProcess('script', ['-qec', [process.execPath, CLI, 'data', 'get', 'big', '-o', join(scratch, 'big.out')].map(shq).join(' '), '/dev/null'], { env: cluster.env, timeoutMs: 60_000, what: 'data get under a pty' });
    assert.equal(get.code, 0, get.stdout);
    assert.match(get.stdout, /\r\x1b\[2Kdata get big  \[#+\] 100%  3\.0 MiB \/ 3\.0 MiB/);
    const getPiped = await cluster.cli(['data', 'get', 'big', '-o', join(scratch, 'big2.out')]);
    assert.equal(getPiped.code, 0, getPiped.stderr);
    assert.equal(getPiped.stderr, '', 'nothing but the result in a pipe');
  } finally {
    await cluster.close();
    rmSync(scratch, { recursive: true, force: true });
  }
});

test('`hivemind token create` right after `hivemind master start` needs no flags (the README\'s steps)', async () => {
  const home = mkdtempSync(join(tmpdir(), 'hm-e2e-local-'));
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: home, HIVEMIND_HOME: join(home, '.hivemind'), HIVEMIND_GATEWAY_LISTEN: 'off' };
  const port = await freePort();
  const master = new CliDaemon(['master', 'start', '--listen', `127.0.0.1:${port}`], env);
  try {
    const tok = await waitFor('token create to reach the local master', async () => {
      if (master.child.exitCode !== null) throw new Error(`master exited: ${master.output}`);
      const r = await runCli(['token', 'create'], env);
      return r.code === 0 ? r : undefined;
    }, 30_000, 200);
    assert.match(tok.stdout.trim(), /^\S{16,}$/);
    const pointer = join(home, '.hivemind', 'local-master.json');
    assert.equal((await import('node:fs')).statSync(pointer).mode & 0o777, 0o600, 'the pointer is readable by its owner only');
    assert.equal(JSON.parse(readFileSync(pointer, 'utf8')).master, `127.0.0.1:${port}`);
    // flags and env still win over it
    const wrong = await runCli(['token', 'create', '--admin-token', 'not-the-token'], env);
    assert.notEqual(wrong.code, 0);

    assert.equal(await master.stop('SIGTERM'), 0);
    assert.equal(existsSync(pointer), false, 'a stopped master takes its pointer away');
    const after = await runCli(['token', 'create'], env);
    assert.equal(after.code, 2);
    assert.match(after.stderr, /no master to talk to/);
    // a pointer a master killed with -9 left (its pid gone) is no master
    writeFileSync(pointer, JSON.stringify({ master: `127.0.0.1:${port}`, adminTokenFile: join(home, '.hivemind', 'master', 'admin.token'), pid: 2 ** 22 + 1 }));
    assert.match((await runCli(['token', 'create'], env)).stderr, /no master to talk to/);
  } finally {
    await master.stop('SIGKILL');
    rmSync(home, { recursive: true, force: true });
  }
});
