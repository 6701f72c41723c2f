import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { createLogger } from '../../src/common/logger.js';
import { ConfigError } from '../../src/common/errors.js';
import { UnboundedOutputVolumes } from '../../src/runtime/output-volume.js';
import { chooseOutputVolumes, type ProbedOutputVolumes } from '../../src/runtime/output-volume-policy.js';

/** Bounded volumes whose probe answers `reason` (undefined: this host can make them). */
function fakeBounded(reason?: string): ProbedOutputVolumes {
  return {
    probe: async () => (reason === undefined ? { ok: true } : { ok: false, reason }),
    create: async () => ({ driverOptions: { type: 'ext4', device: '/dev/loop0', o: 'nosuid,nodev' } }),
    release: async () => undefined,
    list: async () => [],
    attached: async () => true,
  };
}

/** A logger whose JSON lines are kept. */
function capture(): { logger: ReturnType<typeof createLogger>; lines: () => { level: number; msg: string }[] } {
  let text = '';
  const logger = createLogger({ level: 'trace', destination: new Writable({ write: (c, _e, cb) => ((text += String(c)), cb()) }) });
  return { logger, lines: () => text.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { level: number; msg: string }) };
}

const NO_LOOP = 'losetup failed: cannot find an unused loop device';

test('output volumes: a host that can bound /output gets the loop filesystems, whatever the policy, and nothing is logged', async () => {
  for (const policy of ['refuse', 'allowed', 'dev'] as const) {
    const bounded = fakeBounded();
    const log = capture();
    assert.equal(await chooseOutputVolumes(bounded, policy, log.logger), bounded, policy);
    assert.deepEqual(log.lines(), [], policy);
  }
});

test('output volumes: without loop devices a worker refuses to start, naming the fix and the opt-in', async () => {
  const log = capture();
  await assert.rejects(chooseOutputVolumes(fakeBounded(NO_LOOP), 'refuse', log.logger), (err: unknown) => {
    assert.ok(err instanceof ConfigError, String(err));
    assert.match(err.message, /^this host cannot bound what a task writes to \/output \(losetup failed: cannot find an unused loop device\)\. To fix: run the worker as root on Linux with loop devices/);
    assert.match(err.message, /--device \/dev\/loop-control/);
    assert.match(err.message, /--allow-unbounded-output \(env HIVEMIND_ALLOW_UNBOUNDED_OUTPUT=true, config "allowUnboundedOutput": true\)$/);
    return true;
  });
});

test('output volumes: without loop devices, the operator\'s opt-in (or dev) starts with plain volumes and a warning saying /output is checked only after exit', async () => {
  for (const policy of ['allowed', 'dev'] as const) {
    const log = capture();
    const v = await chooseOutputVolumes(fakeBounded(NO_LOOP), policy, log.logger);
    assert.ok(v instanceof UnboundedOutputVolumes, policy);
    const lines = log.lines();
    assert.equal(lines.length, 1, JSON.stringify(lines));
    assert.equal(lines[0]!.level, 40, 'warn level');
    assert.match(lines[0]!.msg, /cannot find an unused loop device.*checked against its cap only after the task exits, so a running task can fill this disk/);
    if (policy === 'allowed') assert.match(lines[0]!.msg, /as allowUnboundedOutput asks/);
  }
});
