// The worker's Docker image (Dockerfile, built offline by scripts/worker-image.sh): its labels and
// runtime settings, no build toolchain inside, --version and doctor (a bounded /output given the
// host's loop devices), then `hivemind dev` in it as the non-root user: a task round trip, the
// healthcheck, `docker stop` draining a running task to exit 0 (SIGTERM reaches the worker through
// tini), and the history kept on the data volume.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { waitFor } from '../helpers/cli-process.js';
import { executablePath, requireDockerImage, requireWorkerImage } from '../helpers/requirements.js';
import { WORKER_IMAGE, WorkerContainer, docker, runOnce, startDev } from '../helpers/worker-container.js';
import { loopDeviceArgs } from '../helpers/loop-devices.js';

const TASK_IMAGE = 'hivemind/busybox:1';
const MiB = 1024 * 1024;
const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const packageVersion = (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string }).version;

interface ImageInfo {
  Size: number;
  Config: {
    Labels: Record<string, string>;
    Entrypoint: string[];
    Cmd: string[];
    Env: string[];
    StopSignal?: string;
    Healthcheck?: { Test: string[] };
  };
}

test('the worker Docker image', { timeout: 300_000 }, async (t) => {
  if (!requireWorkerImage(t, WORKER_IMAGE) || !requireDockerImage(t, TASK_IMAGE)) return;

  await t.test('labels, entrypoint, stop signal, healthcheck and size', async () => {
    const info = (JSON.parse((await docker(['image', 'inspect', WORKER_IMAGE])).stdout) as ImageInfo[])[0]!;
    const { Labels: labels } = info.Config;
    assert.equal(labels['org.opencontainers.image.version'], packageVersion);
    assert.match(labels['org.opencontainers.image.revision'] ?? '', /^([0-9a-f]{7,}|unknown)$/);
    assert.match(labels['io.hivemind.build-hash'] ?? '', /^[0-9a-f]{64}$/);
    assert.deepEqual(info.Config.Entrypoint, ['/usr/bin/tini', '--', '/usr/local/bin/hivemind']);
    assert.deepEqual(info.Config.Cmd, ['worker', 'start']);
    assert.equal(info.Config.StopSignal, 'SIGTERM');
    assert.deepEqual(info.Config.Healthcheck?.Test, ['CMD', '/usr/local/bin/hivemind-healthcheck']);
    assert.ok(info.Config.Env.includes('HIVEMIND_HOME=/var/lib/hivemind'), info.Config.Env.join(' '));
    const size = `${WORKER_IMAGE} is ${(info.Size / MiB).toFixed(1)} MiB (${info.Size} bytes)`;
    t.diagnostic(size);
    // The executable is ~131 MiB and the Debian runtime ~90 MiB: much more means something crept in.
    assert.ok(info.Size < 300 * MiB, size);
  });

  await t.test('--version prints the version and commit the labels carry, and matches dist-exe', async () => {
    const r = await runOnce(['--version']);
    assert.equal(r.code, 0, r.stderr);
    const m = /^hivemind (\S+) \(commit ([0-9a-f]{7,}|unknown), node (v24\.\d+\.\d+), standalone\)$/.exec(r.stdout.trim());
    assert.ok(m, `unexpected --version output: ${r.stdout}`);
    assert.equal(m[1], packageVersion);
    const revision = (await docker(['image', 'inspect', '-f', '{{ index .Config.Labels "org.opencontainers.image.revision" }}', WORKER_IMAGE])).stdout.trim();
    assert.equal(m[2], revision);
    // A stale image (the executable rebuilt, scripts/worker-image.sh not run) is a failure, not a pass.
    const exe = executablePath();
    if (existsSync(exe)) assert.equal(r.stdout.trim(), execFileSync(exe, ['--version'], { encoding: 'utf8' }).trim(), 'the image holds the current dist-exe build: run scripts/worker-image.sh');
  });

  await t.test('only runtime files: no compilers, Node, npm, TypeScript or headers', async () => {
    const script = [
      'for c in gcc cc c++ g++ clang make ld as node nodejs npm npx tsc python3; do command -v "$c" && echo "FOUND $c"; done',
      'for d in /usr/include /usr/lib/gcc /usr/local/lib/node_modules /usr/lib/node_modules; do [ -e "$d" ] && echo "FOUND $d"; done',
      'find / -xdev \\( -name node_modules -o -name typescript -o -name "*.ts" -o -name "*.h" -o -name "*.map" \\) -print | sed "s/^/FOUND /"',
      'echo "BIN $(ls /usr/local/bin | tr "\\n" " ")"',
    ].join('\n');
    const r = await runOnce(['-c', script], ['--entrypoint', '/bin/sh']);
    assert.equal(r.stdout.split('\n').filter((l) => l.startsWith('FOUND')).join('\n'), '', r.stdout);
    assert.match(r.stdout, /^BIN hivemind hivemind-healthcheck $/m);
  });

  await t.test('doctor: Docker through the mounted socket, WireGuard tools, busybox, the data dir', async () => {
    const r = await runOnce(['doctor', '--json']);
    const checks = new Map((JSON.parse(r.stdout) as { name: string; status: string }[]).map((x) => [x.name, x]));
    for (const name of ['node', 'engine', 'limits', 'wireguard-tools', 'wireguard-go', 'busybox', 'data dir']) {
      assert.equal(checks.get(name)?.status, 'ok', `${name}: ${JSON.stringify(checks.get(name))}`);
    }
  });

  await t.test('doctor: /output is bounded given the loop devices the doc passes; without them it says `worker start` refuses, or runs unbounded when allowed', async () => {
    const outputCheck = async (runArgs: string[]) => {
      const r = await runOnce(['doctor', '--json'], runArgs);
      return (JSON.parse(r.stdout) as { name: string; status: string; detail: string }[]).find((x) => x.name === 'task output');
    };
    // as docs/docker-image.md runs it: root, with --device for /dev/loop-control and each /dev/loopN
    const bounded = await outputCheck(loopDeviceArgs());
    assert.equal(bounded?.status, 'ok', JSON.stringify(bounded));
    assert.match(bounded?.detail ?? '', /loop filesystem/);
    const refused = await outputCheck([]);
    assert.equal(refused?.status, 'fail', JSON.stringify(refused));
    assert.match(refused?.detail ?? '', /`worker start` refuses to start/);
    const allowed = await outputCheck(['-e', 'HIVEMIND_ALLOW_UNBOUNDED_OUTPUT=true']);
    assert.equal(allowed?.status, 'warn', JSON.stringify(allowed));
    assert.match(allowed?.detail ?? '', /allowUnboundedOutput is set, so `worker start` runs unbounded/);
  });

  await t.test('dev as the non-root user: round trip, healthcheck, docker stop drains, the volume keeps the history', async () => {
    // What the doc prescribes for a worker of a development master: the hivemind user, with the
    // group that owns the socket. The data volume is new, so it takes the image's owner and mode.
    const volume = `hm-image-test-${process.pid}-${Date.now().toString(36)}`;
    const runArgs = ['--user', 'hivemind', '--group-add', String(statSync('/var/run/docker.sock').gid), '-v', `${volume}:/var/lib/hivemind`, '--health-interval', '1s'];
    const containers: WorkerContainer[] = [];
    // One hook, in this order: a volume in use by a container cannot be removed.
    t.after(async () => {
      for (const x of containers) await x.close();
      await docker(['volume', 'rm', '-f', volume]);
    });
    const first = await startDev(runArgs);
    containers.push(first.c);
    const { c } = first;
    assert.equal((await c.sh('id -un')).stdout.trim(), 'hivemind');

    const sub = await c.hivemind(['submit', '--image', TASK_IMAGE, '--wait', '--', 'sh', '-c', 'echo hello from the image > /output/x.txt']);
    assert.equal(sub.code, 0, `${sub.stdout}\n${sub.stderr}\n${await c.logs()}`);
    const taskId = sub.stdout.trim().split(/\s+/)[0]!;
    const res = await c.hivemind(['result', taskId, '-o', '/tmp/r.tar.gz', '--extract', '/tmp/r']);
    assert.equal(res.code, 0, res.stderr);
    assert.equal((await c.sh('cat /tmp/r/x.txt')).stdout, 'hello from the image\n');

    // The image's HEALTHCHECK (run every second here) turns healthy; it fails when nothing answers.
    await waitFor('the container to be healthy', async () => (await c.inspect('{{.State.Health.Status}}')) === 'healthy', 30_000, 250);
    assert.equal((await c.sh('hivemind-healthcheck')).stdout.trim(), 'ok');
    assert.notEqual((await c.sh('hivemind-healthcheck', { HIVEMIND_MONITOR_PORT: '5999' })).code, 0);

    // docker stop while a task runs: the worker drains (the task finishes and its result is
    // stored), then exits 0 well within the stop timeout, so it was not killed.
    const slow = await c.hivemind(['submit', '--image', TASK_IMAGE, '--', 'sh', '-c', 'sleep 3; echo drained > /output/d.txt']);
    assert.equal(slow.code, 0, slow.stderr);
    const slowId = slow.stdout.trim().split(/\s+/)[0]!;
    await waitFor('the slow task to run', async () => {
      const r = await c.hivemind(['get', slowId, '--json']);
      return r.code === 0 && (JSON.parse(r.stdout) as { startedAtMs: number }).startedAtMs > 0;
    }, 30_000, 200);
    const started = Date.now();
    const stop = await docker(['stop', '-t', '60', c.name], 90_000);
    const stopMs = Date.now() - started;
    assert.equal(stop.code, 0, stop.stderr);
    const logs = await c.logs();
    assert.equal(await c.inspect('{{.State.ExitCode}}'), '0', logs);
    assert.ok(stopMs < 45_000, `docker stop took ${stopMs} ms`);
    assert.match(logs, /shutting down: draining running tasks/);
    assert.match(logs, new RegExp(`"taskId":"${slowId}".*"state":"SUCCEEDED".*"msg":"task finished"`));
    t.diagnostic(`docker stop with a running task: ${stopMs} ms`);

    // A new container on the same volume (an upgrade does this) is the same node with its history.
    const second = await startDev(runArgs);
    containers.push(second.c);
    assert.equal(second.nodeId, first.nodeId);
    const got = await second.c.hivemind(['get', slowId]);
    assert.match(got.stdout, /^state\s+succeeded$/m, got.stdout);
    const res2 = await second.c.hivemind(['result', slowId, '-o', '/tmp/d.tar.gz', '--extract', '/tmp/d']);
    assert.equal(res2.code, 0, res2.stderr);
    assert.equal((await second.c.sh('cat /tmp/d/d.txt')).stdout, 'drained\n');
  });
});
