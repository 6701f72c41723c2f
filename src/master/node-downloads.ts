// What a node may download, checked before a byte is sent: its task's input, and the data sets
// its task mounts from the master. Each check names what is wrong; the node service streams the
// bytes (NodeService.serveChunks).
import type { Readable } from 'node:stream';
import { CHUNK_SIZE } from '../protocol/transport.js';
import { parseDigest } from '../protocol/data-rules.js';
import type { DownloadDataRequest, DownloadInputRequest } from '../protocol/gen/hivemind/v1/node.js';
import type { BlobStore } from './blob-store.js';
import type { DataFiles } from './data-files.js';
import { InvalidArgumentError, PreconditionError } from './master-errors.js';
import type { TaskRow } from './master-store.js';
import type { TaskManager } from './task-manager.js';

/** A file to stream from `offset` to `size`. */
export interface DownloadSource {
  size: number;
  offset: number;
  read(): Readable;
}

export function inputSource(tasks: TaskManager, blobs: BlobStore, nodeId: string, req: DownloadInputRequest): DownloadSource {
  const { taskId, attempt, offset } = req;
  const task = tasks.requireCurrent(taskId, attempt, nodeId);
  if (task.inputSize === 0) throw new PreconditionError(`task ${taskId} has no input`);
  if (offset > task.inputSize) throw new InvalidArgumentError(`offset ${offset} is past the end of the ${task.inputSize}-byte input of task ${taskId}`);
  return { size: task.inputSize, offset, read: () => blobs.readInput(taskId, offset, CHUNK_SIZE) };
}

/**
 * A data set's bytes, only for the current, unfinished attempt of a task assigned to the asking
 * node and only a data set that task mounts from the master: a node cannot read other data through it.
 */
export function dataSource(tasks: TaskManager, files: DataFiles, nodeId: string, req: DownloadDataRequest, unfinished: (task: TaskRow) => void): DownloadSource {
  const { taskId, attempt, sha256, offset } = req;
  const task = tasks.requireCurrent(taskId, attempt, nodeId);
  unfinished(task);
  const hex = parseDigest(sha256, 'sha256');
  const mount = task.spec.data.find((m) => m.sha256 === sha256 && !m.url);
  if (!mount) throw new InvalidArgumentError(`task ${taskId} mounts no data set ${sha256} from the master`);
  if (offset > mount.size) throw new InvalidArgumentError(`offset ${offset} is past the end of the ${mount.size}-byte data set ${sha256}`);
  return { size: mount.size, offset, read: () => files.read(hex, offset, CHUNK_SIZE) };
}

