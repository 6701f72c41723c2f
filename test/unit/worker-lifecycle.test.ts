import { test } from 'node:test';
import assert from 'node:assert/strict';
import { silentLogger } from '../../src/common/logger.js';
import { IllegalTransitionError, LIFECYCLE_TRANSITIONS, Lifecycle, canTransition, type LifecycleChange } from '../../src/worker/lifecycle.js';

test('the normal life of a worker is a legal path and every step is emitted', () => {
  const lc = new Lifecycle(silentLogger());
  const seen: LifecycleChange[] = [];
  lc.on('change', (c) => seen.push(c));
  for (const s of ['registering', 'connected', 'reconnecting', 'registering', 'connected', 'draining', 'stopped'] as const) lc.transition(s, 'test');
  assert.equal(lc.state, 'stopped');
  assert.deepEqual(
    seen.map((c) => `${c.from}>${c.to}`),
    ['starting>registering', 'registering>connected', 'connected>reconnecting', 'reconnecting>registering', 'registering>connected', 'connected>draining', 'draining>stopped'],
  );
});

test('illegal transitions throw a typed error and leave the state unchanged', () => {
  const lc = new Lifecycle(silentLogger());
  assert.throws(() => lc.transition('connected', 'skip registration'), (err: unknown) => {
    assert.ok(err instanceof IllegalTransitionError);
    assert.equal(err.code, 'ILLEGAL_TRANSITION');
    assert.equal(err.from, 'starting');
    assert.equal(err.to, 'connected');
    assert.match(err.message, /cannot go from 'starting' to 'connected'/);
    return true;
  });
  assert.equal(lc.state, 'starting');
  lc.transition('draining', 'x');
  assert.throws(() => lc.transition('connected', 'x'), IllegalTransitionError);
  lc.transition('stopped', 'x');
  for (const s of Object.keys(LIFECYCLE_TRANSITIONS) as (keyof typeof LIFECYCLE_TRANSITIONS)[]) {
    assert.throws(() => lc.transition(s, 'after stop'), IllegalTransitionError, `stopped -> ${s} must be illegal`);
  }
});

test('draining never goes back to taking work', () => {
  assert.equal(canTransition('draining', 'connected'), false);
  assert.equal(canTransition('draining', 'reconnecting'), false);
  assert.equal(canTransition('draining', 'stopped'), true);
  assert.equal(canTransition('connected', 'connected'), false);
});
