// The Docker task runner against the real daemon: each test proves a limit or lockdown is really
// applied (read from inside the container or from the engine), and that nothing is left behind.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { writeFile } from 'node:fs/promises';
import tarStream from 'tar-stream';
import { engineTargets, requireEngine, type EngineTarget } from '../helpers/engines.js';
import { recordHostile } from '../helpers/fault-ledger.js';
import { NODE_ID, engineOf, outputFsDirOf, outputVolumesOf, removeScratch, runTask, type RunOptions, scratchDir, sh, tarEntries } from '../helpers/runner-task.js';
import { ensureTestImage } from '../helpers/test-image.js';
import { outputFsLayout } from '../../src/runtime/output-volume.js';
import { DockerTaskRunner, reapOrphans } from '../../src/runtime/docker-task-runner.js';
import { nodeLabelFilters, taskLabels } from '../../src/runtime/labels.js';
import { silentLogger } from '../../src/common/logger.js';
import { OutcomeKind, type TaskSpec } from '../../src/protocol/gen/hivemind/v1/common.js';
import { RUNNER_DEFAULTS, buildContainerConfig, volumeNames } from '../../src/runtime/container-spec.js';
import type { TaskExecution } from '../../src/worker/contracts.js';
import { countingListener } from '../helpers/counting-listener.js';

after(() => removeScratch());

async function makeInput(entries: Array<{ name: string; body?: string; type?: 'symlink'; linkname?: string }>): Promise<string> {
  const pack = tarStream.pack();
  for (const e of entries) {
    if (e.type === 'symlink') pack.entry({ name: e.name, type: 'symlink', linkname: e.linkname ?? '' });
    else pack.entry({ name: e.name, mode: 0o600 }, e.body ?? '');
  }
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const c of pack as AsyncIterable<Buffer>) chunks.push(Buffer.from(c));
  const dir = await scratchDir('hm-input-');
  const file = join(dir, 'input.tar.gz');
  await writeFile(file, gzipSync(Buffer.concat(chunks)));
  return file;
}


/**
 * The cgroup limits the engine kept of what the runner asked for, read back from a container made
 * with the runner's own config (never started). Rootless Podman on cgroup v1 keeps none of them
 * and says so there (its /info still claims the limits are supported).
 */
async function limitsKept(target: EngineTarget, image: string, limits: TaskSpec['limits']): Promise<{ memory: number; nanoCpus: number; pids: number }> {
  const engine = engineOf(target);
  const exec = { taskId: `lim${process.pid}-${target.name}`, attempt: 1, spec: { image, command: ['true'], env: new Map(), limits, maxOutputBytes: 0, data: [], network: 0 }, gpuIndexes: [] } as unknown as TaskExecution;
  const id = await engine.createContainer(buildContainerConfig(exec, NODE_ID));
  try {
    const h = (await engine.inspectContainer(id)).hostConfig as { Memory?: number; NanoCpus?: number; PidsLimit?: number };
    return { memory: h.Memory ?? 0, nanoCpus: h.NanoCpus ?? 0, pids: h.PidsLimit ?? 0 };
  } finally {
    await engine.removeContainer(id);
    // The engine made the named volumes the config mounts: they go too.
    const made = volumeNames(exec.taskId, 1);
    for (const v of [made.input, made.output]) await engine.removeVolume(v);
  }
}

/** Whether the engine enforces memory, CPU and pids limits: all but rootless Podman on this cgroup v1 host. */
const limitsHold = (target: EngineTarget) => target.name !== 'podman-rootless';

