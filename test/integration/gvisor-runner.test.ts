// Every guarantee of a runc task proven again under gVisor (Docker's runsc runtime), against the
// real runtime through the real DockerTaskRunner: memory limit (OOM reported as OOM), pids, CPU
// share, timeout, read-only root, non-root user, no network, output cap, log capture. Reattach
// after a worker kill -9 is proven through a real worker process in test/e2e/gvisor-faults.test.ts.
// Under CI a missing runsc fails (requireGvisor).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { requireGvisor } from '../helpers/requirements.js';
import { recordHostile } from '../helpers/fault-ledger.js';
import { removeScratch, runTask, sh, type RunOptions } from '../helpers/runner-task.js';
import { DockerEngine } from '../../src/runtime/docker-engine.js';
import { Isolation, OutcomeKind, type TaskSpec } from '../../src/protocol/gen/hivemind/v1/common.js';
import { containerName } from '../../src/runtime/container-spec.js';
import { countingListener } from '../helpers/counting-listener.js';

after(() => removeScratch());

const MiB = 1024 ** 2;
/** A task under gVisor: the spec says so, as `hivemind submit --isolation gvisor` does. */
const runGvisor = (spec: Partial<TaskSpec>, opts?: RunOptions) => runTask({ ...spec, isolation: Isolation.ISOLATION_GVISOR }, opts);

test('gVisor: the task really runs in gVisor\'s kernel (runsc), as uid 65534 with a read-only root and no capabilities', async (t) => {
  if (!requireGvisor(t)) return;
  const engine = DockerEngine.create();
  let runtime: unknown;
  let readonlyRoot: unknown;
  const { result, logs } = await runGvisor(
    { command: sh('sleep 1; dmesg > /tmp/k; grep -c gVisor /tmp/k; id -u; id -g; touch /rootfile 2>&1 || echo ROOT-RO; touch /tmp/x && echo TMP-OK; grep CapEff /proc/self/status') },
    {
      onRunner: (_r, taskId) => {
        // Read from the engine while it runs: the container was created with HostConfig.Runtime runsc.
        setTimeout(() => void engine.inspectContainer(containerName(taskId, 1)).then((c) => ([runtime, readonlyRoot] = [c.hostConfig.Runtime, c.hostConfig.ReadonlyRootfs]), () => undefined), 500);
      },
    },
  );
  assert.equal(result.outcome.kind, OutcomeKind.OUTCOME_KIND_EXITED, `${result.outcome.message}\n${logs.stderr}`);
  assert.equal(runtime, 'runsc');
  assert.equal(readonlyRoot, true);
  const lines = logs.stdout.trim().split('\n');
  assert.ok(Number(lines[0]) >= 1, `gVisor's kernel log: ${JSON.stringify(logs)} ${result.logTail}`);
  recordHostile('gVisor task: write the root filesystem', !/ROOT-RO/.test(logs.stdout));
  recordHostile('gVisor task: capabilities (all dropped, runs as nobody)', lines[1] !== '65534' || !/CapEff:\s+0000000000000000/.test(logs.stdout));
  assert.equal(lines[1], '65534');
  assert.equal(lines[2], '65534');
  // gVisor checks the permission first (the root belongs to root); the engine shows the root read-only.
  assert.match(logs.stdout, /touch: \/rootfile: (Read-only file system|Permission denied)/);
  assert.match(logs.stdout, /ROOT-RO/);
  assert.match(logs.stdout, /TMP-OK/);
  assert.match(logs.stdout, /CapEff:\s+0000000000000000/);
});

test('gVisor: no network, only lo, and a TCP server on the host loopback is unreachable', async (t) => {
  if (!requireGvisor(t)) return;
  const listener = await countingListener();
  const port = listener.port;
  try {
    const { result, logs } = await runGvisor({ command: sh(`ls /sys/class/net; nc -w 2 127.0.0.1 ${port} </dev/null && echo CONNECTED || echo CONNECT-FAILED; nc -w 2 10.0.0.1 80 </dev/null && echo LAN || echo LAN-FAILED`) });
    assert.equal(result.outcome.kind, OutcomeKind.OUTCOME_KIND_EXITED, result.outcome.message);
    recordHostile('gVisor task: reach the network (host loopback, a LAN address)', listener.connections() > 0 || /CONNECTED\n|LAN\n/.test(logs.stdout));
    assert.deepEqual(logs.stdout.trim().split('\n'), ['lo', 'CONNECT-FAILED', 'LAN-FAILED']);
    assert.equal(listener.connections(), 0);
  } finally {
    listener.close();
  }
});

