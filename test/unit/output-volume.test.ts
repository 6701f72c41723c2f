import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LoopOutputVolumes, OutputFsUnavailableError, outputFsLayout, type RunTool } from '../../src/runtime/output-volume.js';
import { overCapMessage } from '../../src/runtime/docker-task-runner.js';

const MiB = 1024 ** 2;

test('the /output filesystem is the cap plus a small slack: more data room than the cap, a few % over it on disk', () => {
  const small = outputFsLayout(MiB, 100_000);
  assert.deepEqual(small, { inodes: 1024, bytes: MiB + 1024 * 256 + 16 * 1024 + 2 * MiB });
  const big = outputFsLayout(1024 ** 3, 100_000);
  assert.equal(big.inodes, 100_016, 'one inode per 8 KiB of cap, at most the entry cap');
  assert.ok(big.bytes / 1024 ** 3 < 1.05, `${big.bytes}`);
  assert.equal(big.bytes % 1024, 0, 'whole 1 KiB blocks');
  // room for the cap after the inode tables: a task that filled it wrote more than the cap
  for (const cap of [1, MiB, 64 * MiB, 1024 ** 3, 50 * 1024 ** 3]) {
    const l = outputFsLayout(cap, 100_000);
    assert.ok(l.bytes - l.inodes * 256 - 2 * MiB >= cap, `cap ${cap}`);
  }
});

test('an over-cap rejection names the cap and where it came from', () => {
  assert.equal(overCapMessage(MiB, MiB), "task wrote more than the 1.0 MiB output cap (the task's max_output_bytes)");
  assert.equal(overCapMessage(0, 1024 ** 3), "task wrote more than the 1.0 GiB output cap (the node's --max-output)");
  assert.equal(overCapMessage(4 * 1024 ** 3, 1024 ** 3), "task wrote more than the 1.0 GiB output cap (the node's --max-output)");
});

async function fixture(t: { after(fn: () => Promise<void>): void }) {
  const root = await mkdtemp(join(tmpdir(), 'hm-outfs-unit-'));
  t.after(() => rm(root, { recursive: true, force: true }));
  const dir = join(root, 'images');
  const sys = join(root, 'sys');
  await mkdir(sys);
  const calls: string[][] = [];
  let fail: { tool: string; err: Error } | undefined;
  // A fake losetup that records the attachment where the real kernel does: sysfs.
  const run: RunTool = async (file, args) => {
    calls.push([file, ...args]);
    if (fail?.tool === file) throw fail.err;
    if (file === 'losetup' && args[0] === '--find') {
      const n = (await readdir(sys)).length;
      await mkdir(join(sys, `loop${n}`, 'loop'), { recursive: true });
      await writeFile(join(sys, `loop${n}`, 'loop', 'backing_file'), `${args[2]}\n`);
      return `/dev/loop${n}\n`;
    }
    if (file === 'losetup' && args[0] === '-d') await rm(join(sys, args[1]!.replace('/dev/', '')), { recursive: true });
    return '';
  };
  const volumes = new LoopOutputVolumes(dir, run, sys);
  const mounting = (owner = { uid: 65534, gid: 65534 }) => new LoopOutputVolumes(dir, run, sys, owner, true);
  return { dir, sys, calls, volumes, mounting, failWith: (tool: string, err: Error) => (fail = { tool, err }) };
}

test('LoopOutputVolumes: a sparse image of the layout\'s size, an ext4 owned by the task user, attached; released completely', async (t) => {
  const f = await fixture(t);
  const opts = await f.volumes.create('hivemind-t1-1-output', MiB, 100_000);
  assert.deepEqual(opts, { driverOptions: { type: 'ext4', device: '/dev/loop0', o: 'nosuid,nodev' } });
  const file = join(f.dir, 'hivemind-t1-1-output.img');
  const st = await stat(file);
  assert.equal(st.size, outputFsLayout(MiB, 100_000).bytes);
  assert.ok(st.blocks * 512 < 64 * 1024, 'sparse');
  const mkfs = f.calls.find((c) => c[0] === 'mkfs.ext4')!;
  assert.ok(mkfs.includes('root_owner=65534:65534') && mkfs.includes('1024') && mkfs.at(-1) === file, mkfs.join(' '));
  assert.deepEqual(f.calls.find((c) => c[0] === 'debugfs'), ['debugfs', '-w', '-R', 'rmdir lost+found', file]);
  assert.deepEqual(await f.volumes.list(), ['hivemind-t1-1-output']);
  assert.equal(await f.volumes.attached('hivemind-t1-1-output'), true);

  await f.volumes.release('hivemind-t1-1-output');
  assert.deepEqual(f.calls.at(-1), ['losetup', '-d', '/dev/loop0']);
  assert.equal(await f.volumes.attached('hivemind-t1-1-output'), false);
  assert.deepEqual(await f.volumes.list(), []);
  await f.volumes.release('hivemind-t1-1-output'); // again: nothing left is success
});

test('LoopOutputVolumes mounting on the host (Podman): mounted at <name>.mnt for a bind, root owned by the given host ids, unmounted before the loop device goes', async (t) => {
  const f = await fixture(t);
  const volumes = f.mounting({ uid: 165533, gid: 165533 });
  const got = await volumes.create('hivemind-t3-1-output', MiB, 100);
  const at = join(f.dir, 'hivemind-t3-1-output.mnt');
  assert.deepEqual(got, { hostPath: at });
  assert.ok(f.calls.find((c) => c[0] === 'mkfs.ext4')!.includes('root_owner=165533:165533'));
  assert.deepEqual(f.calls.at(-1), ['mount', '-t', 'ext4', '-o', 'nosuid,nodev,noexec', '/dev/loop0', at]);
  assert.equal((await stat(f.dir)).mode & 0o777, 0o711, 'a rootless engine passes through to the bind source');
  assert.deepEqual(await volumes.list(), ['hivemind-t3-1-output'], 'the mount point is not listed as a volume');
  await volumes.release('hivemind-t3-1-output');
  const umount = f.calls.findIndex((c) => c[0] === 'umount');
  assert.deepEqual(f.calls[umount], ['umount', '-l', at]);
  assert.ok(umount < f.calls.findIndex((c) => c[0] === 'losetup' && c[1] === '-d'), 'unmounted before the device is detached');
  await assert.rejects(stat(at), { code: 'ENOENT' });
});

test('LoopOutputVolumes: a host without the tools or loop devices gets a typed error naming the step, and nothing is left', async (t) => {
  const f = await fixture(t);
  f.failWith('losetup', Object.assign(new Error('Command failed'), { stderr: 'losetup: cannot find an unused loop device: Permission denied\n' }));
  await assert.rejects(f.volumes.create('hivemind-t2-1-output', MiB, 10), (err: unknown) => {
    assert.ok(err instanceof OutputFsUnavailableError);
    assert.match(err.message, /losetup failed: losetup: cannot find an unused loop device: Permission denied$/);
    return true;
  });
  assert.deepEqual(await f.volumes.list(), []);
  f.failWith('mkfs.ext4', Object.assign(new Error('spawn mkfs.ext4 ENOENT'), { code: 'ENOENT' }));
  await assert.rejects(f.volumes.create('hivemind-t2-1-output', MiB, 10), /mkfs\.ext4 is not installed/);
  const probe = await f.volumes.probe();
  assert.equal(probe.ok, false);
  assert.deepEqual(await f.volumes.list(), []);
  assert.throws(() => f.volumes.imagePath('../etc'), /not a plain name/);
});
