// The rules of a runnable task spec, shared by the master (which refuses a spec at submission)
// and the node (which checks an assignment again before taking it): one source, so that the
// master never accepts what every node would refuse. Pure; no I/O.
import { InvalidTaskError } from '../common/errors.js';
import { formatBytes } from '../common/units.js';
import { echoValue } from '../common/echo-value.js';
import { Isolation, TaskNetwork, TaskSpec, type ServiceRole } from './gen/hivemind/v1/common.js';
import { checkDataMounts } from './data-mount-rules.js';

/** The bounds of a task spec. Every limit field is 0 for "the node's default". */
export const SPEC_LIMITS = {
  /** Protobuf-encoded size of the whole spec: it is stored, sent with each assignment and listed. */
  maxSpecBytes: 256 * 1024,
  /**
   * Linux's MAX_ARG_STRLEN (32 pages) less the terminating NUL: execve refuses a longer single
   * argument or NAME=value environment string, so the container could never start.
   */
  maxArgBytes: 128 * 1024 - 1,
  maxCommandArgs: 4096,
  maxEnvVars: 1024,
  maxEnvNameBytes: 256,
  /** Docker's limit on the name part (registry + repository path) of an image reference. */
  maxImageNameBytes: 255,
  /** A whole reference: a 255-byte name, a 128-byte tag and a digest fit. */
  maxImageReferenceBytes: 512,
  /** Docker refuses a NanoCpus under 0.01 CPU ("Range of CPUs is from 0.01 to ..."). */
  minCpus: 0.01,
  maxCpus: 1024,
  minMemoryBytes: 6 * 1024 * 1024, // Docker refuses a memory limit under 6 MiB
  maxMemoryBytes: 16 * 1024 ** 4,
  maxPids: 4_194_304, // the kernel's pid_max ceiling
  maxGpus: 64,
  maxTimeoutMs: 30 * 24 * 3600 * 1000,
  maxOutputBytes: 1024 ** 4,
} as const;

/** POSIX portable environment variable names. */
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const RESERVED_ENV_PREFIX = 'HIVEMIND_';

// Docker's reference grammar (github.com/distribution/reference, regexp.go):
//   reference := name [ ":" tag ] [ "@" digest ];  name := [domain "/"] path
const DOMAIN_COMPONENT = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const DOMAIN = `(?:${DOMAIN_COMPONENT}(?:\\.${DOMAIN_COMPONENT})*|\\[[a-fA-F0-9:]+\\])(?::[0-9]+)?`;
const PATH_COMPONENT = '[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*';
const TAG = '[\\w][\\w.-]{0,127}';
const DIGEST = '[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}';
const REFERENCE = new RegExp(`^((?:${DOMAIN}/)?${PATH_COMPONENT}(?:/${PATH_COMPONENT})*)(?::${TAG})?(?:@${DIGEST})?$`);
const IMAGE_FORM = '[registry[:port]/]path[:tag][@digest], path in lowercase';

const bytes = (s: string): number => Buffer.byteLength(s, 'utf8');

/** A printable, bounded rendering of a hostile string for an error message. */
function quote(s: string): string {
  const shown = s.length > 80 ? `${s.slice(0, 80)}…` : s;
  return JSON.stringify(shown);
}

