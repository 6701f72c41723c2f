// What a service may be, as pure checks: its name (the gateway path /s/NAME/), its replica spec
// (the task spec rules plus the service's own: a port, no timeout, a plain health path), its
// replica count and stop grace. The admin RPCs compile a request here before anything is stored.
import { echoValue } from '../common/echo-value.js';
import { InvalidTaskError } from '../common/errors.js';
import type { TaskSpec } from '../protocol/gen/hivemind/v1/common.js';
import { InvalidArgumentError } from './master-errors.js';
import { validateTaskSpec } from './spec-validation.js';
import { MAX_GRACE_MS } from '../protocol/task-spec-rules.js';

export const SERVICE_NAME = /^[a-z0-9][a-z0-9-]{0,62}$/;
export const MAX_REPLICAS = 64;
export const DEFAULT_GRACE_MS = 10_000;
export const MAX_TOKEN_LABEL_CHARS = 128;

export function validateServiceName(name: string): string {
  if (!SERVICE_NAME.test(name)) {
    throw new InvalidArgumentError(`service name "${echoValue(name)}" is not 1 to 63 lowercase letters, digits and dashes starting with a letter or digit (it is the gateway path /s/NAME/)`);
  }
  return name;
}

/** 0 means 1 at creation; at most MAX_REPLICAS. */
export function validateReplicas(n: number, zeroMeansOne: boolean): number {
  if (!Number.isInteger(n) || n < 0 || n > MAX_REPLICAS) throw new InvalidArgumentError(`replicas must be between 0 and ${MAX_REPLICAS}, got ${n}`);
  return n === 0 && zeroMeansOne ? 1 : n;
}

export function validateGraceMs(ms: number): number {
  if (!Number.isSafeInteger(ms) || ms < 0 || ms > MAX_GRACE_MS) throw new InvalidArgumentError(`grace_ms must be between 0 and ${MAX_GRACE_MS} (10 min), got ${ms}`);
  return ms === 0 ? DEFAULT_GRACE_MS : ms;
}

/**
 * The replica spec as stored: held to every task spec rule, then to the service's own. The
 * replica index is the master's (set per replica task), the grace the service's.
 */
export function validateServiceSpec(spec: TaskSpec | undefined, graceMs: number): TaskSpec {
  if (!spec) throw new InvalidTaskError('the service has no spec');
  if (!spec.service) throw new InvalidTaskError('spec.service is required: a service needs spec.service.port, the port its container listens on');
  // The role's own rules (port, no timeout, health path) are the task spec rules', which the node
  // applies again to every replica; its name, index and grace are the master's, not the client's.
  const checked = validateTaskSpec({ ...spec, service: { ...spec.service, service: '', replica: 0, graceMs } });
  return { ...checked, service: { service: '', replica: 0, port: checked.service!.port, healthPath: checked.service!.healthPath, graceMs } };
}

/** The spec of replica `index` of service `name`: the service's spec with its role filled in. */
export function replicaSpec(name: string, spec: TaskSpec, index: number, graceMs: number): TaskSpec {
  const role = spec.service!;
  return { ...spec, service: { ...role, service: name, replica: index, graceMs } };
}

export function validateTokenLabel(label: string): string {
  const l = label.trim();
  if (l.length > MAX_TOKEN_LABEL_CHARS) throw new InvalidArgumentError(`label is ${l.length} characters, over the maximum of ${MAX_TOKEN_LABEL_CHARS}`);
  if (/[\u0000-\u001f\u007f-\u009f]/.test(l)) throw new InvalidArgumentError('label contains control characters');
  return l;
}
