// The standalone Linux executable (npm run build:exe), copied alone into an empty directory of a
// Debian container that has no Node, runs --version, doctor, dev (a task round trip and the web
// monitor's embedded files) and worker start against a master run by the same executable.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { waitFor } from '../helpers/cli-process.js';
import { EXE_IN_CONTAINER, ExeContainer, type ExeDaemon } from '../helpers/exe-container.js';
import { executablePath, requireBuiltFiles, requireDockerImage, requireExecutable } from '../helpers/requirements.js';
import { exeProblems, type ExeArch, type ExePlatform } from '../../scripts/exe-format.js';

const BASE_IMAGE = 'hivemind/debian-base:12';
const TASK_IMAGE = 'hivemind/busybox:1';
const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const packageVersion = (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string }).version;

/** GET over plain HTTP from inside the container (perl-base is in every Debian rootfs; curl is not). */
async function httpGet(c: ExeContainer, port: number, path: string): Promise<{ status: number; type: string; body: string }> {
  const perl = `use IO::Socket::INET; my $s = IO::Socket::INET->new("127.0.0.1:${port}") or die "connect: $!"; ` +
    `print $s "GET ${path} HTTP/1.0\\r\\nHost: 127.0.0.1:${port}\\r\\n\\r\\n"; print while <$s>;`;
  const r = await c.sh(`perl -e '${perl}'`);
  assert.equal(r.code, 0, `GET ${path}: ${r.stderr}`);
  const [head = '', ...rest] = r.stdout.split('\r\n\r\n');
  return { status: Number(/^HTTP\/1\.\d (\d+)/.exec(head)?.[1]), type: /content-type: ([^\r\n]+)/i.exec(head)?.[1] ?? '', body: rest.join('\r\n\r\n') };
}

/** What `npm run build:exe` makes; the Windows and arm64 executables cannot run here. */
const BUILT: readonly { file: string; platform: ExePlatform; arch: ExeArch }[] = [
  { file: 'hivemind-linux-x64', platform: 'linux', arch: 'x64' },
  { file: 'hivemind-linux-arm64', platform: 'linux', arch: 'arm64' },
  { file: 'hivemind-win-x64.exe', platform: 'win', arch: 'x64' },
];

test('every executable matches its .sha256 file and is an image for its platform with the hivemind SEA blob inside', (t) => {
  const dir = join(root, 'dist-exe');
  if (!requireBuiltFiles(t, BUILT.flatMap((b) => [join(dir, b.file), join(dir, `${b.file}.sha256`)]))) return;
  for (const b of BUILT) {
    const image = readFileSync(join(dir, b.file));
    assert.equal(readFileSync(join(dir, `${b.file}.sha256`), 'utf8'), `${createHash('sha256').update(image).digest('hex')}  ${b.file}\n`, `${b.file}.sha256 (the format sha256sum -c reads)`);
    assert.deepEqual(exeProblems(image, b.platform, b.arch), [], b.file);
  }
  // The check itself: a bare Node binary of each kind, the wrong architecture, and junk are refused.
  const fuse = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2:';
  const arm = readFileSync(join(dir, 'hivemind-linux-arm64'));
  const plain = Buffer.from(arm);
  plain.write('0', plain.indexOf(`${fuse}1`) + fuse.length, 'latin1');
  assert.deepEqual(exeProblems(plain, 'linux', 'arm64'), ['no SEA blob injected (the SEA fuse is not flipped)']);
  assert.deepEqual(exeProblems(arm, 'linux', 'x64'), ['an ELF image for machine 0xb7, not x64 (0x3e)']);
  assert.deepEqual(exeProblems(readFileSync(join(dir, 'hivemind-win-x64.exe')), 'linux', 'x64'), ['not an ELF image']);
  assert.deepEqual(exeProblems(Buffer.from('#!/bin/sh\necho hi\n'), 'win', 'x64'), ['not a PE image (no MZ header)', 'no SEA blob injected (the SEA fuse is not flipped)', 'the hivemind bundle is not inside (no "HIVEMIND_MONITOR_PORT")']);
});

async function stopAll(daemons: ExeDaemon[]): Promise<void> {
  for (const d of daemons.reverse()) await d.stop().catch(() => undefined);
}