/** Throws InvalidTaskError unless `image` is a Docker image reference. */
export function checkImageReference(image: string): void {
  const what = 'spec.image';
  if (image.trim() === '') throw new InvalidTaskError(`${what} is empty: name the Docker image to run (e.g. "alpine:3.20")`);
  if (bytes(image) > SPEC_LIMITS.maxImageReferenceBytes) {
    throw new InvalidTaskError(`${what} is ${bytes(image)} bytes, over the maximum of ${SPEC_LIMITS.maxImageReferenceBytes}`);
  }
  if (/[\u0000-\u001f\u007f]/.test(image)) throw new InvalidTaskError(`${what} ${quote(image)} contains a control character (NUL, newline ...): not an image reference`);
  if (/\s/.test(image)) throw new InvalidTaskError(`${what} ${quote(image)} contains whitespace: not an image reference`);
  const m = REFERENCE.exec(image);
  // Like Docker, a first component is a registry only with a '.' or ':' in it, or as "localhost";
  // otherwise it is part of the repository path, which must be lowercase ("Hivemind/busybox").
  const first = image.includes('/') ? image.slice(0, image.indexOf('/')) : '';
  const firstIsPath = first !== '' && !/[.:]/.test(first) && first !== 'localhost';
  if (!m || (firstIsPath && /[A-Z]/.test(first))) {
    const path = image.split('@')[0]!.replace(/:[^/]*$/, '');
    const hint = /[A-Z]/.test(firstIsPath ? path : path.slice(path.indexOf('/') + 1)) ? ' (the repository path must be lowercase)' : '';
    throw new InvalidTaskError(`${what} ${quote(image)} is not a valid image reference${hint}: expected ${IMAGE_FORM}`);
  }
  if (bytes(m[1]!) > SPEC_LIMITS.maxImageNameBytes) {
    throw new InvalidTaskError(`${what}: the image name is ${bytes(m[1]!)} bytes, over Docker's maximum of ${SPEC_LIMITS.maxImageNameBytes}`);
  }
}

function checkCount(what: string, v: number, min: number, max: number, fmt: (n: number) => string = String): void {
  if (!Number.isSafeInteger(v) || v < 0) throw new InvalidTaskError(`${what} must be a whole number ≥ 0, got ${v}`);
  if (v === 0) return;
  if (v < min) throw new InvalidTaskError(`${what} is ${fmt(v)}, under the minimum of ${fmt(min)} (0 means the node's default)`);
  if (v > max) throw new InvalidTaskError(`${what} is ${fmt(v)}, over the maximum of ${fmt(max)}`);
}

function checkCpus(v: number): void {
  const what = 'spec.limits.cpus';
  if (!Number.isFinite(v) || v < 0) throw new InvalidTaskError(`${what} must be a number ≥ 0, got ${v}`);
  if (v === 0) return;
  if (v < SPEC_LIMITS.minCpus) throw new InvalidTaskError(`${what} is ${v}, under the minimum of ${SPEC_LIMITS.minCpus} (0 means the node's default)`);
  if (v > SPEC_LIMITS.maxCpus) throw new InvalidTaskError(`${what} is ${v}, over the maximum of ${SPEC_LIMITS.maxCpus}`);
}

function checkCommand(command: readonly string[]): void {
  if (command.length > SPEC_LIMITS.maxCommandArgs) {
    throw new InvalidTaskError(`spec.command has ${command.length} arguments, over the maximum of ${SPEC_LIMITS.maxCommandArgs}`);
  }
  if (command.length > 0 && !command[0]!.trim()) {
    throw new InvalidTaskError('spec.command[0] is empty: name the program to run, or give no command to run the image\'s own');
  }
  command.forEach((arg, i) => {
    if (arg.includes('\0')) throw new InvalidTaskError(`spec.command[${i}] contains a NUL byte`);
    if (bytes(arg) > SPEC_LIMITS.maxArgBytes) {
      throw new InvalidTaskError(`spec.command[${i}] is ${bytes(arg)} bytes, over the maximum of ${SPEC_LIMITS.maxArgBytes} per argument (Linux's MAX_ARG_STRLEN)`);
    }
  });
}

