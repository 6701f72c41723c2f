// The bounded backlog of a following log reader: chunks kept up to the cap, the rest counted and
// said once, in order, where they were skipped.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LiveLogQueue } from '../../src/master/log-stream.js';
import { LogStream, type LogChunk } from '../../src/protocol/gen/hivemind/v1/common.js';

const chunk = (text: string, attempt = 2): LogChunk => ({ taskId: 't1', attempt, stream: LogStream.LOG_STREAM_STDOUT, atMs: 1, data: Buffer.from(text) });

test('a live log queue keeps chunks up to its cap, and says where it skipped how many bytes', () => {
  const q = new LiveLogQueue('t1', 2, 10);
  assert.equal(q.isEmpty, true);
  q.push(chunk('aaaa'));
  q.push(chunk('bbbb'));
  q.push(chunk('cccc')); // 12 > 10: skipped
  q.push(chunk('dd'));   // 10: kept
  q.push(chunk('e'));    // skipped
  const out: string[] = [];
  for (let c = q.shift(); c; c = q.shift()) out.push(c.data.toString());
  const note = (n: number) => `\n[hivemind: ${n} bytes of live output skipped here: this reader fell behind; \`hivemind logs t1\` shows the stored log]\n`;
  assert.deepEqual(out, ['aaaa', 'bbbb', note(4), 'dd', note(1)], 'each skipped run is said where it happened');
  assert.equal(q.isEmpty, true);
  // Room again once the reader caught up.
  q.push(chunk('ffffffffff'));
  assert.equal(q.shift()!.data.toString(), 'ffffffffff');
});
