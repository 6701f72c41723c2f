// Pure decisions of the worker's services side: when a replica status goes to the master, and
// where the gateway pipe listens and whom it takes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { REPLICA_STATUS_INTERVAL_MS, replicaSendDelay } from '../../src/worker/replica-status-throttle.js';
import { gatewayPipeEndpoint } from '../../src/worker/worker-composition.js';

test('replica status: the first and every health or restart change go at once, others wait out the interval', () => {
  const last = { atMs: 10_000, healthy: true, restarts: 2 };
  assert.equal(replicaSendDelay(undefined, { healthy: false, restarts: 0 }, 10_000), 0, 'the first');
  assert.equal(replicaSendDelay(last, { healthy: false, restarts: 2 }, 10_100), 0, 'health changed');
  assert.equal(replicaSendDelay(last, { healthy: true, restarts: 3 }, 10_100), 0, 'restarted');
  assert.equal(replicaSendDelay(last, { healthy: true, restarts: 2 }, 10_100), REPLICA_STATUS_INTERVAL_MS - 100);
  assert.equal(replicaSendDelay(last, { healthy: true, restarts: 2 }, 10_000 + REPLICA_STATUS_INTERVAL_MS), 0, 'the interval is over');
  assert.equal(replicaSendDelay(last, { healthy: true, restarts: 2 }, 99_999), 0);
});

test('gateway pipe endpoint: the tunnel address and only the master on a tunnel; loopback without one', () => {
  assert.deepEqual(gatewayPipeEndpoint({ address: '10.8.0.7/24', masterGrpcAddress: '10.8.0.1:7070' }), { host: '10.8.0.7', allowedRemote: '10.8.0.1' });
  assert.deepEqual(gatewayPipeEndpoint({ address: 'fd00::7/64', masterGrpcAddress: '[fd00::1]:7070' }), { host: 'fd00::7', allowedRemote: 'fd00::1' });
  assert.deepEqual(gatewayPipeEndpoint(undefined), { host: '127.0.0.1', allowedRemote: undefined });
});
