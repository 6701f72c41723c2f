// Data sets in tasks on a ProcessCluster: put a data set at the master, run a task mounting it,
// read the worker's log of downloads. Shared by the end-to-end data and data-fault tests.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { AdminClient } from '../../src/client/admin-client.js';
import { DataKind, type DataMount } from '../../src/protocol/gen/hivemind/v1/common.js';
import type { ProcessCluster } from './process-cluster.js';

export const DATA_IMAGE = 'hivemind/busybox:1';
/** `--json` prints states as words (docs/cli-json.md). */
export const SUCCEEDED = 'succeeded';
/** The states a task ends in. */
export const TERMINAL_STATES: readonly string[] = ['succeeded', 'failed', 'cancelled'];

export interface DataTaskJson {
  state: string;
  attempt: number;
  nodeId: string;
  outcome?: { message: string };
  events: { state: string; message: string; attempt: number; nodeId: string; atMs: number }[];
}

export interface PutDataSet {
  sha256: string;
  size: number;
  kind: DataKind;
}

/** Puts `path` at the master; its digest and size as `data put` reports them. */
export async function putData(cluster: ProcessCluster, path: string): Promise<PutDataSet> {
  const r = await cluster.cli(['data', 'put', path, '--json'], 300_000);
  assert.equal(r.code, 0, r.stderr);
  const info = JSON.parse(r.stdout) as { sha256: string; size: number; kind: string };
  return { sha256: info.sha256, size: info.size, kind: info.kind === 'dir' ? DataKind.DATA_KIND_DIR : DataKind.DATA_KIND_FILE };
}

/** The mount of a data set put at the master (not an external URL). */
export const mountOf = (d: PutDataSet, path: string): DataMount => ({ sha256: d.sha256, path, size: d.size, kind: d.kind, url: '' });

export async function submitWithData(cluster: ProcessCluster, data: DataMount[], script: string): Promise<string> {
  const admin = AdminClient.connect(cluster.address, cluster.adminToken);
  try {
    return await admin.submit({ image: DATA_IMAGE, command: ['sh', '-c', script], data, limits: { cpus: 0, memoryBytes: 0, pids: 0, gpus: 0, timeoutMs: 120_000 } });
  } finally {
    admin.close();
  }
}

export const taskJson = async (cluster: ProcessCluster, id: string): Promise<DataTaskJson> =>
  JSON.parse((await cluster.cli(['get', id, '--json'])).stdout) as DataTaskJson;

/** Waits for the task to end and asserts it succeeded; its state and extracted /output. */
export async function finishTask(cluster: ProcessCluster, id: string): Promise<{ info: DataTaskJson; dir: string }> {
  await cluster.cli(['wait', id], 300_000);
  const info = await taskJson(cluster, id);
  assert.equal(info.state, SUCCEEDED, `${JSON.stringify(info)}\nworker:\n${cluster.worker?.output.slice(-4000)}`);
  const dir = join(cluster.home, `out-${id}`);
  const r = await cluster.cli(['result', id, '-o', `${dir}.tar.gz`, '--extract', dir]);
  assert.equal(r.code, 0, r.stderr);
  return { info, dir };
}

/** The downloads of the data set `hex` a worker logged (one line per verified download). */
export const downloadsLogged = (output: string | undefined, hex: string): { resumedFrom: number }[] =>
  (output ?? '')
    .split('\n')
    .filter((l) => l.includes('"data cache: data set downloaded and verified"') && l.includes(hex))
    .map((l) => JSON.parse(l) as { resumedFrom: number });

/** The entries `hivemind worker cache ls` lists for the worker data dir `dataDir`. */
export async function cacheEntries(cluster: ProcessCluster, dataDir: string): Promise<{ sha256: string; uses: number; inUse: number; state: string }[]> {
  const ls = await cluster.cli(['worker', 'cache', 'ls', '--json', '--data-dir', dataDir]);
  assert.equal(ls.code, 0, ls.stderr);
  return JSON.parse(ls.stdout) as { sha256: string; uses: number; inUse: number; state: string }[];
}
