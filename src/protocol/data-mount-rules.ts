// The rules of a task's data mounts (TaskSpec.data), shared by the CLI, the master (at submission)
// and the node (again, before it mounts anything): where a data set may appear in the container,
// what a digest and an external url look like, and how many. Pure; no I/O.
import { echoValue } from '../common/echo-value.js';
import { InvalidTaskError } from '../common/errors.js';
import { formatBytes } from '../common/units.js';
import { DataKind, type DataMount } from './gen/hivemind/v1/common.js';
import { DIGEST_PREFIX } from './data-rules.js';

export const DATA_MOUNT_LIMITS = {
  /** Data sets one task mounts. */
  maxMounts: 16,
  maxPathChars: 256,
  maxUrlChars: 2048,
  /**
   * The largest data set a spec may name, whatever the master's own --max-data (which is lower by
   * default and checked at submission): a bound the node applies to any assignment.
   */
  maxSizeBytes: 16 * 1024 ** 4,
} as const;

/** The task's own directories: a data set may not hide them, nor be hidden by them. */
export const TASK_PATHS: readonly string[] = ['/input', '/output', '/tmp'];

/** Where the container's system lives: a data set may not replace any part of it. */
export const SYSTEM_PATHS: readonly string[] = [
  '/proc', '/sys', '/dev', '/etc', '/bin', '/sbin', '/usr', '/lib', '/lib32', '/lib64', '/boot', '/run', '/var/run',
];

const HEX64 = /^[0-9a-f]{64}$/;
// Control characters would forge log lines; ':' and ',' are separators of Docker's mount syntaxes
// (and of `--data REF:/path`), so a path holding one could not be passed on unambiguously.
const FORBIDDEN_PATH_CHARS = /[\u0000-\u001f\u007f:,]/;

/** `inner` is `outer` or below it. Both normalised absolute paths. */
export function isWithin(inner: string, outer: string): boolean {
  return inner === outer || inner.startsWith(outer + '/');
}

/** Throws InvalidTaskError unless `path` is a place a data set may be mounted. */
export function checkMountPath(path: string, field: string): void {
  const shown = `"${echoValue(path)}"`;
  if (path.length > DATA_MOUNT_LIMITS.maxPathChars) {
    throw new InvalidTaskError(`${field} is ${path.length} characters, over the maximum of ${DATA_MOUNT_LIMITS.maxPathChars}`);
  }
  if (!path.startsWith('/')) throw new InvalidTaskError(`${field} ${shown} is not an absolute path: start it with "/"`);
  if (FORBIDDEN_PATH_CHARS.test(path)) throw new InvalidTaskError(`${field} ${shown} holds a control character, ":" or ",": not allowed in a mount path`);
  if (path === '/') throw new InvalidTaskError(`${field} is "/": a data set cannot replace the container's root; mount it at a directory such as /data`);
  if (path.endsWith('/')) throw new InvalidTaskError(`${field} ${shown} ends with "/": write it without (e.g. "${echoValue(path.replace(/\/+$/, ''))}")`);
  if (path.includes('//')) throw new InvalidTaskError(`${field} ${shown} holds "//": write the path normalised`);
  if (path.split('/').some((s) => s === '.' || s === '..')) throw new InvalidTaskError(`${field} ${shown} holds a "." or ".." segment: write the path normalised`);
  for (const p of TASK_PATHS) {
    if (isWithin(path, p) || isWithin(p, path)) {
      throw new InvalidTaskError(`${field} ${shown} is ${path === p ? '' : isWithin(path, p) ? 'inside ' : 'above '}${p}, which the task itself uses (${TASK_PATHS.join(', ')}): choose another path, e.g. /data`);
    }
  }
  for (const p of SYSTEM_PATHS) {
    if (isWithin(path, p)) throw new InvalidTaskError(`${field} ${shown} is ${path === p ? '' : 'inside '}the system path ${p}: choose another path, e.g. /data`);
  }
}

