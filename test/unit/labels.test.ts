import { test } from 'node:test';
import assert from 'node:assert/strict';
import { matchesLabelFilters, nodeLabelFilters, taskLabels } from '../../src/runtime/labels.js';

test('label filters all hold, as Docker applies them (Podman ORs them on volumes)', () => {
  const mine = taskLabels('n1', 't1', 1);
  assert.equal(matchesLabelFilters(mine, nodeLabelFilters('n1')), true);
  assert.equal(matchesLabelFilters(mine, nodeLabelFilters('n1', 't1')), true);
  assert.equal(matchesLabelFilters(mine, nodeLabelFilters('n1', 't2')), false, 'another task of this node');
  assert.equal(matchesLabelFilters({ 'io.hivemind.managed': 'true', 'io.hivemind.node-id': 'someone-else' }, nodeLabelFilters('n1')), false, 'one filter holding is not enough');
  assert.equal(matchesLabelFilters(mine, ['io.hivemind.task-id']), true, 'a key alone asks only that it exists');
  assert.equal(matchesLabelFilters({}, ['io.hivemind.task-id']), false);
  assert.equal(matchesLabelFilters({ a: 'x=y' }, ['a=x=y']), true, 'the value may hold "="');
});
