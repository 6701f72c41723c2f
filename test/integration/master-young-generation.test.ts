// `hivemind master start` takes its young generation by replacing its process once at start
// (src/cli/master-young-generation.ts): run for real, the running master's command line (same pid)
// carries the flag; with the operator's own size in NODE_OPTIONS it runs as started.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CliDaemon, freePort, waitFor } from '../helpers/cli-process.js';
import { MASTER_SEMI_SPACE_MB, REEXEC_MARK } from '../../src/cli/master-young-generation.js';

async function runMaster(env: NodeJS.ProcessEnv): Promise<{ cmdline: string[]; environ: string[]; output: string }> {
  const home = mkdtempSync(join(tmpdir(), 'hivemind-younggen-'));
  const m = new CliDaemon(['master', 'start', '--listen', `127.0.0.1:${await freePort()}`, '--gateway-listen', 'off', '--metrics-listen', 'off'], { ...process.env, ...env, HIVEMIND_HOME: home });
  try {
    await waitFor('the master ready', () => m.output.includes('master ready') || undefined, 60_000);
    const read = (f: string) => readFileSync(`/proc/${m.pid}/${f}`, 'utf8').split('\0').filter(Boolean);
    return { cmdline: read('cmdline'), environ: read('environ'), output: m.output };
  } finally {
    const code = await m.stop();
    rmSync(home, { recursive: true, force: true });
    assert.equal(code, 0, `the replaced master stops cleanly on SIGTERM sent to the pid its parent knows:\n${m.output}`);
  }
}

test('master start runs with its semi-space size: the same pid, node started again with the flag', async () => {
  const { cmdline, environ, output } = await runMaster({});
  assert.ok(cmdline.includes(`--max-semi-space-size=${MASTER_SEMI_SPACE_MB}`), `${cmdline.join(' ')}\n${output}`);
  assert.deepEqual(cmdline.slice(-2), ['--metrics-listen', 'off'], 'the arguments are kept');
  assert.ok(environ.includes(`${REEXEC_MARK}=${MASTER_SEMI_SPACE_MB}`));
  assert.equal(output.match(/master ready/g)?.length, 1, 'one master started');
});

test('master start keeps the operator\'s semi-space size from NODE_OPTIONS and runs as started', async () => {
  const { cmdline, environ, output } = await runMaster({ NODE_OPTIONS: '--max-semi-space-size=16' });
  assert.ok(!cmdline.some((a) => a.startsWith('--max-semi-space-size')), `${cmdline.join(' ')}\n${output}`);
  assert.ok(!environ.some((e) => e.startsWith(`${REEXEC_MARK}=`)));
});