function checkEnv(env: ReadonlyMap<string, string>): void {
  if (!(env instanceof Map)) throw new InvalidTaskError('spec.env is not a map');
  if (env.size > SPEC_LIMITS.maxEnvVars) throw new InvalidTaskError(`spec.env has ${env.size} variables, over the maximum of ${SPEC_LIMITS.maxEnvVars}`);
  for (const [name, value] of env) {
    if (bytes(name) > SPEC_LIMITS.maxEnvNameBytes) {
      throw new InvalidTaskError(`spec.env: the name ${quote(name)} is ${bytes(name)} bytes, over the maximum of ${SPEC_LIMITS.maxEnvNameBytes}`);
    }
    if (!ENV_NAME.test(name)) throw new InvalidTaskError(`spec.env: ${quote(name)} is not a valid variable name (letters, digits and _, not starting with a digit)`);
    if (name.toUpperCase().startsWith(RESERVED_ENV_PREFIX)) throw new InvalidTaskError(`spec.env: ${name} is reserved (HIVEMIND_* names are set by the node)`);
    if (value.includes('\0')) throw new InvalidTaskError(`spec.env: the value of ${name} contains a NUL byte`);
    const entry = bytes(name) + 1 + bytes(value);
    if (entry > SPEC_LIMITS.maxArgBytes) {
      throw new InvalidTaskError(`spec.env: ${name}=value is ${entry} bytes, over the maximum of ${SPEC_LIMITS.maxArgBytes} per variable (Linux's MAX_ARG_STRLEN)`);
    }
  }
}

/** A replica's health path at most (it goes into an HTTP request line on the node). */
export const MAX_HEALTH_PATH_CHARS = 256;
/** A replica's stop grace at most (SIGTERM to SIGKILL). */
export const MAX_GRACE_MS = 10 * 60_000;

/**
 * A service replica's role and what it asks of the spec: a port, a plain health path, a bounded
 * grace, and no timeout (a replica runs until stopped). The master checks it when a service is
 * created, the node on every replica assignment.
 */
function checkServiceRole(role: ServiceRole, timeoutMs: number): void {
  if (!Number.isInteger(role.port) || role.port < 1 || role.port > 65535) throw new InvalidTaskError(`spec.service.port must be between 1 and 65535, got ${role.port}`);
  if (timeoutMs !== 0) throw new InvalidTaskError(`spec.limits.timeout_ms must be 0 for a service (its replicas run until stopped), got ${timeoutMs}`);
  const path = role.healthPath;
  if (path !== '') {
    if (path.length > MAX_HEALTH_PATH_CHARS) throw new InvalidTaskError(`spec.service.health_path is ${path.length} characters, over the maximum of ${MAX_HEALTH_PATH_CHARS}`);
    if (!path.startsWith('/')) throw new InvalidTaskError(`spec.service.health_path "${echoValue(path)}" must start with "/"`);
    // Printable ASCII without spaces: it goes into an HTTP request line as it is.
    if (!/^[\x21-\x7e]+$/.test(path)) throw new InvalidTaskError(`spec.service.health_path "${echoValue(path)}" must be printable ASCII without spaces`);
  }
  if (!Number.isSafeInteger(role.graceMs) || role.graceMs < 0 || role.graceMs > MAX_GRACE_MS) throw new InvalidTaskError(`spec.service.grace_ms must be between 0 and ${MAX_GRACE_MS} (10 min), got ${role.graceMs}`);
}

/**
 * Throws InvalidTaskError naming the field and the limit of the first problem of `spec`, as
 * given (no trimming: the master normalizes what a user typed before it checks).
 */
const NETWORKS: readonly TaskNetwork[] = [TaskNetwork.TASK_NETWORK_UNSPECIFIED, TaskNetwork.TASK_NETWORK_NONE, TaskNetwork.TASK_NETWORK_EGRESS];

