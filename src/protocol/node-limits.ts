// What a node may say about itself: the bounds the master enforces on Register/Enroll facts,
// resource reports and the Subscribe running list, in one place so the worker can stay inside
// them and docs/protocol.md can quote them. Each bound is far above what a real node sends; past
// one the master answers INVALID_ARGUMENT naming the field and the bound, and stores nothing.

const KiB = 1024;

/**
 * Encoded size caps checked BEFORE a message is decoded: decoding a 4 MiB message of 250,000
 * small entries alone blocks the event loop for ~90 ms, so the count limits below cannot be the
 * only defence. Every valid message fits well inside these.
 */
export const MAX_REGISTER_BYTES = 128 * KiB;
/** A report listing MAX_CACHE_ENTRIES_REPORTED cache entries (~82 bytes each) and every other list at its bound fits. */
export const MAX_REPORT_BYTES = 512 * KiB;
export const MAX_SUBSCRIBE_BYTES = 64 * KiB;
export const MAX_UPDATE_BYTES = 64 * KiB;

/** Concurrent task slots a node may declare (facts.max_tasks; the worker's own config allows 1..256). */
export const MAX_TASK_SLOTS = 256;
/** Slots assumed for a node that declares none (max_tasks = 0, an older worker). */
export const SLOTS_WHEN_UNDECLARED = 64;
/**
 * A node lists the tasks it still holds when it subscribes: running ones, results not yet
 * uploaded, and finished ones whose last update is unacknowledged. Those can outnumber its slots
 * for a while (a task finishing while the next runs), so the list may hold twice its slots plus
 * a margin; a longer list is refused.
 */
export const HELD_TASKS_PER_SLOT = 2;
export const HELD_TASKS_MARGIN = 16;

/** The most tasks a node with `maxTasks` declared slots may list as held (Subscribe, report usage). */
export function heldTaskLimit(maxTasks: number): number {
  const slots = maxTasks > 0 ? Math.min(maxTasks, MAX_TASK_SLOTS) : SLOTS_WHEN_UNDECLARED;
  return slots * HELD_TASKS_PER_SLOT + HELD_TASKS_MARGIN;
}

/**
 * Entries of the node's data cache a report lists (ResourceReport.cache.held), most recently used
 * first: a node holding more lists these; the master places by them and reclaims removed ones.
 */
export const MAX_CACHE_ENTRIES_REPORTED = 4096;

/** Task ids are issued by the master (16 hex digits); anything longer is not one of ours. */
export const MAX_TASK_ID_CHARS = 64;

/** The name defaults to the hostname, so both may be as long as a DNS name. */
export const MAX_NODE_NAME_CHARS = 253;
export const MAX_HOSTNAME_CHARS = 253;
/** os, os_release, arch, cpu_model, docker_version, worker_version, GPU names. */
export const MAX_FACT_CHARS = 128;

export const MAX_LABELS = 64;
export const MAX_LABEL_KEY_CHARS = 128;
export const MAX_LABEL_VALUE_CHARS = 256;
/** The worker config's label key syntax (layered-config zLabels). */
export const LABEL_KEY_PATTERN = /^[A-Za-z0-9_.\-/]+$/;

/**
 * Characters refused in what a node says about itself: C0 and C1 controls and DEL (a name with
 * escape sequences would rewrite the operator's terminal). The master checks, the worker's config
 * refuses the same at start, and the worker cleans the free text it does not control.
 */
export const CONTROL_CHARACTERS = /[\u0000-\u001f\u007f-\u009f]/;
/** The same, less tabs and line breaks: free text such as a Docker error may span lines. */
export const CONTROL_CHARACTERS_EXCEPT_WHITESPACE = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]/;

export const MAX_GPUS = 64;
export const MAX_GPU_INDEX = 1023;
export const MAX_GPU_UUID_CHARS = 64;

export const MAX_CPU_CORES = 4096;

/** docker_message: a Docker error as the worker saw it (tabs and newlines allowed). */
export const MAX_DOCKER_MESSAGE_CHARS = 2048;
/** lifecycle_state and the tunnel's state/implementation: short words. */
export const MAX_STATE_CHARS = 32;
/** Tunnel interface name, address (CIDR) and master endpoint (host:port). */
export const MAX_TUNNEL_FIELD_CHARS = 260;

/** GPU temperatures (°C) and power draw (W) outside these are not readings. */
export const GPU_TEMPERATURE_RANGE_C = [-100, 300] as const;
export const MAX_GPU_POWER_W = 100_000;

/**
 * Register (credential refresh) and Subscribe calls a node may make per minute. A worker makes
 * one of each per connection and backs off between reconnects; a loop of them (each Subscribe
 * reconciles the node's tasks and, in mesh mode, sends every node the peer list) is refused with
 * RESOURCE_EXHAUSTED, which a worker retries with a growing backoff.
 */
export const MAX_REGISTERS_PER_MINUTE = 30;
export const MAX_SUBSCRIBES_PER_MINUTE = 30;

/**
 * Reports one node may send per minute: ten a second, or four times the master's report rate when
 * that is faster (a node may report more often than asked, not flood). Each stored report is a
 * database write and a placement pass; past this the Report stream ends RESOURCE_EXHAUSTED.
 */
export function maxReportsPerMinute(reportIntervalMs: number): number {
  return Math.max(600, Math.ceil(60_000 / Math.max(reportIntervalMs, 1)) * 4);
}

/**
 * Free text of a task update (`message`, `outcome.message`): longer text is cut to this many
 * characters with a note of its full size, by the worker before sending and by the master on
 * receipt, so a state change is never lost for its wording and never stores more than this.
 */
export const MAX_UPDATE_MESSAGE_CHARS = 4096;

/** `text` cut to MAX_UPDATE_MESSAGE_CHARS, saying how long it was. */
export function cutUpdateMessage(text: string): string {
  if (text.length <= MAX_UPDATE_MESSAGE_CHARS) return text;
  return `${text.slice(0, MAX_UPDATE_MESSAGE_CHARS)}…(cut: ${Buffer.byteLength(text)} bytes in all)`;
}

/** A replica status's free text (`last_exit`, `health_message`): kept per task and shown in every ServiceInfo. */
export const MAX_REPLICA_TEXT_CHARS = 512;

/** `text` cut to MAX_REPLICA_TEXT_CHARS. */
export function cutReplicaText(text: string): string {
  return text.length > MAX_REPLICA_TEXT_CHARS ? `${text.slice(0, MAX_REPLICA_TEXT_CHARS)}…` : text;
}
