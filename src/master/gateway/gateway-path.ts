// Where a gateway request goes: `/s/NAME/REST?query` is service NAME's `/REST?query`. Pure: the
// gateway answers the outcome's status itself, before any service is looked up.

/** A service's name as CreateService admits it; anything else in the first segment is malformed. */
export const SERVICE_NAME_RE = /^[a-z0-9][a-z0-9-]{0,62}$/;
export const GATEWAY_PREFIX = '/s/';

export type GatewayRoute =
  | { kind: 'forward'; service: string; /** The replica's request target, starting with "/". */ path: string; /** What the replica is mounted under, for X-Forwarded-Prefix. */ prefix: string }
  /** `/s/NAME` without its slash: relative links inside the service only work below `/s/NAME/`. */
  | { kind: 'redirect'; location: string }
  | { kind: 'refuse'; status: 400 | 404 | 414; message: string };

/**
 * Reads a request target. `maxBytes` bounds the whole target (the replica's own path limits are
 * its business; ours keeps a hostile URL from being copied and logged at length).
 */
export function parseGatewayPath(target: string, maxBytes: number): GatewayRoute {
  if (target.length > maxBytes) return { kind: 'refuse', status: 414, message: `the request path is ${target.length} bytes, over the gateway's ${maxBytes}` };
  // An absolute-form target ("http://host/s/...") is for proxies; this is an origin server.
  if (!target.startsWith('/')) return { kind: 'refuse', status: 400, message: 'the request target must be a path starting with /' };
  if (!target.startsWith(GATEWAY_PREFIX)) return { kind: 'refuse', status: 404, message: 'the gateway serves services under /s/NAME/ only' };
  const afterPrefix = target.slice(GATEWAY_PREFIX.length);
  const end = afterPrefix.search(/[/?#]/);
  const name = end === -1 ? afterPrefix : afterPrefix.slice(0, end);
  if (!SERVICE_NAME_RE.test(name)) return { kind: 'refuse', status: 400, message: 'malformed service name in the path: expected /s/NAME/ with NAME of a-z, 0-9 and -, at most 63 characters' };
  const rest = end === -1 ? '' : afterPrefix.slice(end);
  const prefix = `${GATEWAY_PREFIX}${name}`;
  if (!rest.startsWith('/')) return { kind: 'redirect', location: `${prefix}/${rest}` };
  return { kind: 'forward', service: name, path: rest, prefix };
}

/** The token of an `Authorization: Bearer ...` header, or undefined when there is none of that form. */
export function bearerToken(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  const m = /^Bearer +([^\s]+) *$/i.exec(header);
  return m?.[1];
}