/** An unknown network value is refused (a newer client's choice must not silently mean "none" or more). */
function checkNetwork(spec: TaskSpec): void {
  // Decoded specs always carry it (0 when unset); a spec built in process may leave it out.
  const network = spec.network ?? TaskNetwork.TASK_NETWORK_UNSPECIFIED;
  if (!NETWORKS.includes(network)) throw new InvalidTaskError(`spec.network ${echoValue(String(network))} is unknown: use none or egress`);
  // A replica is reached only through the node's gateway pipe; egress would be a second door.
  if (spec.service && spec.network === TaskNetwork.TASK_NETWORK_EGRESS) throw new InvalidTaskError('a service replica cannot ask for the egress network');
  const rate = spec.egressRateBps ?? 0;
  if (rate === 0) return;
  if (network !== TaskNetwork.TASK_NETWORK_EGRESS) throw new InvalidTaskError('spec.egress_rate_bps caps the egress network: it needs spec.network egress (--network egress)');
  if (!Number.isInteger(rate) || rate < MIN_EGRESS_RATE_BPS || rate > MAX_EGRESS_RATE_BPS) {
    throw new InvalidTaskError(`spec.egress_rate_bps ${echoValue(String(rate))} must be from ${MIN_EGRESS_RATE_BPS} (8kbit) to ${MAX_EGRESS_RATE_BPS} (100gbit) bits per second`);
  }
}

/** The bounds of an egress rate, the task's (spec.egress_rate_bps) and the node's (--egress-rate). */
export const MIN_EGRESS_RATE_BPS = 8_000;
export const MAX_EGRESS_RATE_BPS = 100_000_000_000;

/** gVisor (runsc) as this node's Docker runs it has no GPU passthrough and no network namespace a
 * replica's connector could enter, so a GPU task or a service replica cannot run under it. */
function checkIsolation(spec: TaskSpec): void {
  const iso = spec.isolation ?? Isolation.ISOLATION_UNSPECIFIED;
  if (iso !== Isolation.ISOLATION_UNSPECIFIED && iso !== Isolation.ISOLATION_RUNC && iso !== Isolation.ISOLATION_GVISOR) {
    throw new InvalidTaskError(`spec.isolation ${echoValue(String(iso))} is not a known isolation: runc (1) or gvisor (2)`);
  }
  if (iso !== Isolation.ISOLATION_GVISOR) return;
  if ((spec.limits?.gpus ?? 0) > 0) throw new InvalidTaskError('spec.isolation gvisor with spec.limits.gpus: gVisor tasks get no GPU; drop --gpus or --isolation gvisor');
  if (spec.service) throw new InvalidTaskError('spec.isolation gvisor on a service replica: replicas run under runc (their port is reached through the container\'s network namespace)');
  // runsc is registered with --network=none (docs/security.md): a gVisor task has no network at all.
  if (spec.network === TaskNetwork.TASK_NETWORK_EGRESS) throw new InvalidTaskError('spec.isolation gvisor with spec.network egress: gVisor tasks get no network; drop --network egress or --isolation gvisor');
}

export function checkTaskSpec(spec: TaskSpec): void {
  checkImageReference(spec.image);
  checkCommand(spec.command);
  checkEnv(spec.env);
  const l = spec.limits;
  if (l) {
    checkCpus(l.cpus);
    checkCount('spec.limits.memory_bytes', l.memoryBytes, SPEC_LIMITS.minMemoryBytes, SPEC_LIMITS.maxMemoryBytes, formatBytes);
    checkCount('spec.limits.pids', l.pids, 1, SPEC_LIMITS.maxPids);
    checkCount('spec.limits.gpus', l.gpus, 1, SPEC_LIMITS.maxGpus);
    checkCount('spec.limits.timeout_ms', l.timeoutMs, 1, SPEC_LIMITS.maxTimeoutMs);
  }
  checkCount('spec.max_output_bytes', spec.maxOutputBytes, 1, SPEC_LIMITS.maxOutputBytes, formatBytes);
  checkDataMounts(spec.data ?? []);
  if (spec.service) checkServiceRole(spec.service, l?.timeoutMs ?? 0);
  checkNetwork(spec);
  checkIsolation(spec);
  // Last: the fields are then known to be encodable (the encoder throws on a fractional uint32).
  const size = TaskSpec.encode(spec).finish().length;
  if (size > SPEC_LIMITS.maxSpecBytes) {
    throw new InvalidTaskError(`the task spec is ${formatBytes(size)} encoded, over the maximum of ${formatBytes(SPEC_LIMITS.maxSpecBytes)} (command and env together): pass large data as the task's input instead`);
  }
}
