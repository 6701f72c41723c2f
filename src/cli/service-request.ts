// `hivemind service create` flags → CreateServiceRequest, and the other service flags (replica
// counts, ports, token lifetimes). Pure: the data set names are resolved by the caller, and the
// master holds the request to its own limits again (name form, at most 64 replicas, grace ≤ 10 min).
import { ConfigError } from '../common/errors.js';
import { echoValue } from '../common/echo-value.js';
import { parseDuration } from '../common/units.js';
import { CreateServiceRequest } from '../protocol/gen/hivemind/v1/admin.js';
import type { DataMount } from '../protocol/gen/hivemind/v1/common.js';
import { buildSpec, type SpecFlags } from './task-spec-flags.js';

/** Replicas a service may want (CreateServiceRequest.replicas, ScaleServiceRequest.replicas): the master's limit, checked here for an early message. */
export const MAX_REPLICAS = 64;

/** The raw values of `service create`'s flags (the container flags plus the service's own). */
export interface ServiceCreateFlags extends SpecFlags {
  image: string;
  port: string;
  replicas?: string;
  health?: string;
  public?: boolean;
  grace?: string;
}

/** A whole number in [min, max] from a flag's text; ConfigError naming the flag otherwise. */
export function parseWholeNumber(value: string, flag: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const n = Number(value);
  if (!/^[0-9]+$/.test(value.trim()) || n < min || n > max) {
    throw new ConfigError(`${flag}: "${echoValue(value)}" is not a whole number from ${min}${max === Number.MAX_SAFE_INTEGER ? ' up' : ` to ${max}`}`);
  }
  return n;
}

/** --health: an absolute HTTP path (query allowed) the node GETs; no spaces or controls, which would break the request line. */
export function parseHealthPath(value: string): string {
  if (!value.startsWith('/') || /[\s\u0000-\u001f\u007f]/.test(value)) {
    throw new ConfigError(`--health: "${echoValue(value)}" is not an HTTP path: it must start with / and hold no spaces (e.g. /health)`);
  }
  return value;
}

/**
 * The request `service create NAME` sends. The replica's spec carries spec.service (name, port,
 * health path); its replica index and grace are the master's to fill. Without --grace the master's
 * default (10 s) applies.
 */
export function buildCreateServiceRequest(name: string, command: string[], o: ServiceCreateFlags, data: DataMount[]): CreateServiceRequest {
  if (o.timeout !== undefined || o.maxOutput !== undefined) {
    // Not offered by the command; kept out in case a caller passes batch flags along.
    throw new ConfigError('a service replica runs until it is stopped: it has no --timeout and no /output (--max-output)');
  }
  const spec = buildSpec(o.image, command, o);
  spec.data = data;
  spec.service = {
    service: name,
    replica: 0,
    port: parseWholeNumber(o.port, '--port', 1, 65535),
    healthPath: o.health === undefined ? '' : parseHealthPath(o.health),
    graceMs: 0,
  };
  return CreateServiceRequest.fromPartial({
    name,
    spec,
    replicas: o.replicas === undefined ? 1 : parseWholeNumber(o.replicas, '--replicas', 1, MAX_REPLICAS),
    public: o.public === true,
    graceMs: o.grace === undefined ? 0 : parseGrace(o.grace),
  });
}

function parseGrace(text: string): number {
  const ms = parseDuration(text, '--grace');
  // 0 would mean "the default" on the wire: a user asking for no grace gets the smallest one instead of 10 s.
  if (ms === 0) throw new ConfigError('--grace: 0 is not a grace period; give at least 1s (without --grace the master\'s default, 10s, applies)');
  return ms;
}

/** --ttl of `service token create`: a duration, or "never" (the default). */
export function parseTokenTtl(text: string | undefined): number {
  if (text === undefined || text === 'never') return 0;
  const ms = parseDuration(text, '--ttl');
  if (ms === 0) throw new ConfigError('--ttl: 0 is not a lifetime; give e.g. 30d, or "never"');
  return ms;
}
