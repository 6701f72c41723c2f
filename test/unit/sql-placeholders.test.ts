// The PostgreSQL driver's placeholder rewriting (pure): `?` in order, `@name` by name (repeated
// names share one $n), nothing inside quotes, and the values bound in $n order.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { bindValues, compilePlaceholders } from '../../src/master/sql/placeholders.js';

test('? become $1..$n in order; quoted text is left alone', () => {
  const c = compilePlaceholders(`SELECT * FROM t WHERE a = ? AND b = 'x?y' AND "c?" = ? AND d = '@e'`);
  assert.equal(c.text, `SELECT * FROM t WHERE a = $1 AND b = 'x?y' AND "c?" = $2 AND d = '@e'`);
  assert.equal(c.names, undefined);
  assert.deepEqual(bindValues(c, [1, 'two']), [1, 'two']);
});

test('@name binds from one object, a repeated name is one parameter; undefined is NULL, booleans 0/1', () => {
  const c = compilePlaceholders('UPDATE t SET a = @a, b = @b WHERE id = @id OR a = @a');
  assert.equal(c.text, 'UPDATE t SET a = $1, b = $2 WHERE id = $3 OR a = $1');
  assert.deepEqual(bindValues(c, [{ id: 'x', a: true, b: undefined, extra: 9 }]), [1, null, 'x']);
});

test('casts (::) and @ not followed by a name are not placeholders; mixing both kinds is refused', () => {
  assert.equal(compilePlaceholders('SELECT ?::json, a @> b').text, 'SELECT $1::json, a @> b');
  assert.throws(() => compilePlaceholders('SELECT ? + @a'), /mixes/);
});
