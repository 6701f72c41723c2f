import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AbortedError, EngineUnreachableError } from '../../src/common/errors.js';
import { EngineRequestError, toEngineError } from '../../src/runtime/docker-engine.js';

test('engine errors: an answer keeps its status, a lost socket is EngineUnreachableError, an abort is AbortedError', () => {
  const answered = toEngineError(Object.assign(new Error('(HTTP code 404) no such container'), { statusCode: 404, json: { message: 'No such container: x' } }), 'inspect container x');
  assert.ok(answered instanceof EngineRequestError && answered.statusCode === 404);
  assert.equal(answered.message, 'inspect container x: No such container: x');

  for (const code of ['ECONNREFUSED', 'ECONNRESET', 'ENOENT', 'EPIPE']) {
    const lost = toEngineError(Object.assign(new Error(`connect ${code} /var/run/docker.sock`), { code }), 'wait for container x');
    assert.ok(lost instanceof EngineUnreachableError, code);
    assert.match(lost.message, /^wait for container x: the Docker daemon is unreachable \(connect/);
  }
  assert.ok(toEngineError(new Error('socket hang up'), 'logs of container x') instanceof EngineUnreachableError);

  const ctl = new AbortController();
  ctl.abort('cancelled');
  assert.ok(toEngineError(new Error('aborted'), 'pull', ctl.signal) instanceof AbortedError);
});
