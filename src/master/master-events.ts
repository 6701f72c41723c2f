// The master's internal event map: WatchTask and StreamLogs followers subscribe here instead of
// polling the store.
import { EventEmitter } from 'node:events';
import type { LogChunk } from '../protocol/gen/hivemind/v1/common.js';
import type { TaskRow } from './master-store.js';

export interface MasterEventMap {
  /** A task row changed (already committed). */
  task: [task: TaskRow];
  /** Log bytes were appended to a task's stored log (already on disk). */
  log: [chunk: LogChunk];
}

export class MasterEvents extends EventEmitter<MasterEventMap> {
  constructor() {
    super();
    // Every follower adds listeners; the count scales with open CLI sessions, not a leak.
    this.setMaxListeners(0);
  }
}
