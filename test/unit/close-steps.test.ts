import { test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSteps } from '../../src/common/close-steps.js';

test('close steps run in order; a failing step is reported by name and the next ones still run', async () => {
  const ran: string[] = [];
  const failed: [string, string][] = [];
  const step = closeSteps((name, err) => failed.push([name, (err as Error).message]));
  await step('first', () => ran.push('first'));
  await step('throws', () => {
    throw new Error('boom');
  });
  await step('rejects', async () => {
    await Promise.resolve();
    throw new Error('later boom');
  });
  await step('last', async () => {
    await Promise.resolve();
    ran.push('last');
  });
  assert.deepEqual(ran, ['first', 'last']);
  assert.deepEqual(failed, [['throws', 'boom'], ['rejects', 'later boom']]);
});

test('a close step waits for its promise before the next one starts', async () => {
  const order: string[] = [];
  const step = closeSteps(() => assert.fail('no step fails'));
  await step('slow', () => new Promise<void>((resolve) => setTimeout(() => (order.push('slow'), resolve()), 20)));
  await step('next', () => order.push('next'));
  assert.deepEqual(order, ['slow', 'next']);
});
