// Where the worker's own paths are on the Docker host: the same when it runs on the host; through
// its container's volume or bind (the deepest one holding the path) when it runs in one.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { silentLogger } from '../../src/common/logger.js';
import { HostPathError, detectHostPaths, hostPathMapper, ownContainerId } from '../../src/runtime/host-paths.js';

const ID = 'f'.repeat(64);
const MOUNTINFO = `1 0 0:1 / / rw - overlay overlay rw
2 1 8:1 /var/lib/docker/containers/${ID}/hostname /etc/hostname rw - ext4 /dev/sda1 rw
3 1 8:1 /var/lib/docker/volumes/hivemind-data/_data /var/lib/hivemind rw - ext4 /dev/sda1 rw`;

test('ownContainerId: from the hostname bind of /proc/self/mountinfo; none on a host', () => {
  assert.equal(ownContainerId(MOUNTINFO), ID);
  assert.equal(ownContainerId('1 0 0:1 / / rw - ext4 /dev/sda1 rw'), undefined);
  // A host whose mount table shows another container's files being set up (a shared
  // /var/lib/docker) is not that container: only a mount AT /etc/hostname counts.
  const hostSeeingContainers = `1 0 0:1 / / rw - ext4 /dev/sda1 rw
7 1 8:1 /var/lib/docker/containers/${ID}/hostname /var/lib/docker/overlay2/abc/merged/etc/hostname rw - ext4 /dev/sda1 rw
8 1 8:1 /var/lib/docker/containers/${ID}/resolv.conf /var/lib/docker/overlay2/abc/merged/etc/resolv.conf rw - ext4 /dev/sda1 rw`;
  assert.equal(ownContainerId(hostSeeingContainers), undefined);
  assert.equal(ownContainerId(`2 1 8:1 /var/lib/docker/containers/${ID}/hostname.bak /etc/hostname rw - ext4 /dev/sda1 rw`), undefined);
});

test('hostPathMapper: the deepest mount holding the path decides; a path on no mount is refused clearly', () => {
  const map = hostPathMapper([
    { type: 'volume', source: '/var/lib/docker/volumes/hivemind-data/_data', destination: '/var/lib/hivemind' },
    { type: 'bind', source: '/srv/models', destination: '/var/lib/hivemind/cache/entries' },
    { type: 'bind', source: '/var/run/docker.sock', destination: '/var/run/docker.sock' },
  ]);
  assert.equal(map('/var/lib/hivemind/cache/entries/' + 'a'.repeat(64)), '/srv/models/' + 'a'.repeat(64));
  assert.equal(map('/var/lib/hivemind/worker/cache/entries/x'), '/var/lib/docker/volumes/hivemind-data/_data/worker/cache/entries/x');
  assert.equal(map('/var/lib/hivemind'), '/var/lib/docker/volumes/hivemind-data/_data');
  assert.throws(() => map('/var/lib/hivemindx/cache'), (err: unknown) => err instanceof HostPathError && /on no volume or bind mount, so Docker cannot mount it into a task/.test(err.message));
});

test('detectHostPaths: none on a host; the container\'s mounts in one; paths as they are when it cannot be inspected', async () => {
  const engine = (mounts: { type: string; source: string; destination: string }[] | Error) => ({
    inspectContainer: async (id: string) => {
      assert.equal(id, ID);
      if (mounts instanceof Error) throw mounts;
      return { id, name: 'w', labels: {}, state: { status: 'running', running: true, oomKilled: false, exitCode: 0, error: '' }, hostConfig: {}, mounts };
    },
  });
  assert.equal(await detectHostPaths(engine([]), silentLogger(), async () => 'no container here'), undefined);
  const map = await detectHostPaths(engine([{ type: 'volume', source: '/v/_data', destination: '/var/lib/hivemind' }]), silentLogger(), async () => MOUNTINFO);
  assert.equal(map?.('/var/lib/hivemind/worker/cache/entries/e'), '/v/_data/worker/cache/entries/e');
  assert.equal(await detectHostPaths(engine(new Error('permission denied')), silentLogger(), async () => MOUNTINFO), undefined);
});
