// Exec against each real engine (Docker, Podman rootful and rootless): a command in a running hivemind/busybox:1 container, as the
// container's user, with stdout and stderr apart, stdin and its end, a terminal and its size, the
// exit code, a kill that leaves no process behind; and the node's exec sessions over it (relay,
// refusal when the operator turned exec off).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { engineTargets, requireEngine } from '../helpers/engines.js';
import { engineOf } from '../helpers/runner-task.js';
import { ensureTestImage } from '../helpers/test-image.js';
import type { ExecOptions, ExecProcess } from '../../src/runtime/exec-process.js';
import { TASK_GID, TASK_UID } from '../../src/runtime/container-spec.js';
import { silentLogger } from '../../src/common/logger.js';
import { ExecSessions } from '../../src/worker/exec-sessions.js';
import { FakeExecChannel } from '../helpers/fake-exec.js';

const NAME = `hm-exec-it-${process.pid}`;
const USER = `${TASK_UID}:${TASK_GID}`;

interface Ran {
  stdout: string;
  stderr: string;
  code: number;
}

for (const target of engineTargets()) {
  let containerId = '';
  const engine = engineOf(target);

  before(async () => {
    try {
      const image = await ensureTestImage(target.socketPath);
      containerId = await engine.createContainer({
        name: NAME, Image: image, Cmd: ['sleep', '600'], Env: [], Labels: { 'hivemind.test': 'exec-session' }, User: USER, NetworkDisabled: true,
        AttachStdin: false, AttachStdout: false, AttachStderr: false, Tty: false, OpenStdin: false,
        HostConfig: { NetworkMode: 'none' } as never,
      });
      await engine.startContainer(containerId);
    } catch {
      // requireEngine() in each test reports the missing engine.
    }
  });
  after(async () => {
    if (containerId) await engine.removeContainer(containerId);
  });

  function collect(p: ExecProcess): { out: { stdout: string; stderr: string }; done: Promise<Ran> } {
    const out = { stdout: '', stderr: '' };
    p.readOutput({ output: (s, d) => (out[s] += d.toString()) });
    return { out, done: p.exitCode.then((code) => ({ ...out, code })) };
  }

  async function run(opts: Partial<ExecOptions> & { argv: string[] }, stdin?: string): Promise<Ran> {
    const p = await engine.exec(containerId, { user: USER, tty: false, stdin: stdin !== undefined, ...opts });
    const { done } = collect(p);
    if (stdin !== undefined) {
      await p.writeStdin(Buffer.from(stdin));
      p.closeStdin();
    }
    return done;
  }

  async function until(what: string, check: () => boolean, ms = 5_000): Promise<void> {
    const end = Date.now() + ms;
    while (!check()) {
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** The container's processes, from the engine's top (synchronous: the checks below poll it). */
  function topCommands(): string {
    const top = execFileSync('curl', ['-sS', '--max-time', '5', '--unix-socket', target.socketPath, `http://d/containers/${NAME}/top?ps_args=-o%20pid,args`], { encoding: 'utf8' });
    return (JSON.parse(top) as { Processes?: string[][] }).Processes?.map((p) => p.join(' ')).join('\n') ?? top;
  }

  test(`${target.name}: without a tty: stdout and stderr apart, and the exit code`, async (t) => {
    if (!requireEngine(t, target.name)) return;
    const r = await run({ argv: ['sh', '-c', 'echo out; echo err >&2; exit 3'] });
    assert.deepEqual(r, { stdout: 'out\n', stderr: 'err\n', code: 3 });
  });

  test(`${target.name}: stdin piped with its end: cat echoes it and ends`, async (t) => {
    if (!requireEngine(t, target.name)) return;
    const r = await run({ argv: ['cat'] }, 'hi\nthere\n');
    assert.deepEqual(r, { stdout: 'hi\nthere\n', stderr: '', code: 0 });
  });

  test(`${target.name}: runs as the container's user, unprivileged`, async (t) => {
    if (!requireEngine(t, target.name)) return;
    const r = await run({ argv: ['sh', '-c', 'id -u; id -g; grep CapEff /proc/self/status'] });
    assert.equal(r.code, 0);
    const [uid, gid, caps] = r.stdout.trim().split('\n');
    assert.equal(uid, String(TASK_UID));
    assert.equal(gid, String(TASK_GID));
    assert.match(caps ?? '', /CapEff:\s+0+$/);
  });

  test(`${target.name}: with a tty: stty size shows the initial size, then the resized one`, async (t) => {
    if (!requireEngine(t, target.name)) return;
    // The short sleep: daemons before Engine API 1.42 size the terminal right after the start.
    const p = await engine.exec(containerId, { user: USER, tty: true, stdin: true, size: { cols: 100, rows: 30 }, argv: ['sh', '-c', 'sleep 0.3; stty size; read x; stty size'] });
    const { out, done } = collect(p);
    await until('the first size', () => out.stdout.includes('30 100'));
    await p.resize({ cols: 120, rows: 40 });
    await p.writeStdin(Buffer.from('\n'));
    await until('the second size', () => out.stdout.includes('40 120'));
    const r = await done;
    assert.equal(r.code, 0);
    assert.equal(r.stderr, '', 'a terminal merges stderr into stdout');
  });

  test(`${target.name}: kill ends the command and what it started, with no process left`, async (t) => {
    if (!requireEngine(t, target.name)) return;
    const p = await engine.exec(containerId, { user: USER, tty: false, stdin: false, argv: ['sh', '-c', 'sleep 301 & sleep 302; wait'] });
    const { done } = collect(p);
    await until('the command to run', () => topCommands().includes('sleep 302'));
    await p.kill();
    const r = await done;
    assert.equal(r.code, 137);
    await until('no process of the exec', () => !/sleep 30[12]/.test(topCommands()));
    // Killed the moment it started (the engine may not know its pid yet): still killed.
    const early = await engine.exec(containerId, { user: USER, tty: false, stdin: false, argv: ['sleep', '305'] });
    const started = Date.now();
    const earlyDone = collect(early).done;
    await early.kill();
    assert.equal((await earlyDone).code, 137);
    assert.ok(Date.now() - started < 3_000, `the exit came ${Date.now() - started} ms after the kill`);
    assert.ok(!topCommands().includes('sleep 305'));
  });

  function sessionsOver(allowed: boolean, channel: FakeExecChannel): ExecSessions {
    return new ExecSessions({
      allowed,
      logger: silentLogger(),
      clock: { now: () => Date.now() },
      task: () => ({ signal: new AbortController().signal }),
      exec: (_taskId, _attempt, request, signal) => engine.exec(containerId, { ...request, user: USER }, signal),
      openChannel: () => channel,
    });
  }

  test(`${target.name}: a session relays stdin to the command and its output and exit code back`, async (t) => {
    if (!requireEngine(t, target.name)) return;
    const ch = new FakeExecChannel();
    const sessions = sessionsOver(true, ch);
    sessions.open({ sessionId: 'a'.repeat(32), taskId: 't1', attempt: 1, start: { target: '', command: ['sh', '-c', 'cat; echo bye >&2; exit 5'], tty: false, stdin: true, size: undefined } });
    await until('the command to start', () => sessions.active === 1 && ch.sent.length >= 1);
    ch.input({ $case: 'stdin', value: Buffer.from('piped\n') });
    ch.input({ $case: 'stdinEof', value: true });
    await ch.closed;
    assert.deepEqual(ch.sent[0]?.message, { $case: 'attach', value: { sessionId: 'a'.repeat(32) } });
    assert.equal(ch.text('stdout'), 'piped\n');
    assert.equal(ch.text('stderr'), 'bye\n');
    assert.deepEqual(ch.exit(), { code: 5, error: '' });
  });

  test(`${target.name}: the master going away kills the command`, async (t) => {
    if (!requireEngine(t, target.name)) return;
    const ch = new FakeExecChannel();
    const sessions = sessionsOver(true, ch);
    sessions.open({ sessionId: 'b'.repeat(32), taskId: 't1', attempt: 1, start: { target: '', command: ['sleep', '303'], tty: false, stdin: false, size: undefined } });
    await until('the command to run', () => topCommands().includes('sleep 303'));
    ch.masterGone();
    await until('no process of the exec', () => !topCommands().includes('sleep 303'));
    await until('the session to end', () => sessions.active === 0);
  });

  test(`${target.name}: refused when the operator turned exec off: attach, then exit 126 with the reason; nothing runs`, async (t) => {
    if (!requireEngine(t, target.name)) return;
    const ch = new FakeExecChannel();
    const sessions = sessionsOver(false, ch);
    sessions.open({ sessionId: 'c'.repeat(32), taskId: 't1', attempt: 1, start: { target: '', command: ['sleep', '304'], tty: false, stdin: false, size: undefined } });
    await ch.closed;
    assert.equal(ch.sent[0]?.message?.$case, 'attach');
    assert.deepEqual(ch.exit(), { code: 126, error: "this node's operator does not allow exec (--no-exec)" });
    assert.ok(!topCommands().includes('sleep 304'));
  });
}
