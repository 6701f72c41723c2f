// The master's young generation (src/cli/master-young-generation.ts): when `master start` replaces
// itself, with what command, and when it runs as started.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MASTER_SEMI_SPACE_MB, REEXEC_MARK, youngGenerationReexec, type ProcessView } from '../../src/cli/master-young-generation.js';

const FLAG = `--max-semi-space-size=${MASTER_SEMI_SPACE_MB}`;

function proc(over: Partial<ProcessView> = {}): ProcessView {
  return {
    execPath: '/usr/bin/node',
    execArgv: ['--enable-source-maps'],
    argv: ['/usr/bin/node', '/opt/hivemind/dist/src/cli/hivemind.js', 'master', 'start', '--listen', '0.0.0.0:50051'],
    env: { PATH: '/usr/bin', HOME: '/root', UNSET: undefined },
    isSea: false,
    canExecve: true,
    ...over,
  };
}

test('under node: the same script and arguments, the flag first among node\'s own options, the mark in the environment', () => {
  const r = youngGenerationReexec(proc());
  assert.ok(r);
  assert.equal(r.file, '/usr/bin/node');
  assert.deepEqual(r.args, ['/usr/bin/node', FLAG, '--enable-source-maps', '/opt/hivemind/dist/src/cli/hivemind.js', 'master', 'start', '--listen', '0.0.0.0:50051']);
  assert.deepEqual(r.env, { PATH: '/usr/bin', HOME: '/root', [REEXEC_MARK]: String(MASTER_SEMI_SPACE_MB) }, 'unset variables are dropped, nothing else changes');
});

test('a single executable: the flag goes in NODE_OPTIONS (added to the operator\'s), the arguments after the executable\'s own second argv', () => {
  const sea = proc({ execPath: '/usr/local/bin/hivemind', execArgv: [], argv: ['/usr/local/bin/hivemind', '/usr/local/bin/hivemind', 'master', 'start'], isSea: true });
  assert.deepEqual(youngGenerationReexec(sea), {
    file: '/usr/local/bin/hivemind',
    args: ['/usr/local/bin/hivemind', 'master', 'start'],
    env: { PATH: '/usr/bin', HOME: '/root', NODE_OPTIONS: FLAG, [REEXEC_MARK]: String(MASTER_SEMI_SPACE_MB) },
  });
  const withOptions = youngGenerationReexec({ ...sea, env: { NODE_OPTIONS: '--max-old-space-size=2048' } });
  assert.equal(withOptions?.env.NODE_OPTIONS, `--max-old-space-size=2048 ${FLAG}`);
});

test('runs as started: once replaced, where it cannot be replaced, and when the operator chose a size', () => {
  assert.equal(youngGenerationReexec(proc({ env: { [REEXEC_MARK]: '8' } })), undefined, 'never a second time, even if the flag did not take');
  assert.equal(youngGenerationReexec(proc({ canExecve: false })), undefined, 'Windows, or a Node without process.execve');
  assert.equal(youngGenerationReexec(proc({ execArgv: ['--max-semi-space-size=32'] })), undefined);
  assert.equal(youngGenerationReexec(proc({ execArgv: ['--max_semi_space_size', '32'] })), undefined, 'V8 takes underscores and a separate value too');
  assert.equal(youngGenerationReexec(proc({ env: { NODE_OPTIONS: '--trace-gc --max-semi-space-size=16' } })), undefined);
  assert.ok(youngGenerationReexec(proc({ execArgv: ['--max-semi-space-sizes=3'] })), 'another flag that starts alike is not the size');
});

test('another size can be asked for', () => {
  assert.equal(youngGenerationReexec(proc(), 16)?.args[1], '--max-semi-space-size=16');
});
