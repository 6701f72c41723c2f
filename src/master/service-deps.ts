// What every gRPC service of the master is built on: the store, the blobs, the auth, the node
// registry, the task manager, the event bus, the clock and the logger (wired in master.ts).
import type { Clock } from '../common/clock.js';
import type { Logger } from '../common/logger.js';
import type { MasterAuth } from './auth.js';
import type { BlobStore } from './blob-store.js';
import type { MasterEvents } from './master-events.js';
import type { MasterStore } from './master-store.js';
import type { NodeRegistry } from './registry.js';
import type { TaskManager } from './task-manager.js';

export interface MasterServiceDeps {
  store: MasterStore;
  blobs: BlobStore;
  auth: MasterAuth;
  registry: NodeRegistry;
  tasks: TaskManager;
  events: MasterEvents;
  clock: Clock;
  log: Logger;
}