// Each guarantee is proven on every engine a node may run on (engines.ts): Docker, Podman rootful
// and Podman rootless.
for (const target of engineTargets()) {
  let image = '';
  before(async () => {
    try {
      image = await ensureTestImage(target.socketPath);
    } catch {
      // requireEngine() in each test reports the missing engine.
    }
  });
  const run = (spec: Partial<TaskSpec>, opts: RunOptions = {}) => runTask(spec, { ...opts, engine: target });

  test(`${target.name}: cgroup limits are applied: memory (no swap), cpu quota, pids`, async (t) => {
    if (!requireEngine(t, target.name)) return;
    const limits = { cpus: 0.5, memoryBytes: 96 * 1024 ** 2, pids: 42, gpus: 0, timeoutMs: 60_000 };
    const kept = await limitsKept(target, image, limits);
    if (!limitsHold(target)) {
      // The honest fact: the engine dropped every limit, and its container says so.
      assert.deepEqual(kept, { memory: 0, nanoCpus: 0, pids: 0 });
      return;
    }
    assert.deepEqual(kept, { memory: 96 * 1024 ** 2, nanoCpus: 0.5e9, pids: 42 });
    const { result, logs } = await run({
      command: sh('cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us /sys/fs/cgroup/pids/pids.max; cat /sys/fs/cgroup/memory/memory.memsw.limit_in_bytes 2>/dev/null || echo no-memsw'),
      limits: { cpus: 0.5, memoryBytes: 96 * 1024 ** 2, pids: 42, gpus: 0, timeoutMs: 60_000 },
    });
    assert.equal(result.outcome.kind, OutcomeKind.OUTCOME_KIND_EXITED, result.outcome.message);
    assert.equal(result.outcome.exitCode, 0);
    const [mem, quota, period, pids, memsw] = logs.stdout.trim().split('\n');
    assert.equal(Number(mem), 96 * 1024 ** 2);
    assert.equal(Number(quota) / Number(period), 0.5);
    assert.equal(pids, '42');
    if (memsw !== 'no-memsw') assert.equal(Number(memsw), 96 * 1024 ** 2, 'memory+swap equals memory: no swap');
  });

  test(`${target.name}: runs as uid 65534 with a read-only root, writable /tmp, no capabilities and HIVEMIND_ env`, async (t) => {
    if (!requireEngine(t, target.name)) return;
    const { result, logs } = await run({
      command: sh('id -u; id -g; touch /rootfile 2>&1 || echo ROOT-RO; touch /tmp/x && echo TMP-OK; grep CapEff /proc/self/status; echo "$HIVEMIND_TASK_ID $HIVEMIND_OUTPUT_DIR $HIVEMIND_INPUT_DIR $HIVEMIND_MEMORY_BYTES $FOO"'),
      env: new Map([['FOO', 'bar']]),
    });
    assert.equal(result.outcome.kind, OutcomeKind.OUTCOME_KIND_EXITED, result.outcome.message);
    recordHostile('task: write outside /output (read-only root)', !/ROOT-RO/.test(logs.stdout));
    recordHostile('task: capabilities (all dropped, runs as nobody)', !/CapEff:\s+0000000000000000/.test(logs.stdout) || !logs.stdout.startsWith('65534\n'));
    const lines = logs.stdout.trim().split('\n');
    assert.equal(lines[0], '65534');
    assert.equal(lines[1], '65534');
    assert.match(logs.stdout, /Read-only file system/);
    assert.match(logs.stdout, /ROOT-RO/);
    assert.match(logs.stdout, /TMP-OK/);
    assert.match(logs.stdout, /CapEff:\s+0000000000000000/);
    assert.match(logs.stdout, new RegExp(`it${process.pid}-\\d+ /output /input ${64 * 1024 ** 2} bar`));
  });

  test(`${target.name}: network: only lo, and a TCP server on the host loopback is unreachable`, async (t) => {
    if (!requireEngine(t, target.name)) return;
    const listener = await countingListener();
    const port = listener.port;
    try {
      const { result, logs } = await run({ command: sh(`ls /sys/class/net; nc -w 2 127.0.0.1 ${port} </dev/null && echo CONNECTED || echo CONNECT-FAILED`) });
      assert.equal(result.outcome.kind, OutcomeKind.OUTCOME_KIND_EXITED, result.outcome.message);
      recordHostile('task: reach the network (a server on the host loopback)', listener.connections() > 0 || /CONNECTED\n/.test(logs.stdout) || logs.stdout.trim() !== 'lo\nCONNECT-FAILED');
      assert.deepEqual(logs.stdout.trim().split('\n'), ['lo', 'CONNECT-FAILED']);
      assert.equal(listener.connections(), 0);
    } finally {
      listener.close();
    }
  });

  test(`${target.name}: a task sees none of the worker's files, the Docker socket, host devices or host processes`, async (t) => {
    if (!requireEngine(t, target.name)) return;
    // The runner's own spool (where results are written) and the host's Docker socket must not exist
    // inside; /proc shows the task's processes only; /dev has no host disks.
    const secret = await mkdtemp(join(tmpdir(), 'hm-worker-secret-'));
    await writeFile(join(secret, 'credential'), 'hmn1.do-not-read');
    try {
      const { result, logs } = await run({
        command: sh(`cat ${secret}/credential 2>/dev/null && echo READ-SECRET; test -S /var/run/docker.sock && echo DOCKER-SOCKET; ls /dev | grep -E '^(sd|vd|nvme|xvd)' && echo HOST-DISK; n=0; for p in /proc/[0-9]*; do n=$((n+1)); done; echo procs=$n; cat /proc/1/cmdline | tr '\\0' ' '; echo`),
      });
      assert.equal(result.outcome.kind, OutcomeKind.OUTCOME_KIND_EXITED, result.outcome.message);
      const procs = Number(/procs=(\d+)/.exec(logs.stdout)?.[1]);
      const escaped = /^(READ-SECRET|DOCKER-SOCKET|HOST-DISK)$/m.test(logs.stdout) || !(procs <= 4);
      recordHostile('task: read the worker\'s files, the Docker socket, host devices, host processes', escaped);
      assert.doesNotMatch(logs.stdout, /^(READ-SECRET|DOCKER-SOCKET|HOST-DISK)$/m);
      assert.ok(procs <= 4, `only the task's own processes are visible: ${logs.stdout}`);
      assert.match(logs.stdout, /sh -c cat/, 'PID 1 is the task itself');
    } finally {
      await rm(secret, { recursive: true, force: true });
    }
  });

  test(`${target.name}: a memory hog is OOM_KILLED`, async (t) => {
    if (!requireEngine(t, target.name)) return;
    const limits = { cpus: 1, memoryBytes: 32 * 1024 ** 2, pids: 64, gpus: 0, timeoutMs: 60_000 };
    if (!limitsHold(target)) {
      assert.equal((await limitsKept(target, image, limits)).memory, 0, 'rootless Podman on cgroup v1 drops the memory limit');
      return;
    }
    const { result } = await run({
      // dd is the container's main process: its 256 MiB buffer is over the 32 MiB limit.
      command: ['dd', 'if=/dev/zero', 'of=/dev/null', 'bs=256M', 'count=1'],
      limits,
    });
    if (target.name === 'podman') {
      // The kernel kills it, but Podman (conmon) on this hybrid cgroup host never reports
      // OOMKilled (it watches the cgroup v2 side): a SIGKILL exit is all the runner learns.
      recordHostile('task: memory hog (256 MiB in a 32 MiB limit), Podman', result.outcome.exitCode !== 137);
      assert.equal(result.outcome.kind, OutcomeKind.OUTCOME_KIND_EXITED, `${result.outcome.message} / ${result.logTail}`);
      assert.equal(result.outcome.exitCode, 137, 'killed: the 256 MiB buffer did not fit');
      return;
    }
    recordHostile('task: memory hog (256 MiB in a 32 MiB limit)', result.outcome.kind !== OutcomeKind.OUTCOME_KIND_OOM_KILLED);
    assert.equal(result.outcome.kind, OutcomeKind.OUTCOME_KIND_OOM_KILLED, `${result.outcome.message} / ${result.logTail}`);
    assert.equal(result.outcome.exitCode, 137);
  });

  test(`${target.name}: a fork bomb hits the pids limit`, async (t) => {
    if (!requireEngine(t, target.name)) return;
    if (!limitsHold(target)) {
      // No bomb where nothing would stop it: the engine's own word that the limit is gone.
      assert.equal((await limitsKept(target, image, { cpus: 1, memoryBytes: 64 * 1024 ** 2, pids: 12, gpus: 0, timeoutMs: 60_000 })).pids, 0, 'rootless Podman on cgroup v1 drops the pids limit');
      return;
    }
    // The bomb runs in a subshell (ash exits when a fork fails); globbing and arithmetic are
    // builtins, so counting needs no fork once the limit is hit.
    const { result, logs } = await run({
      command: sh('(for i in $(seq 1 60); do sleep 30 & done); n=0; for p in /proc/[0-9]*; do n=$((n+1)); done; echo procs=$n; kill -9 -1; exit 0'),
      limits: { cpus: 1, memoryBytes: 64 * 1024 ** 2, pids: 12, gpus: 0, timeoutMs: 60_000 },
    });
    assert.equal(result.outcome.kind, OutcomeKind.OUTCOME_KIND_EXITED, result.outcome.message);
    const procs = Number(/procs=(\d+)/.exec(logs.stdout)?.[1]);
    recordHostile('task: fork bomb (pids limit 12)', !(procs <= 12));
    assert.ok(procs >= 5 && procs <= 12, `expected at most 12 processes, saw ${procs}`);
    assert.match(logs.stderr, /fork/i);
  });

  test(`${target.name}: a recursive fork bomb stays inside its pids limit until the timeout kills it, and nothing is left`, async (t) => {
    if (!requireEngine(t, target.name)) return;
    if (!limitsHold(target)) {
      assert.equal((await limitsKept(target, image, { cpus: 0.5, memoryBytes: 64 * 1024 ** 2, pids: 32, gpus: 0, timeoutMs: 4000 })).pids, 0, 'rootless Podman on cgroup v1 drops the pids limit');
      return;
    }
    const started = Date.now();
    // the classic :(){ :|:& };: — it never ends by itself; forks beyond the limit fail. The task's
    // shell forks once before the bomb exists (`b &`) and becomes `sleep`: running `b | b &` itself
    // forks twice, and a second fork after the bomb took every pid ends it FAILED (1 run in 12)
    const { result } = await run({
      command: sh('b() { b | b & }; b & exec sleep 60'),
      limits: { cpus: 0.5, memoryBytes: 64 * 1024 ** 2, pids: 32, gpus: 0, timeoutMs: 4000 },
    });
    const contained = result.outcome.kind === OutcomeKind.OUTCOME_KIND_TIMED_OUT;
    recordHostile('task: recursive fork bomb (pids limit 32, killed at its timeout)', !contained);
    assert.equal(result.outcome.kind, OutcomeKind.OUTCOME_KIND_TIMED_OUT, result.outcome.message);
    assert.ok(Date.now() - started < 30_000, `the bomb was stopped in ${Date.now() - started} ms`);
  });

  test(`${target.name}: the wall-clock timeout kills the task: TIMED_OUT`, async (t) => {
    if (!requireEngine(t, target.name)) return;
    const started = Date.now();
    const { result } = await run({ command: ['sleep', '60'], limits: { cpus: 1, memoryBytes: 64 * 1024 ** 2, pids: 16, gpus: 0, timeoutMs: 1500 } });
    assert.equal(result.outcome.kind, OutcomeKind.OUTCOME_KIND_TIMED_OUT, result.outcome.message);
    assert.ok(Date.now() - started < 20_000);
    assert.ok(result.outcome.durationMs >= 1400 && result.outcome.durationMs < 10_000, String(result.outcome.durationMs));
  });

  test(`${target.name}: abort cancels: CANCELLED (or SHUTDOWN) and the container is gone`, async (t) => {
    if (!requireEngine(t, target.name)) return;
    const started = Date.now();
    const c = await run({ command: ['sleep', '60'] }, { abortAfterRunningMs: 500, abortReason: 'cancelled' });
    assert.equal(c.result.outcome.kind, OutcomeKind.OUTCOME_KIND_CANCELLED, c.result.outcome.message);
    assert.equal(c.result.result, undefined);
    const s = await run({ command: ['sleep', '60'] }, { abortAfterRunningMs: 500, abortReason: 'shutdown' });
    assert.equal(s.result.outcome.kind, OutcomeKind.OUTCOME_KIND_SHUTDOWN, s.result.outcome.message);
    assert.ok(Date.now() - started < 30_000);
  });

  test(`${target.name}: /output is collected with its content, and the sha256 matches the spool file`, async (t) => {
    if (!requireEngine(t, target.name)) return;
    const { result, phases } = await run({ command: sh('mkdir -p /output/sub && echo hello > /output/a.txt && printf xyz > /output/sub/b.bin && ln -s a.txt /output/link && echo done') });
    assert.equal(result.outcome.kind, OutcomeKind.OUTCOME_KIND_EXITED, result.outcome.message);
    assert.deepEqual(phases, ['pulling', 'running', 'collecting']);
    assert.ok(result.result);
    const file = await readFile(result.result.path);
    assert.equal(file.length, result.result.size);
    assert.equal(createHash('sha256').update(file).digest('hex'), result.result.sha256);
    assert.match(result.result.path, new RegExp(`it${process.pid}-\\d+-1\\.tar\\.gz$`));
    const entries = await tarEntries(file);
    assert.equal(entries.get('a.txt')?.body, 'hello\n');
    assert.equal(entries.get('sub/b.bin')?.body, 'xyz');
    assert.equal(entries.get('link')?.type, 'symlink');
    assert.equal(entries.get('link')?.linkname, 'a.txt');
    assert.equal(result.logTail, 'done\n');
    await rm(result.result.path);
  });

  test(`${target.name}: output with a fifo, an escaping symlink (absolute or relative), too many files, or over its cap is OUTPUT_REJECTED`, async (t) => {
    if (!requireEngine(t, target.name)) return;
    const fifo = await run({ command: sh('mkfifo /output/p') });
    recordHostile('output: a fifo', fifo.result.outcome.kind !== OutcomeKind.OUTCOME_KIND_OUTPUT_REJECTED);
    assert.equal(fifo.result.outcome.kind, OutcomeKind.OUTCOME_KIND_OUTPUT_REJECTED);
    assert.match(fifo.result.outcome.message, /entry "output\/p" is a fifo/);
    assert.equal(fifo.result.result, undefined);
    const link = await run({ command: sh('ln -s /etc/passwd /output/pw') });
    recordHostile('output: a symlink to a host path', link.result.outcome.kind !== OutcomeKind.OUTCOME_KIND_OUTPUT_REJECTED);
    assert.equal(link.result.outcome.kind, OutcomeKind.OUTCOME_KIND_OUTPUT_REJECTED);
    assert.match(link.result.outcome.message, /absolute path "\/etc\/passwd"/);
    const rel = await run({ command: sh('mkdir /output/d && ln -s ../../etc/passwd /output/d/pw') });
    recordHostile('output: a relative symlink climbing out of /output', rel.result.outcome.kind !== OutcomeKind.OUTCOME_KIND_OUTPUT_REJECTED);
    assert.equal(rel.result.outcome.kind, OutcomeKind.OUTCOME_KIND_OUTPUT_REJECTED);
    assert.match(rel.result.outcome.message, /entry "output\/d\/pw" is a symlink to "\.\.\/\.\.\/etc\/passwd", which points outside the archive root/);
    const many = await run({ command: sh('for i in $(seq 1 60); do : > /output/f$i; done') }, { defaults: { maxEntries: 50 } });
    recordHostile('output: more files than the entry cap', many.result.outcome.kind !== OutcomeKind.OUTCOME_KIND_OUTPUT_REJECTED);
    assert.equal(many.result.outcome.kind, OutcomeKind.OUTCOME_KIND_OUTPUT_REJECTED);
    assert.match(many.result.outcome.message, /\/output: more than 50 entries/);
    const big = await run({ command: sh('head -c 5000 /dev/zero > /output/big'), maxOutputBytes: 1000 });
    recordHostile('output: over the size cap', big.result.outcome.kind !== OutcomeKind.OUTCOME_KIND_OUTPUT_REJECTED);
    assert.equal(big.result.outcome.kind, OutcomeKind.OUTCOME_KIND_OUTPUT_REJECTED);
    assert.match(big.result.outcome.message, /"output\/big" \(5000 bytes\) takes the total over the 1000-byte cap/);
  });

  /** Samples, until stopped, the most disk the /output images under `dir` ever took (allocated blocks). */
  function watchDisk(dir: string): { stop(): Promise<number> } {
    let max = 0;
    let on = true;
    const loop = (async () => {
      while (on) {
        let sum = 0;
        for (const f of await readdir(dir).catch(() => [] as string[])) sum += ((await stat(join(dir, f)).catch(() => undefined))?.blocks ?? 0) * 512;
        max = Math.max(max, sum);
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    return { stop: async () => ((on = false), await loop, max) };
  }

  test(`${target.name}: a task writing past its output cap is stopped by the kernel: at most cap + slack reaches the disk, OUTPUT_REJECTED naming the cap`, async (t) => {
    if (!requireEngine(t, target.name)) return;
    const cap = 1024 ** 2;
    const spool = await scratchDir('hm-spool-');
    const disk = watchDisk(outputFsDirOf(spool, target));
    // 64 MiB into a 1 MiB cap; the task then reports what its file took on disk.
    const { result, logs } = await run({ command: sh('dd if=/dev/zero of=/output/big bs=1M count=64 2>/dev/null; echo "dd=$?"; du -k /output/big; sleep 0.3'), maxOutputBytes: cap }, { spool });
    const maxImage = await disk.stop();
    const writtenKiB = Number(/^(\d+)\s+\/output\/big$/m.exec(logs.stdout)?.[1] ?? NaN);
    const bound = outputFsLayout(cap, RUNNER_DEFAULTS.maxEntries).bytes;
    t.diagnostic(`wrote ${writtenKiB} KiB of 64 MiB; image took at most ${maxImage} bytes (bound ${bound})`);
    recordHostile('task: fill the disk through /output (64 MiB into a 1 MiB cap)', !(writtenKiB * 1024 <= bound) || result.outcome.kind !== OutcomeKind.OUTCOME_KIND_OUTPUT_REJECTED);
    assert.ok(writtenKiB * 1024 <= bound, `the task wrote ${writtenKiB} KiB, over cap + slack (${bound} bytes)`);
    assert.match(logs.stdout, /dd=1/, 'dd was stopped by ENOSPC');
    assert.ok(maxImage > 0 && maxImage <= bound, `the image took ${maxImage} bytes of host disk (bound ${bound})`);
    assert.equal(result.outcome.kind, OutcomeKind.OUTCOME_KIND_OUTPUT_REJECTED, result.outcome.message);
    assert.match(result.outcome.message, /^task wrote more than the 1\.0 MiB output cap \(the task's max_output_bytes\)/);
    assert.deepEqual(await readdir(outputFsDirOf(spool, target)), [], 'the image is deleted after the task');
  });

  test(`${target.name}: the node cap bounds a task that asks for more, and a task at its cap succeeds`, async (t) => {
    if (!requireEngine(t, target.name)) return;
    const spool = await scratchDir('hm-spool-');
    const over = await run({ command: sh('dd if=/dev/zero of=/output/big bs=1M count=8 2>/dev/null; du -k /output/big'), maxOutputBytes: 1024 ** 3 }, { spool, defaults: { maxOutputBytes: 2 * 1024 ** 2 } });
    recordHostile('task: ask for a bigger output cap than the node allows', over.result.outcome.kind !== OutcomeKind.OUTCOME_KIND_OUTPUT_REJECTED);
    assert.equal(over.result.outcome.kind, OutcomeKind.OUTCOME_KIND_OUTPUT_REJECTED, over.result.outcome.message);
    assert.match(over.result.outcome.message, /^task wrote more than the 2\.0 MiB output cap \(the node's --max-output\)/);
    const at = await run({ command: sh('head -c 1048576 /dev/zero > /output/exact && mkdir /output/d && echo x > /output/d/y'), maxOutputBytes: 1024 ** 2 + 2 });
    assert.equal(at.result.outcome.kind, OutcomeKind.OUTCOME_KIND_EXITED, at.result.outcome.message);
    assert.equal(at.result.outcome.exitCode, 0);
    const names = [...(await tarEntries(await readFile(at.result.result!.path))).keys()];
    assert.deepEqual(names.sort(), ['d/', 'd/y', 'exact'], 'no lost+found or anything else in the result');
  });

  test(`${target.name}: /tmp and /dev/shm end at their size, and nothing else is writable (/, /input, /etc/hosts, /var)`, async (t) => {
    if (!requireEngine(t, target.name)) return;
    const { result, logs } = await run({
      command: sh(
        'dd if=/dev/zero of=/tmp/big bs=1M count=100 2>/dev/null; echo "tmp=$? $(du -k /tmp/big | cut -f1)"; rm -f /tmp/big; ' +
          'dd if=/dev/zero of=/dev/shm/big bs=1M count=100 2>/dev/null; echo "shm=$? $(du -k /dev/shm/big | cut -f1)"; rm -f /dev/shm/big; ' +
          'for p in /x /input/x /var/x /etc/x /home/x; do (echo x > $p) 2>/dev/null && echo "WROTE $p"; done; (echo x >> /etc/hosts) 2>/dev/null && echo "WROTE /etc/hosts"; echo done',
      ),
      limits: { cpus: 0.5, memoryBytes: 512 * 1024 ** 2, pids: 64, gpus: 0, timeoutMs: 60_000 },
    });
    const tmp = /tmp=(\d+) (\d+)/.exec(logs.stdout);
    const shm = /shm=(\d+) (\d+)/.exec(logs.stdout);
    const escaped = !tmp || Number(tmp[2]) > 64 * 1024 || !shm || Number(shm[2]) > 64 * 1024 || /WROTE/.test(logs.stdout);
    recordHostile('task: fill /tmp, /dev/shm, or write anywhere else', escaped);
    assert.equal(result.outcome.kind, OutcomeKind.OUTCOME_KIND_EXITED, `${result.outcome.message}\n${logs.stdout}${logs.stderr}`);
    assert.ok(tmp && tmp[1] !== '0' && Number(tmp[2]) <= 64 * 1024, `/tmp: ${tmp?.[0]}`);
    assert.ok(shm && shm[1] !== '0' && Number(shm[2]) <= 64 * 1024, `/dev/shm: ${shm?.[0]}`);
    assert.doesNotMatch(logs.stdout, /WROTE/);
    assert.match(logs.stdout, /done\n$/);
  });

  test(`${target.name}: reapOrphans frees the /output filesystems of tasks that are not live`, async (t) => {
    if (!requireEngine(t, target.name)) return;
    const engine = engineOf(target);
    const dir = await scratchDir('hm-outfs-');
    const outputs = await outputVolumesOf(dir, target);
    const node = `reapfs-${process.pid}`;
    const live = `hivemind-live${process.pid}-1-output`;
    const dead = `hivemind-dead${process.pid}-2-output`;
    await outputs.create(live, 1024 ** 2, 100);
    await outputs.create(dead, 1024 ** 2, 100);
    try {
      assert.equal(await outputs.attached(dead), true);
      const removed = await reapOrphans(engine, node, new Set([`live${process.pid}`]), undefined, outputs);
      assert.deepEqual(removed.outputFs, [dead]);
      assert.equal(await outputs.attached(dead), false, 'its loop device is detached');
      assert.deepEqual(await outputs.list(), [live]);
    } finally {
      await outputs.release(live);
      await outputs.release(dead);
    }
  });

  test(`${target.name}: the input archive is unpacked into a read-only /input owned by the task user`, async (t) => {
    if (!requireEngine(t, target.name)) return;
    const inputFile = await makeInput([{ name: 'data/a.txt', body: 'input-a' }, { name: 'b.txt', body: 'input-b' }]);
    try {
      const { result, logs } = await run({ command: sh('cat /input/data/a.txt; echo; cat /input/b.txt; echo; touch /input/new 2>&1 || true') }, { inputFile });
      assert.equal(result.outcome.kind, OutcomeKind.OUTCOME_KIND_EXITED, result.outcome.message);
      assert.match(logs.stdout, /^input-a\ninput-b\n/);
      assert.match(logs.stdout, /Read-only file system/);
    } finally {
      await rm(inputFile, { force: true });
    }
  });

  test(`${target.name}: an unsafe input archive is INPUT_REJECTED`, async (t) => {
    if (!requireEngine(t, target.name)) return;
    const inputFile = await makeInput([{ name: 'ok.txt', body: 'x' }, { name: 'evil', type: 'symlink', linkname: '../../etc/shadow' }]);
    try {
      const { result } = await run({ command: ['true'] }, { inputFile });
      recordHostile('input: a symlink escaping /input, end to end', result.outcome.kind !== OutcomeKind.OUTCOME_KIND_INPUT_REJECTED);
      assert.equal(result.outcome.kind, OutcomeKind.OUTCOME_KIND_INPUT_REJECTED, result.outcome.message);
      assert.match(result.outcome.message, /entry "evil" is a symlink to "\.\.\/\.\.\/etc\/shadow"/);
    } finally {
      await rm(inputFile, { force: true });
    }
  });

  test(`${target.name}: a missing image that cannot be pulled is START_FAILED with the engine message`, async (t) => {
    if (!requireEngine(t, target.name)) return;
    // A loopback registry port nobody listens on: the pull fails without leaving the machine.
    const { result } = await run({ image: '127.0.0.1:1/hivemind/missing:1', command: ['true'] });
    recordHostile('task spec: an unknown image', result.outcome.kind !== OutcomeKind.OUTCOME_KIND_START_FAILED);
    assert.equal(result.outcome.kind, OutcomeKind.OUTCOME_KIND_START_FAILED);
    assert.match(result.outcome.message, /image 127\.0\.0\.1:1\/hivemind\/missing:1 is not available on this node and could not be pulled: .*(refused|connect)/i);
  });

  test(`${target.name}: a bad command is START_FAILED with the engine message`, async (t) => {
    if (!requireEngine(t, target.name)) return;
    const { result } = await run({ command: ['/no/such/binary'] });
    assert.equal(result.outcome.kind, OutcomeKind.OUTCOME_KIND_START_FAILED);
    assert.match(result.outcome.message, /no such file or directory|executable file not found/);
  });

  test(`${target.name}: a non-zero exit is EXITED with its code; an invalid env is START_FAILED`, async (t) => {
    if (!requireEngine(t, target.name)) return;
    const { result } = await run({ command: sh('echo oops >&2; exit 3') });
    assert.equal(result.outcome.kind, OutcomeKind.OUTCOME_KIND_EXITED);
    assert.equal(result.outcome.exitCode, 3);
    assert.equal(result.logTail, 'oops\n');
    const bad = await run({ command: ['true'], env: new Map([['HIVEMIND_X', '1']]) });
    assert.equal(bad.result.outcome.kind, OutcomeKind.OUTCOME_KIND_START_FAILED);
    assert.match(bad.result.outcome.message, /reserved/);
  });

  test(`${target.name}: the log tail keeps the end of a long log; onLog sees it in order, to its end`, async (t) => {
    if (!requireEngine(t, target.name)) return;
    const { result, logs } = await run({ command: sh('i=0; while [ $i -lt 5000 ]; do echo line$i; i=$((i+1)); done') }, { defaults: { logTailBytes: 1000 } });
    assert.equal(result.outcome.kind, OutcomeKind.OUTCOME_KIND_EXITED);
    recordHostile('task: log flood (tail bounded, end kept)', !(result.logTail.length <= 1000 && result.logTail.endsWith('line4999\n')));
    const end = (text: string) => JSON.stringify(text.slice(-120));
    assert.ok(result.logTail.length <= 1000, `a tail of ${result.logTail.length} bytes`);
    assert.ok(result.logTail.endsWith('line4998\nline4999\n'), `the tail ends ${end(result.logTail)}; onLog's stdout ends ${end(logs.stdout)}`);
    assert.ok(!result.logTail.includes('line0\n'));
    assert.ok(logs.stdout.startsWith('line0\nline1\n'));
    // In order and to the end. Podman's live stream drops frames under load (Docker's under a
    // busy machine too, seen once), and what it missed before its last frame cannot go after it.
    const numbers = logs.stdout.split('\n').slice(0, -1).map((l) => Number(l.slice(4)));
    assert.ok(numbers.every((n, i) => i === 0 || n > numbers[i - 1]!), `onLog's lines out of order: ${end(logs.stdout)}`);
    assert.equal(numbers.at(-1), 4999, `onLog's stdout ends ${end(logs.stdout)}`);
    t.diagnostic(`onLog got ${numbers.length} of 5000 lines`);
  });

  test(`${target.name}: a CPU spinner is throttled to its share, and the runner reports its usage`, async (t) => {
    if (!requireEngine(t, target.name)) return;
    if (!limitsHold(target)) {
      assert.equal((await limitsKept(target, image, { cpus: 0.5, memoryBytes: 64 * 1024 ** 2, pids: 16, gpus: 0, timeoutMs: 60_000 })).nanoCpus, 0, 'rootless Podman on cgroup v1 drops the CPU limit');
      return;
    }
    const engine = engineOf(target);
    const spool = await scratchDir('hm-spool-');
    const runner = new DockerTaskRunner(engine, { nodeId: NODE_ID, spoolDir: spool, outputVolumes: await outputVolumesOf(spool, target) }, silentLogger());
    const ctl = new AbortController();
    const samples: number[] = [];
    let memory = 0;
    const sampling = (async () => {
      // the first call only seeds the previous counters
      while (!ctl.signal.aborted && samples.length < 4) {
        const u = await runner.usage();
        if (u.length === 1) {
          samples.push(u[0]!.cpuPercent);
          memory = u[0]!.memoryBytes;
        }
        await new Promise((r) => setTimeout(r, 1000));
      }
      ctl.abort('cancelled');
    })();
    const result = await runner.execute({
      taskId: `it${process.pid}-spin`,
      attempt: 1,
      spec: { image, command: sh('while :; do :; done'), env: new Map(), limits: { cpus: 0.5, memoryBytes: 64 * 1024 ** 2, pids: 16, gpus: 0, timeoutMs: 60_000 }, network: 0, maxOutputBytes: 0, data: [] },
      gpuIndexes: [],
      signal: ctl.signal,
      onPhase: () => {},
      onPullProgress: () => {},
      onLog: () => {},
    });
    await sampling;
    await result.cleanup;
    await rm(spool, { recursive: true, force: true });
    assert.equal(result.outcome.kind, OutcomeKind.OUTCOME_KIND_CANCELLED, result.outcome.message);
    const shares = samples.slice(1);
    assert.ok(shares.length >= 2, `usage sampled while running: ${samples.join(', ')}`);
    recordHostile('task: CPU spinner (0.5 CPU share)', !shares.every((p) => p < 65));
    for (const p of shares) assert.ok(p > 30 && p < 65, `spinner limited to about half a core, saw ${p}% (samples ${samples.join(', ')})`);
    assert.ok(memory > 0 && memory < 64 * 1024 ** 2, `memory reported: ${memory}`);
    assert.deepEqual(await runner.usage(), [], 'a finished task has no usage');
  });

  test(`${target.name}: reapOrphans removes only this node's objects of tasks that are not live`, async (t) => {
    if (!requireEngine(t, target.name)) return;
    const engine = engineOf(target);
    const node = `reap-${process.pid}`;
    const mk = async (taskId: string) => {
      const labels = taskLabels(node, taskId, 1);
      await engine.createVolume(`hivemind-${taskId}-1-output`, labels);
      return engine.createContainer({
        name: `hivemind-${taskId}-1`, Image: image, Cmd: ['true'], Env: [], Labels: labels, User: '65534:65534', NetworkDisabled: true,
        AttachStdin: false, AttachStdout: false, AttachStderr: false, Tty: false, OpenStdin: false,
        HostConfig: { NetworkMode: 'none' } as never,
      });
    };
    const other = `other-${process.pid}`;
    await engine.createVolume(other, { 'io.hivemind.managed': 'true', 'io.hivemind.node-id': 'someone-else' });
    try {
      await mk(`live${process.pid}`);
      await mk(`dead${process.pid}`);
      const removed = await reapOrphans(engine, node, new Set([`live${process.pid}`]));
      assert.deepEqual(removed, { containers: [`hivemind-dead${process.pid}-1`], volumes: [`hivemind-dead${process.pid}-1-output`] });
      assert.equal((await engine.listContainers(nodeLabelFilters(node))).length, 1);
      assert.equal((await engine.listVolumes(nodeLabelFilters('someone-else'))).some((v) => v.name === other), true, 'other nodes untouched');
    } finally {
      await reapOrphans(engine, node, new Set<string>());
      await engine.removeVolume(other);
    }
  });
}
