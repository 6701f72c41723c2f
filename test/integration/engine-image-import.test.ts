// The offline dev image's import (ensureDevImage: a rootfs tar through the engine's image import)
// on every engine a node may run on: the image comes out under the asked tag, and is removed again.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { engineTargets, requireEngine } from '../helpers/engines.js';
import { engineOf } from '../helpers/runner-task.js';
import { ensureDevImage } from '../../src/runtime/dev-image.js';
import { silentLogger } from '../../src/common/logger.js';

for (const target of engineTargets()) {
  test(`${target.name}: an imported image carries the asked tag (Podman took only the repo and made it :latest)`, async (t) => {
    if (!requireEngine(t, target.name)) return;
    const engine = engineOf(target);
    const repo = 'hivemind/busybox-import-it';
    const tag = `t${process.pid}`;
    try {
      assert.equal(await ensureDevImage(engine, silentLogger(), { repo, tag }), `${repo}:${tag}`);
      const info = await engine.inspectImage(`${repo}:${tag}`);
      // Podman names it in full (docker.io/...); Docker as given.
      assert.ok(info?.repoTags.some((r) => r.endsWith(`${repo}:${tag}`)), `tags: ${info?.repoTags.join(', ')}`);
      assert.equal(await engine.imageExists(`${repo}:latest`), false, 'no :latest made instead');
    } finally {
      await engine.removeImage(`${repo}:${tag}`).catch(() => undefined);
    }
  });
}
