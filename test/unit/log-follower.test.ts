// The log follower against a fake engine that keeps Docker's log as a file would: frames in the
// order written, each with the time its stream was read, which across stdout and stderr need not
// be in order.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { silentLogger } from '../../src/common/logger.js';
import type { ContainerEngine, LogSink, LogsSince } from '../../src/runtime/container-engine.js';
import { LogFollower } from '../../src/runtime/log-follower.js';

type Frame = { stream: 'stdout' | 'stderr'; text: string; atNs: bigint };

/** followLogs delivers the frames of `file` at `liveIndexes`; readLogsSince answers like Docker's `since`. */
function engine(file: Frame[], liveIndexes: number[]): ContainerEngine {
  return {
    followLogs: async (_id: string, sink: LogSink) => {
      for (const i of liveIndexes) sink[file[i]!.stream](Buffer.from(file[i]!.text), file[i]!.atNs);
    },
    readLogsSince: async (_id: string, sinceNs: bigint): Promise<LogsSince> => ({
      messages: file.filter((f) => f.atNs >= sinceNs).map((f) => ({ stream: f.stream, data: Buffer.from(f.text), atNs: f.atNs })),
      skippedBytes: 0,
    }),
  } as unknown as ContainerEngine;
}

/** The follower over `file` when the live stream delivered only the frames at `liveIndexes`: what it emitted, and the log it returned. */
async function followWithGaps(file: Frame[], liveIndexes: number[]): Promise<{ got: string[]; inOrder: string[] | undefined }> {
  const got: string[] = [];
  const end = await new LogFollower(engine(file, liveIndexes), 'c1', (stream, data) => got.push(`${stream}:${data.toString()}`), silentLogger()).finish();
  return { got, inOrder: end?.map((m) => `${m.stream}:${m.data.toString()}`) };
}

/** What the follower emitted when the live stream delivered the first `live` frames of `file`. */
async function follow(file: Frame[], live: number): Promise<string[]> {
  return (await followWithGaps(file, file.slice(0, live).map((_, i) => i))).got;
}

const SECOND = 1_000_000_000n;
/** Podman's compat API stamps frames to the second: `n` lines all of one time. */
const sameSecond = (n: number, stream: 'stdout' | 'stderr' = 'stdout'): Frame[] => Array.from({ length: n }, (_, i) => ({ stream, text: `line${i}\n`, atNs: 1_800_000_000n * SECOND }));

test('a stderr frame stamped before stdout frames it follows: the read-back at the end sends nothing twice', async () => {
  const file: Frame[] = [
    { stream: 'stdout', text: 'a', atNs: 1n },
    { stream: 'stdout', text: 'c', atNs: 3n },
    { stream: 'stderr', text: 'b', atNs: 2n },
  ];
  assert.deepEqual(await follow(file, 3), ['stdout:a', 'stdout:c', 'stderr:b']);
});

test('output the live stream missed is read back at the end, once', async () => {
  const file: Frame[] = [
    { stream: 'stdout', text: 'a', atNs: 1n },
    { stream: 'stderr', text: 'b', atNs: 2n },
    { stream: 'stdout', text: 'c', atNs: 3n },
  ];
  assert.deepEqual(await follow(file, 1), ['stdout:a', 'stderr:b', 'stdout:c']);
});

test('a stderr frame stamped before the last stdout frame but missed live is read back, and nothing twice', async () => {
  const file: Frame[] = [
    { stream: 'stderr', text: 'z', atNs: 1n },
    { stream: 'stdout', text: 'a', atNs: 2n },
    { stream: 'stderr', text: 'b', atNs: 3n },
    { stream: 'stdout', text: 'c', atNs: 4n },
    { stream: 'stderr', text: 'd', atNs: 5n },
  ];
  // The live stream delivered z, a and c, then stopped: b (stamped before c) and d were missed.
  assert.deepEqual((await followWithGaps(file, [0, 1, 3])).got, ['stderr:z', 'stdout:a', 'stdout:c', 'stderr:b', 'stderr:d']);
});

test('frames stamped to the second (Podman): the ones after the last live frame of that second are read back, once', async () => {
  const file = sameSecond(10);
  const { got, inOrder } = await followWithGaps(file, [0, 1, 2, 3]);
  assert.deepEqual(got, file.map((f) => `stdout:${f.text}`));
  assert.equal(inOrder, undefined, 'only the end was missed: what went out was in order');
});

test('a live stream that dropped frames in the middle (Podman under load): the end is passed on, the middle is not (the stored log keeps its order), and the log comes back in order for the tail', async () => {
  const file = [...sameSecond(6), ...sameSecond(4).map((f, i) => ({ ...f, text: `late${i}\n`, atNs: f.atNs + SECOND }))];
  const { got, inOrder } = await followWithGaps(file, [0, 2, 3, 6, 8]);
  const all = file.map((f) => `stdout:${f.text}`);
  assert.deepEqual(got, [0, 2, 3, 6, 8, 9].map((i) => all[i]), 'what came live, then the frame after the last live one');
  assert.deepEqual(inOrder, all);
});

test('repeated identical lines: as many copies as the log holds after the last live one, no more', async () => {
  const file = sameSecond(5).map((f) => ({ ...f, text: 'same\n' }));
  // The two live ones match the first two copies: three are left, all after them.
  const { got, inOrder } = await followWithGaps(file, [1, 3]);
  assert.equal(got.length, 5);
  assert.equal(inOrder, undefined);
});

test('a stream with nothing live is read back whole from the other stream\'s oldest frame; nothing live at all reads the whole log', async () => {
  const file: Frame[] = [
    { stream: 'stdout', text: 'a', atNs: 1n },
    { stream: 'stderr', text: 'b', atNs: 2n },
    { stream: 'stdout', text: 'c', atNs: 3n },
    { stream: 'stderr', text: 'd', atNs: 4n },
  ];
  assert.deepEqual((await followWithGaps(file, [0, 2])).got, ['stdout:a', 'stdout:c', 'stderr:b', 'stderr:d']);
  assert.deepEqual((await followWithGaps(file, [])).got, ['stdout:a', 'stderr:b', 'stdout:c', 'stderr:d']);
});
