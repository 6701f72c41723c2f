// `hivemind master start` (like dev and worker start, which share cli-logger.ts) logs readable lines
// on a terminal and JSON lines in a pipe, for tools. Run for real: once under a pseudo-terminal
// (util-linux `script`), once with stderr a pipe.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLI, CliDaemon, freePort, waitFor } from '../helpers/cli-process.js';
import { requireScript } from '../helpers/requirements.js';

async function masterArgs(): Promise<string[]> {
  return ['master', 'start', '--listen', `127.0.0.1:${await freePort()}`, '--gateway-listen', 'off', '--metrics-listen', 'off'];
}

test('master start logs JSON lines when stderr is a pipe', async () => {
  const home = mkdtempSync(join(tmpdir(), 'hivemind-logfmt-'));
  const m = new CliDaemon(await masterArgs(), { ...process.env, HIVEMIND_HOME: home, HIVEMIND_LOG_PRETTY: '' });
  try {
    // Up to the whole line that says it listens (the store and the operations listener log before it).
    const head = await waitFor('the master listening', () => {
      const at = m.output.indexOf('master listening');
      const end = at < 0 ? -1 : m.output.indexOf('\n', at);
      return end < 0 ? undefined : m.output.slice(0, end);
    }, 30_000);
    // Every line is one JSON object.
    const lines = head.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as { msg: string; level: number });
    const listening = lines.find((l) => l.msg === 'master listening');
    assert.ok(listening, m.output);
    assert.equal(listening.level, 30);
  } finally {
    await m.stop();
    rmSync(home, { recursive: true, force: true });
  }
});

test('master start logs readable, coloured lines on a terminal', async (t) => {
  if (!requireScript(t)) return;
  const home = mkdtempSync(join(tmpdir(), 'hivemind-logfmt-'));
  const command = [process.execPath, CLI, ...(await masterArgs())].map((a) => `'${a}'`).join(' ');
  // -e: script's own exit code is the command's; -f: flush as it comes; the pty's output on stdout.
  const child = spawn('script', ['-qfec', command, '/dev/null'], { env: { ...process.env, HIVEMIND_HOME: home }, stdio: ['pipe', 'pipe', 'pipe'], detached: true });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise((resolve) => child.on('exit', resolve));
  try {
    await waitFor('the master listening', () => out.includes('master listening') || undefined, 30_000);
    const first = out.split('\n').find((l) => l.includes('master listening'))!;
    assert.match(first, /^\[\d\d:\d\d:\d\d\.\d{3}\] \u001b\[32mINFO\u001b\[39m: \u001b\[36mmaster listening/, JSON.stringify(first));
    assert.doesNotMatch(out, /"level":/, 'no JSON line on a terminal');
  } finally {
    // The whole group: script and the master it runs on the pty.
    process.kill(-child.pid!, 'SIGTERM');
    await exited;
    rmSync(home, { recursive: true, force: true });
  }
});
