// A task's log for an admin reader (StreamLogs): the stored log, then, when following, the live
// chunks until the task ends. A reader that falls behind holds a bounded backlog: past
// FOLLOW_QUEUE_BYTES live chunks are skipped and counted, and the reader is told how many bytes it
// missed, so a stalled follower of a flooding task costs the master at most that much memory.
import { LogStream, type LogChunk } from '../protocol/gen/hivemind/v1/common.js';
import { CHUNK_SIZE } from '../protocol/transport.js';
import type { BlobStore } from './blob-store.js';
import type { MasterEvents } from './master-events.js';
import { isTerminal, type TaskRow } from './master-store.js';

/** Live log bytes a following reader that is behind may hold; past it they are skipped and counted. */
export const FOLLOW_QUEUE_BYTES = 1024 * 1024;

/** Live chunks of one task waiting for a slow reader, at most `maxBytes` of them. */
export class LiveLogQueue {
  /** Chunks in order, and where chunks were skipped, the count of bytes skipped there. */
  private readonly entries: (LogChunk | { skipped: number })[] = [];
  private bytes = 0;

  constructor(
    private readonly taskId: string,
    private readonly attempt: number,
    private readonly maxBytes = FOLLOW_QUEUE_BYTES,
  ) {}

  push(c: LogChunk): void {
    if (this.bytes + c.data.length > this.maxBytes) {
      const last = this.entries[this.entries.length - 1];
      if (last && 'skipped' in last) last.skipped += c.data.length;
      else this.entries.push({ skipped: c.data.length });
      return;
    }
    this.entries.push(c);
    this.bytes += c.data.length;
  }

  get isEmpty(): boolean {
    return this.entries.length === 0;
  }

  /** The next chunk to send; a run of skipped chunks becomes one line saying how many bytes. */
  shift(): LogChunk | undefined {
    const e = this.entries.shift();
    if (!e) return undefined;
    if ('skipped' in e) {
      const note = `\n[hivemind: ${e.skipped} bytes of live output skipped here: this reader fell behind; \`hivemind logs ${this.taskId}\` shows the stored log]\n`;
      return { taskId: this.taskId, attempt: this.attempt, stream: LogStream.LOG_STREAM_STDERR, atMs: Date.now(), data: Buffer.from(note) };
    }
    this.bytes -= e.data.length;
    return e;
  }
}

export interface LogStreamDeps {
  blobs: BlobStore;
  events: MasterEvents;
  /** Whether the task has ended, read under the log lock. */
  isFinished: (taskId: string) => boolean;
}

/** Sends `task`'s stored log, then (with `follow`) its live chunks until it ends or `signal` aborts. */
export async function streamTaskLog(d: LogStreamDeps, task: TaskRow, follow: boolean, send: (c: LogChunk) => Promise<void>, signal: AbortSignal): Promise<void> {
  const { blobs, events } = d;
  const id = task.id;
  const live = new LiveLogQueue(id, task.attempt);
  let finished = !follow;
  let wake: (() => void) | undefined;
  const poke = () => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  const onLog = (c: LogChunk) => {
    if (c.taskId !== id) return;
    live.push(c);
    poke();
  };
  const onTask = (t: TaskRow) => {
    if (t.id === id && isTerminal(t.state)) {
      finished = true;
      poke();
    }
  };
  const drain = async () => {
    for (let c = live.shift(); c; c = live.shift()) {
      if (signal.aborted) return;
      await send(c);
    }
  };
  signal.addEventListener('abort', poke, { once: true });
  try {
    // Under the log lock every earlier append is on disk and every later one emits after we
    // subscribe: the snapshot and the live chunks neither overlap nor leave a gap.
    const snap = await blobs.withLogLock(id, async () => {
      if (follow) {
        events.on('log', onLog);
        events.on('task', onTask);
        if (d.isFinished(id)) finished = true;
      }
      return blobs.snapshotLog(id, CHUNK_SIZE);
    });
    if (snap.stream) {
      for await (const data of snap.stream.iterator({ destroyOnReturn: true })) {
        if (signal.aborted) return;
        await send({ taskId: id, attempt: task.attempt, stream: LogStream.LOG_STREAM_UNSPECIFIED, data: data as Buffer, atMs: 0 });
      }
    }
    for (;;) {
      await drain();
      if (finished || signal.aborted) break;
      await new Promise<void>((r) => (wake = r));
    }
    if (follow && !signal.aborted) {
      // Appends queued when the task finished still belong to it.
      await blobs.withLogLock(id, async () => undefined);
      await drain();
    }
  } finally {
    events.off('log', onLog);
    events.off('task', onTask);
    signal.removeEventListener('abort', poke);
  }
}
