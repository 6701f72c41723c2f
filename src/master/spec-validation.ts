// Validation of submitted task specs: everything a node would refuse, caught at submit time with
// a message that names the field and the allowed range.
import { InvalidTaskError } from '../common/errors.js';
import { formatBytes } from '../common/units.js';
import type { TaskSpec } from '../protocol/gen/hivemind/v1/common.js';

export const SPEC_LIMITS = {
  maxCpus: 1024,
  minMemoryBytes: 6 * 1024 * 1024, // Docker refuses less than 6 MiB
  maxMemoryBytes: 16 * 1024 ** 4,
  maxPids: 4_194_304,
  maxGpus: 64,
  maxTimeoutMs: 30 * 24 * 3600 * 1000,
  maxOutputBytes: 1024 ** 4,
  maxCommandArgs: 4096,
  maxEnvVars: 1024,
  maxAttempts: 100,
} as const;

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

function checkRange(what: string, v: number, max: number, fmt: (n: number) => string = String): void {
  if (!Number.isFinite(v) || v < 0) throw new InvalidTaskError(`${what} must be a non-negative number, got ${v}`);
  if (v > max) throw new InvalidTaskError(`${what} is ${fmt(v)}, over the maximum of ${fmt(max)}`);
}

/** Throws InvalidTaskError naming the first problem of a spec. */
export function validateTaskSpec(spec: TaskSpec | undefined): TaskSpec {
  if (!spec) throw new InvalidTaskError('the submit header has no spec');
  const image = spec.image.trim();
  if (!image) throw new InvalidTaskError('spec.image is empty: name the Docker image to run (e.g. "alpine:3.20")');
  if (/\s/.test(image) || image.length > 512) throw new InvalidTaskError(`spec.image "${image}" is not a valid image reference`);
  if (spec.command.length > SPEC_LIMITS.maxCommandArgs) throw new InvalidTaskError(`spec.command has ${spec.command.length} arguments, over the maximum of ${SPEC_LIMITS.maxCommandArgs}`);
  if (spec.command.length > 0 && !spec.command[0]!.trim()) {
    throw new InvalidTaskError('spec.command[0] is empty: name the program to run, or give no command to run the image\'s own');
  }
  spec.command.forEach((arg, i) => {
    if (arg.includes('\0')) throw new InvalidTaskError(`spec.command[${i}] contains a NUL byte`);
  });
  const env = Object.entries(spec.env);
  if (env.length > SPEC_LIMITS.maxEnvVars) throw new InvalidTaskError(`spec.env has ${env.length} variables, over the maximum of ${SPEC_LIMITS.maxEnvVars}`);
  for (const [name, value] of env) {
    if (!ENV_NAME.test(name)) throw new InvalidTaskError(`spec.env: "${name}" is not a valid variable name (letters, digits and _, not starting with a digit)`);
    if (name.toUpperCase().startsWith('HIVEMIND_')) throw new InvalidTaskError(`spec.env: ${name} is reserved (HIVEMIND_* names are set by the node)`);
    if (value.includes('\0')) throw new InvalidTaskError(`spec.env: the value of ${name} contains a NUL byte`);
  }
  const l = spec.limits;
  if (l) {
    checkRange('limits.cpus', l.cpus, SPEC_LIMITS.maxCpus);
    checkRange('limits.memory_bytes', l.memoryBytes, SPEC_LIMITS.maxMemoryBytes, formatBytes);
    if (l.memoryBytes > 0 && l.memoryBytes < SPEC_LIMITS.minMemoryBytes) {
      throw new InvalidTaskError(`limits.memory_bytes is ${formatBytes(l.memoryBytes)}, under Docker's minimum of ${formatBytes(SPEC_LIMITS.minMemoryBytes)}`);
    }
    checkRange('limits.pids', l.pids, SPEC_LIMITS.maxPids);
    checkRange('limits.gpus', l.gpus, SPEC_LIMITS.maxGpus);
    if (!Number.isInteger(l.gpus)) throw new InvalidTaskError(`limits.gpus must be a whole number, got ${l.gpus}`);
    checkRange('limits.timeout_ms', l.timeoutMs, SPEC_LIMITS.maxTimeoutMs);
  }
  checkRange('max_output_bytes', spec.maxOutputBytes, SPEC_LIMITS.maxOutputBytes, formatBytes);
  return { ...spec, image };
}

/** 0 means the master default; anything else must be 1..maxAttempts. */
export function validateMaxAttempts(requested: number, masterDefault: number): number {
  if (requested === 0) return masterDefault;
  if (!Number.isInteger(requested) || requested < 1 || requested > SPEC_LIMITS.maxAttempts) {
    throw new InvalidTaskError(`max_attempts must be between 1 and ${SPEC_LIMITS.maxAttempts}, got ${requested}`);
  }
  return requested;
}
