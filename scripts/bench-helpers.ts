// What the benchmarks share: a median, a task submitted and waited for through the admin API, and
// a pool that keeps N calls in flight. Each benchmark prints ratios measured in its own run.
import { AdminClient } from '../src/client/admin-client.js';
import { TaskState, type TaskSpec } from '../src/protocol/gen/hivemind/v1/common.js';
import type { TaskInfo } from '../src/protocol/gen/hivemind/v1/admin.js';

export const BENCH_IMAGE = 'hivemind/busybox:1';
const TERMINAL = new Set([TaskState.TASK_STATE_SUCCEEDED, TaskState.TASK_STATE_FAILED, TaskState.TASK_STATE_CANCELLED]);

export const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
export const fmtMs = (ms: number) => `${ms.toFixed(0)} ms`;

export async function waitDone(client: AdminClient, taskId: string): Promise<TaskInfo> {
  for await (const t of client.watchTask(taskId)) if (TERMINAL.has(t.state)) return t;
  return client.getTask(taskId);
}

/** Submits a task of the bench image and waits for its end; a task that does not succeed fails the run. */
export async function benchTask(client: AdminClient, command: string[], extra: { memoryBytes?: number; spec?: Partial<TaskSpec> } = {}): Promise<{ ms: number; info: TaskInfo }> {
  const t0 = performance.now();
  const id = await client.submit({ image: BENCH_IMAGE, command, limits: { cpus: 0.25, memoryBytes: extra.memoryBytes ?? 32 * 1024 ** 2, pids: 64, gpus: 0, timeoutMs: 600_000 }, ...extra.spec });
  const info = await waitDone(client, id);
  if (info.state !== TaskState.TASK_STATE_SUCCEEDED) throw new Error(`task ${id} ended ${TaskState[info.state]}: ${info.outcome?.message}`);
  return { ms: performance.now() - t0, info };
}

export async function pool<T>(n: number, concurrency: number, fn: (i: number) => Promise<T>): Promise<T[]> {
  const out: T[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < n) {
        const i = next++;
        out[i] = await fn(i);
      }
    }),
  );
  return out;
}