test('gVisor: a memory hog is OOM_KILLED (the engine reports the sandbox OOM-killed, exit 137)', async (t) => {
  if (!requireGvisor(t)) return;
  const { result } = await runGvisor({
    command: ['dd', 'if=/dev/zero', 'of=/dev/null', 'bs=256M', 'count=1'],
    limits: { cpus: 1, memoryBytes: 32 * MiB, pids: 64, gpus: 0, timeoutMs: 60_000 },
  });
  recordHostile('gVisor task: memory hog (256 MiB in a 32 MiB limit)', result.outcome.kind !== OutcomeKind.OUTCOME_KIND_OOM_KILLED);
  assert.equal(result.outcome.kind, OutcomeKind.OUTCOME_KIND_OOM_KILLED, `${result.outcome.message} / ${result.logTail}`);
  assert.equal(result.outcome.exitCode, 137);
});

test('gVisor: a fork bomb is bounded by the pids limit (on the sandbox\'s host threads) and ends, nothing left', async (t) => {
  if (!requireGvisor(t)) return;
  const started = Date.now();
  // Under gVisor the task's processes live in its kernel; the host's pids cgroup bounds the
  // sandbox's threads, so the bomb cannot take the host's pid table: it ends its own sandbox.
  const { result, logs } = await runGvisor({
    command: sh('i=0; while [ $i -lt 400 ]; do sleep 30 & i=$((i+1)); echo $i; done; echo ALL-FORKED'),
    limits: { cpus: 1, memoryBytes: 256 * MiB, pids: 16, gpus: 0, timeoutMs: 30_000 },
  });
  const forked = Number(logs.stdout.trim().split('\n').pop());
  t.diagnostic(`outcome ${OutcomeKind[result.outcome.kind]} ${result.outcome.message}; the task forked ${Number.isNaN(forked) ? 'all' : forked} processes`);
  const contained = !/ALL-FORKED/.test(logs.stdout) && result.outcome.kind !== OutcomeKind.OUTCOME_KIND_TIMED_OUT;
  recordHostile('gVisor task: fork bomb (pids limit 16)', !contained);
  assert.doesNotMatch(logs.stdout, /ALL-FORKED/, '400 processes did not fit');
  assert.ok(forked < 64, `about 16 processes (the sandbox's thread budget), saw ${forked}`);
  assert.ok(!(result.outcome.kind === OutcomeKind.OUTCOME_KIND_EXITED && result.outcome.exitCode === 0), 'the task did not succeed');
  assert.ok(Date.now() - started < 25_000, `ended in ${Date.now() - started} ms, not at its timeout`);
});

test('gVisor: a task with a small pids limit still starts (the sandbox gets its own threads on top)', async (t) => {
  if (!requireGvisor(t)) return;
  // a pipeline and a background job: a few processes, well within 4
  const { result, logs } = await runGvisor({ command: sh('sleep 1 & echo started | cat; wait; echo done'), limits: { cpus: 1, memoryBytes: 64 * MiB, pids: 4, gpus: 0, timeoutMs: 60_000 } });
  assert.equal(result.outcome.kind, OutcomeKind.OUTCOME_KIND_EXITED, result.outcome.message);
  assert.equal(result.outcome.exitCode, 0, logs.stderr);
  assert.equal(logs.stdout, 'started\ndone\n');
});

test('gVisor: the wall-clock timeout kills the task: TIMED_OUT', async (t) => {
  if (!requireGvisor(t)) return;
  const started = Date.now();
  const { result } = await runGvisor({ command: ['sleep', '60'], limits: { cpus: 1, memoryBytes: 64 * MiB, pids: 64, gpus: 0, timeoutMs: 1500 } });
  assert.equal(result.outcome.kind, OutcomeKind.OUTCOME_KIND_TIMED_OUT, result.outcome.message);
  assert.ok(Date.now() - started < 20_000);
  assert.ok(result.outcome.durationMs >= 1400 && result.outcome.durationMs < 10_000, String(result.outcome.durationMs));
});

test('gVisor: a CPU spinner is held to its share, as the runner measures it', async (t) => {
  if (!requireGvisor(t)) return;
  const samples: number[] = [];
  const { result } = await runGvisor(
    { command: sh('while :; do :; done'), limits: { cpus: 0.5, memoryBytes: 64 * MiB, pids: 64, gpus: 0, timeoutMs: 6000 } },
    {
      onRunner: (runner) => {
        const timer = setInterval(() => {
          void runner.usage().then((u) => {
            if (u[0]) samples.push(Math.round(u[0].cpuPercent));
          }, () => undefined);
        }, 1000);
        setTimeout(() => clearInterval(timer), 5500);
      },
    },
  );
  assert.equal(result.outcome.kind, OutcomeKind.OUTCOME_KIND_TIMED_OUT, result.outcome.message);
  const shares = samples.slice(1);
  t.diagnostic(`CPU share samples: ${samples.join(', ')} %`);
  assert.ok(shares.length >= 2, `usage sampled while running: ${samples.join(', ')}`);
  recordHostile('gVisor task: CPU spinner (0.5 CPU share)', !shares.every((p) => p < 65));
  for (const p of shares) assert.ok(p > 30 && p < 65, `spinner limited to about half a core, saw ${p}% (samples ${samples.join(', ')})`);
});

