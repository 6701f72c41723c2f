// scripts/register-runsc.mjs, the daemon.json merge setup.sh runs: idempotent, keeps other keys,
// refuses a file it cannot read as an object rather than overwrite it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

// dist/test/unit/ → the repository root
const SCRIPT = join(import.meta.dirname, '..', '..', '..', 'scripts', 'register-runsc.mjs');
const register = (file: string) => execFileSync(process.execPath, [SCRIPT, file, '/usr/bin/runsc'], { stdio: 'pipe' }).toString().trim();

test('register-runsc: adds runsc with --network=none, keeps every other key, then changes nothing', () => {
  const dir = mkdtempSync(join(tmpdir(), 'hm-daemon-json-'));
  try {
    const file = join(dir, 'daemon.json');
    writeFileSync(file, JSON.stringify({ 'log-level': 'warn', runtimes: { nvidia: { path: 'nvidia-container-runtime' } } }));
    assert.equal(register(file), 'changed');
    const once = readFileSync(file, 'utf8');
    assert.deepEqual(JSON.parse(once), {
      'log-level': 'warn',
      runtimes: { nvidia: { path: 'nvidia-container-runtime' }, runsc: { path: '/usr/bin/runsc', runtimeArgs: ['--network=none'] } },
    });
    assert.equal(register(file), 'unchanged');
    assert.equal(readFileSync(file, 'utf8'), once);
    const fresh = join(dir, 'none.json');
    assert.equal(register(fresh), 'changed', 'a missing file is created');
    assert.deepEqual(JSON.parse(readFileSync(fresh, 'utf8')), { runtimes: { runsc: { path: '/usr/bin/runsc', runtimeArgs: ['--network=none'] } } });
    writeFileSync(file, '{"broken": ');
    assert.throws(() => register(file), (err: { stderr?: Buffer }) => /is not valid JSON.*fix it by hand/.test(String(err.stderr)));
    assert.equal(readFileSync(file, 'utf8'), '{"broken": ', 'a file it cannot read is left alone');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
