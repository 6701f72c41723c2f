// The log follower against a fake engine that keeps Docker's log as a file would: frames in the
// order written, each with the time its stream was read, which across stdout and stderr need not
// be in order.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { silentLogger } from '../../src/common/logger.js';
import type { ContainerEngine, LogSink, LogsSince } from '../../src/runtime/container-engine.js';
import { LogFollower } from '../../src/runtime/log-follower.js';

type Frame = { stream: 'stdout' | 'stderr'; text: string; atNs: bigint };

/** followLogs delivers the first `live` frames of `file`; readLogsSince answers like Docker's `since`. */
function engine(file: Frame[], live: number): ContainerEngine {
  return {
    followLogs: async (_id: string, sink: LogSink) => {
      for (const f of file.slice(0, live)) sink[f.stream](Buffer.from(f.text), f.atNs);
    },
    readLogsSince: async (_id: string, sinceNs: bigint): Promise<LogsSince> => ({
      messages: file.filter((f) => f.atNs > sinceNs).map((f) => ({ stream: f.stream, data: Buffer.from(f.text), atNs: f.atNs })),
      skippedBytes: 0,
    }),
  } as unknown as ContainerEngine;
}

async function follow(file: Frame[], live: number): Promise<string[]> {
  const got: string[] = [];
  await new LogFollower(engine(file, live), 'c1', (stream, data) => got.push(`${stream}:${data.toString()}`), silentLogger()).finish();
  return got;
}

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
  const live: Frame[] = [file[0]!, file[1]!, file[3]!];
  const e = engine(file, 0);
  (e as { followLogs: ContainerEngine['followLogs'] }).followLogs = async (_id: string, sink: LogSink) => {
    for (const f of live) sink[f.stream](Buffer.from(f.text), f.atNs);
  };
  const got: string[] = [];
  await new LogFollower(e, 'c1', (stream, data) => got.push(`${stream}:${data.toString()}`), silentLogger()).finish();
  assert.deepEqual(got, ['stderr:z', 'stdout:a', 'stdout:c', 'stderr:b', 'stderr:d']);
});
