// The worker's own log file (--log-file): JSON lines appended, rotated to <file>.1 at its cap at
// start and while running, and a path that cannot be written is a config error naming the fix.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openLogFile } from '../../src/common/log-file.js';
import { createLogger } from '../../src/common/logger.js';
import { ConfigError } from '../../src/common/errors.js';

function scratch(t: { after(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'hm-logfile-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const lines = (file: string) => readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as { msg: string; level: number });

test('log lines go to the file as JSON, appended to what is there, in a directory made for it', (t) => {
  const file = join(scratch(t), 'logs', 'worker.log');
  const a = openLogFile(file);
  createLogger({ destination: a.stream }).info('first');
  a.close();
  const b = openLogFile(file);
  createLogger({ level: 'debug', destination: b.stream }).debug({ token: 'hm1.secret' }, 'second');
  b.close();
  assert.deepEqual(lines(file).map((l) => l.msg), ['first', 'second']);
  assert.doesNotMatch(readFileSync(file, 'utf8'), /hm1\.secret/, 'redaction applies to the file too');
  assert.equal(statSync(file).mode & 0o777, 0o640);
});

test('a file over its cap is rotated to .1 at start and while running; one old file is kept', (t) => {
  const dir = scratch(t);
  const file = join(dir, 'worker.log');
  writeFileSync(file, `${JSON.stringify({ msg: 'from before' })}\n`.repeat(100));
  const log = openLogFile(file, { maxBytes: 1000, checkEveryMs: 3_600_000 });
  t.after(() => log.close());
  assert.deepEqual(lines(`${file}.1`).map((l) => l.msg).slice(0, 1), ['from before'], 'rotated at start');
  const logger = createLogger({ destination: log.stream });
  logger.info('small');
  assert.equal(log.rotateIfFull(), false, 'under the cap: nothing to do');
  for (let i = 0; i < 30; i++) logger.info(`line ${i}`);
  assert.equal(log.rotateIfFull(), true);
  logger.info('after the rotation');
  assert.deepEqual(lines(file).map((l) => l.msg), ['after the rotation']);
  const old = lines(`${file}.1`).map((l) => l.msg);
  assert.equal(old[0], 'small', 'the rotated file replaced the older one');
  assert.equal(old.at(-1), 'line 29');
});

test('a log file that cannot be written is a config error that says what to do', (t) => {
  const dir = scratch(t);
  writeFileSync(join(dir, 'plain'), 'x');
  assert.throws(() => openLogFile(join(dir, 'plain', 'worker.log')), (err: unknown) => {
    assert.ok(err instanceof ConfigError);
    assert.match(err.message, /^log file \S+plain\/worker\.log is not usable \(.+\): choose a writable path with --log-file \(or HIVEMIND_LOG_FILE\)$/);
    return true;
  });
});