test('gVisor: output over its cap is OUTPUT_REJECTED; an escaping symlink too', async (t) => {
  if (!requireGvisor(t)) return;
  const big = await runGvisor({ command: sh('head -c 5000 /dev/zero > /output/big'), maxOutputBytes: 1000 });
  recordHostile('gVisor output: over the size cap', big.result.outcome.kind !== OutcomeKind.OUTCOME_KIND_OUTPUT_REJECTED);
  assert.equal(big.result.outcome.kind, OutcomeKind.OUTCOME_KIND_OUTPUT_REJECTED, big.result.outcome.message);
  assert.match(big.result.outcome.message, /"output\/big" \(5000 bytes\) takes the total over the 1000-byte cap/);
  const link = await runGvisor({ command: sh('ln -s /etc/passwd /output/pw') });
  recordHostile('gVisor output: a symlink to a host path', link.result.outcome.kind !== OutcomeKind.OUTCOME_KIND_OUTPUT_REJECTED);
  assert.equal(link.result.outcome.kind, OutcomeKind.OUTCOME_KIND_OUTPUT_REJECTED);
  const ok = await runGvisor({ command: sh('echo hello > /output/a.txt') });
  assert.equal(ok.result.outcome.kind, OutcomeKind.OUTCOME_KIND_EXITED, ok.result.outcome.message);
  assert.ok(ok.result.result && ok.result.result.size > 0, 'a result within the cap is collected');
});

test('gVisor: a task writing past its output cap is stopped at the filesystem: OUTPUT_REJECTED', async (t) => {
  if (!requireGvisor(t)) return;
  const { result, logs } = await runGvisor({ command: sh('head -c 8388608 /dev/zero > /output/big; echo rc=$?'), maxOutputBytes: 1024 * 1024 });
  recordHostile('gVisor task: write past the /output cap', result.outcome.kind !== OutcomeKind.OUTCOME_KIND_OUTPUT_REJECTED);
  assert.equal(result.outcome.kind, OutcomeKind.OUTCOME_KIND_OUTPUT_REJECTED, `${result.outcome.message} ${logs.stdout}${logs.stderr}`);
  assert.match(logs.stdout + logs.stderr, /No space left on device|rc=1/);
});

test('gVisor: logs are captured, stdout and stderr apart; the tail keeps the end', async (t) => {
  if (!requireGvisor(t)) return;
  const { result, logs } = await runGvisor({ command: sh('echo to-err >&2; i=0; while [ $i -lt 5000 ]; do echo line$i; i=$((i+1)); done') }, { defaults: { logTailBytes: 1000 } });
  assert.equal(result.outcome.kind, OutcomeKind.OUTCOME_KIND_EXITED, result.outcome.message);
  recordHostile('gVisor task: log flood (tail bounded, end kept)', !(result.logTail.length <= 1000 && result.logTail.endsWith('line4999\n')));
  assert.ok(result.logTail.length <= 1000);
  assert.ok(result.logTail.endsWith('line4998\nline4999\n'));
  assert.ok(logs.stdout.startsWith('line0\nline1\n'));
  assert.equal(logs.stdout.split('\n').length, 5001);
  assert.equal(logs.stderr, 'to-err\n');
});

test('gVisor: the task sees gVisor\'s kernel, not the host\'s: its own processes only, no Docker socket, no host devices', async (t) => {
  if (!requireGvisor(t)) return;
  const hostKernel = (await import('node:os')).release();
  const { result, logs } = await runGvisor({
    command: sh('uname -r; n=0; for p in /proc/[0-9]*; do n=$((n+1)); done; echo procs=$n; ls /var/run/docker.sock 2>/dev/null && echo DOCKER-SOCKET; ls /dev/sda /dev/vda /dev/nvme0n1 2>/dev/null && echo HOST-DISK; cat /proc/1/cmdline | tr "\\0" " "; echo'),
  });
  assert.equal(result.outcome.kind, OutcomeKind.OUTCOME_KIND_EXITED, result.outcome.message);
  const [kernel] = logs.stdout.split('\n');
  const procs = Number(/procs=(\d+)/.exec(logs.stdout)?.[1]);
  // Anchored: PID 1's command line (printed last) holds these words too.
  const escaped = kernel === hostKernel || /^(DOCKER-SOCKET|HOST-DISK)$/m.test(logs.stdout) || !(procs <= 4);
  recordHostile('gVisor task: see the host kernel, processes, Docker socket or disks', escaped);
  assert.notEqual(kernel, hostKernel, `the task's kernel (${kernel}) is gVisor's, not the host's`);
  assert.doesNotMatch(logs.stdout, /^(DOCKER-SOCKET|HOST-DISK)$/m);
  assert.ok(procs <= 4, `only the task's own processes: ${logs.stdout}`);
  assert.match(logs.stdout, /sh -c uname/, 'PID 1 is the task itself');
});