/** Throws InvalidTaskError unless `url` is an http:// or https:// address without credentials. */
export function checkDataUrl(url: string, field: string): void {
  if (url.length > DATA_MOUNT_LIMITS.maxUrlChars) {
    throw new InvalidTaskError(`${field} is ${url.length} characters, over the maximum of ${DATA_MOUNT_LIMITS.maxUrlChars}`);
  }
  const shown = `"${echoValue(url)}"`;
  if (/[\u0000-\u0020\u007f]/.test(url)) throw new InvalidTaskError(`${field} ${shown} holds whitespace or a control character: not a url`);
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new InvalidTaskError(`${field} ${shown} is not a url: expected http://HOST/PATH or https://HOST/PATH`);
  }
  if (u.protocol !== 'https:' && u.protocol !== 'http:') {
    throw new InvalidTaskError(`${field} ${shown} is a ${u.protocol.replace(/:$/, '')} url: only http:// and https:// are fetched`);
  }
  if (u.username || u.password) {
    throw new InvalidTaskError(`${field} ${shown} holds a user name or password (user:password@): credentials are not put in a task spec, which every node and admin can read`);
  }
  if (!u.hostname) throw new InvalidTaskError(`${field} ${shown} names no host`);
}

function checkMount(m: DataMount, i: number, maxSizeBytes: number): void {
  const at = `spec.data[${i}]`;
  checkMountPath(m.path, `${at}.path`);
  if (!m.sha256.startsWith(DIGEST_PREFIX) || !HEX64.test(m.sha256.slice(DIGEST_PREFIX.length))) {
    const hint = m.url ? ' (an external data set needs its sha256: URL@sha256:HEX:/path)' : '';
    throw new InvalidTaskError(`${at}.sha256 "${echoValue(m.sha256)}" is not a digest: expected "sha256:" and 64 lowercase hex digits${hint}`);
  }
  if (m.url) checkDataUrl(m.url, `${at}.url`);
  if (!Number.isSafeInteger(m.size) || m.size < 0) throw new InvalidTaskError(`${at}.size must be a whole number ≥ 0, got ${m.size}`);
  if (m.size > maxSizeBytes) {
    throw new InvalidTaskError(`${at}.size is ${formatBytes(m.size)}, over the maximum of ${formatBytes(maxSizeBytes)} for a data set`);
  }
  if (m.kind !== DataKind.DATA_KIND_UNSPECIFIED && m.kind !== DataKind.DATA_KIND_FILE && m.kind !== DataKind.DATA_KIND_DIR) {
    throw new InvalidTaskError(`${at}.kind ${String(m.kind)} is not a data kind (file or directory)`);
  }
}

/**
 * Throws InvalidTaskError naming the field and the limit of the first problem of a task's data
 * mounts: the count, each mount, then two mounts at one path or one inside another.
 */
export function checkDataMounts(mounts: readonly DataMount[], maxSizeBytes: number = DATA_MOUNT_LIMITS.maxSizeBytes): void {
  if (mounts.length > DATA_MOUNT_LIMITS.maxMounts) {
    throw new InvalidTaskError(`spec.data has ${mounts.length} data sets, over the maximum of ${DATA_MOUNT_LIMITS.maxMounts} per task`);
  }
  mounts.forEach((m, i) => checkMount(m, i, Math.min(maxSizeBytes, DATA_MOUNT_LIMITS.maxSizeBytes)));
  // At most 16 mounts: the pairwise check costs nothing.
  for (let i = 0; i < mounts.length; i++) {
    for (let j = i + 1; j < mounts.length; j++) {
      const a = mounts[i]!.path;
      const b = mounts[j]!.path;
      if (a === b) throw new InvalidTaskError(`spec.data[${i}] and spec.data[${j}] are both mounted at "${a}": give each data set its own path`);
      if (isWithin(a, b) || isWithin(b, a)) {
        const [inner, outer] = isWithin(a, b) ? [a, b] : [b, a];
        throw new InvalidTaskError(`spec.data: "${inner}" is inside "${outer}", where another data set is mounted: mounts may not nest`);
      }
    }
  }
}