test('the Linux executable runs alone in a Debian container without Node', { timeout: 600_000 }, async (t) => {
  if (!requireExecutable(t) || !requireDockerImage(t, BASE_IMAGE) || !requireDockerImage(t, TASK_IMAGE)) return;
  const c = await ExeContainer.start(executablePath(), BASE_IMAGE);
  t.after(() => c.close());
  const home = `${c.shared}/home`;

  await t.test('the container has no Node and the directory holds only the executable', async () => {
    assert.equal((await c.sh('command -v node nodejs || echo none')).stdout.trim(), 'none');
    assert.equal((await c.sh(`ls -A ${dirname(EXE_IN_CONTAINER)}`)).stdout.trim(), 'hivemind');
  });

  await t.test('--version prints version, commit and Node version', async () => {
    const r = await c.hivemind(['--version']);
    assert.equal(r.code, 0, r.stderr);
    const m = /^hivemind (\S+) \(commit ([0-9a-f]{7,}|unknown), node (v24\.\d+\.\d+), standalone\)$/.exec(r.stdout.trim());
    assert.ok(m, `unexpected --version output: ${r.stdout}`);
    assert.equal(m[1], packageVersion);
  });

  await t.test('doctor reaches Docker through the mounted socket', async () => {
    const r = await c.hivemind(['doctor', '--json']);
    const checks = JSON.parse(r.stdout) as { name: string; status: string; message?: string }[];
    const byName = new Map(checks.map((x) => [x.name, x]));
    // The container engine's check (Docker here, or Podman) and the limits it enforces.
    assert.equal(byName.get('engine')?.status, 'ok', JSON.stringify(byName.get('engine')));
    assert.match(String((byName.get('engine') as { detail?: string } | undefined)?.detail), /^rootful Docker \S+ .*at unix:\/\//, JSON.stringify(byName.get('engine')));
    assert.equal(byName.get('limits')?.status, 'ok', JSON.stringify(byName.get('limits')));
    assert.equal(byName.get('node')?.status, 'ok', JSON.stringify(byName.get('node')));
    assert.equal(byName.get('data dir')?.status, 'ok', JSON.stringify(byName.get('data dir')));
  });

  await t.test('dev: a task round trip, and the monitor serves its embedded page and scripts', async () => {
    const dev = c.daemon('dev', ['dev', '--report-interval', '1s']);
    try {
      const up = await waitFor('hivemind dev to be up', () => (!dev.running ? 'exited' : dev.output.includes('HiveMind dev is up') ? 'up' : undefined), 120_000, 200);
      assert.equal(up, 'up', `dev exited:\n${dev.output}`);
      const sub = await c.hivemind(['submit', '--image', TASK_IMAGE, '--wait', '--', 'sh', '-c', 'echo hello from the executable > /output/hello.txt']);
      assert.equal(sub.code, 0, `${sub.stdout}\n${sub.stderr}\n${dev.output}`);
      const taskId = sub.stdout.trim().split(/\s+/)[0]!;
      const res = await c.hivemind(['result', taskId, '-o', `${c.shared}/result.tar.gz`, '--extract', `${c.shared}/result`]);
      assert.equal(res.code, 0, res.stderr);
      assert.equal(readFileSync(`${c.shared}/result/hello.txt`, 'utf8'), 'hello from the executable\n');

      const page = await httpGet(c, 5001, '/monitor.html');
      assert.equal(page.status, 200);
      assert.match(page.type, /text\/html/);
      for (const src of ['/vendor/socket.io/socket.io.min.js', '/vendor/uplot/uPlot.iife.min.js', '/assets/monitor.js']) {
        assert.ok(page.body.includes(`src="${src}"`), `monitor.html loads ${src}`);
        const asset = await httpGet(c, 5001, src);
        assert.equal(asset.status, 200, src);
        assert.match(asset.type, /javascript/, src);
        assert.ok(asset.body.length > 1000, `${src} has content`);
      }
      assert.equal((await httpGet(c, 5001, '/assets/nothing.js')).status, 404);
      const api = await httpGet(c, 5001, '/api/tasks');
      assert.equal(api.status, 200);
      assert.ok(api.body.includes(taskId), 'the task history (SQLite) lists the task');
    } finally {
      await stopAll([dev]);
    }
    assert.equal(await dev.exited, 0, dev.output);
  });

  await t.test('worker start against a master run by the same executable', async () => {
    const address = '127.0.0.1:7171';
    const m = await c.master(address, `${c.shared}/master`);
    const master = m.daemon;
    const daemons = [master];
    try {
      const admin = m.admin;
      const tok = await m.enrollmentToken();
      const worker = c.daemon('worker', ['worker', 'start', '--master', address, '--token', tok, '--data-dir', `${home}/worker`, '--report-interval', '1s', '--monitor-port', '0']);
      daemons.push(worker);
      await waitFor('the worker to be online', async () => {
        if (!worker.running) return true;
        const r = await c.hivemind(['nodes', '--json', ...admin]);
        return (JSON.parse(r.stdout || '[]') as { online: boolean }[]).some((n) => n.online);
      }, 60_000, 500);
      assert.ok(worker.running, `worker exited:\n${worker.output}`);
      // the container was given the host's loop devices: /output is a bounded ext4 on one of them
      const sub = await c.hivemind(['submit', '--image', TASK_IMAGE, '--wait', ...admin, '--', 'sh', '-c', 'grep -E "^/dev/loop[0-9]+ /output ext4 " /proc/mounts && echo worked > /output/w.txt']);
      assert.equal(sub.code, 0, `${sub.stdout}\n${sub.stderr}\n${worker.output}`);
      assert.match(sub.stdout, /succeeded/i);
      assert.equal(await worker.stop(), 0, worker.output);
    } finally {
      await stopAll(daemons);
    }
  });
});
