// The headers a replica sees and the headers a client gets back. Pure. The client's Authorization
// never reaches the replica (the token is for the gateway, and a replica is code from whoever
// deployed it); hop-by-hop headers stay on their hop; the X-Forwarded-* set tells the replica
// where it is mounted and who asked.

/** RFC 9110 7.6.1, plus the old Keep-Alive and Proxy-Connection. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer', 'upgrade']);

export interface ForwardContext {
  /** The client's address as the gateway's socket sees it. */
  remoteAddress: string;
  /** The Host the client asked for (the gateway's own name, as the client knows it). */
  host: string | undefined;
  /** `/s/NAME`. */
  prefix: string;
  /**
   * The peer is a reverse proxy on this host (TLS in front of the gateway): its X-Forwarded-Proto
   * and -Host are kept. From anyone else they are replaced by the gateway's own view.
   */
  trustForwarded: boolean;
  /** An Upgrade request: Connection and Upgrade go through, the replica must see them. */
  upgrade: boolean;
}

/** Pairs of [name, value] from Node's flat rawHeaders. */
export function headerPairs(raw: readonly string[]): [string, string][] {
  const pairs: [string, string][] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) pairs.push([raw[i]!, raw[i + 1]!]);
  return pairs;
}

/** Names listed in Connection headers: hop-by-hop for this message too. */
function connectionListed(pairs: readonly [string, string][]): Set<string> {
  const listed = new Set<string>();
  for (const [k, v] of pairs) if (k.toLowerCase() === 'connection') for (const t of v.split(',')) listed.add(t.trim().toLowerCase());
  return listed;
}

/** The request headers for the replica, in the client's order and case, as a flat list. */
export function upstreamRequestHeaders(raw: readonly string[], ctx: ForwardContext): string[] {
  const pairs = headerPairs(raw);
  const listed = ctx.upgrade ? new Set<string>() : connectionListed(pairs);
  const out: string[] = [];
  let forwardedFor: string | undefined;
  let proto: string | undefined;
  let fwdHost: string | undefined;
  for (const [k, v] of pairs) {
    const name = k.toLowerCase();
    if (name === 'authorization') continue;
    if (name === 'x-forwarded-for') {
      forwardedFor = forwardedFor === undefined ? v : `${forwardedFor}, ${v}`;
      continue;
    }
    if (name === 'x-forwarded-proto') {
      proto ??= v;
      continue;
    }
    if (name === 'x-forwarded-host') {
      fwdHost ??= v;
      continue;
    }
    if (name === 'x-forwarded-prefix') continue;
    if (!ctx.upgrade && (HOP_BY_HOP.has(name) || listed.has(name))) continue;
    if (ctx.upgrade && (name === 'proxy-authorization' || name === 'proxy-connection')) continue;
    out.push(k, v);
  }
  // X-Forwarded-For is a chain: each proxy appends the peer it saw. The replica cannot trust the
  // earlier entries anyway; the last one is ours.
  out.push('X-Forwarded-For', forwardedFor === undefined ? ctx.remoteAddress : `${forwardedFor}, ${ctx.remoteAddress}`);
  out.push('X-Forwarded-Proto', ctx.trustForwarded && proto ? proto : 'http');
  const host = ctx.trustForwarded && fwdHost ? fwdHost : ctx.host;
  if (host !== undefined) out.push('X-Forwarded-Host', host);
  out.push('X-Forwarded-Prefix', ctx.prefix);
  return out;
}

/** The replica's response headers for the client, hop-by-hop ones dropped, as a flat list. */
export function downstreamResponseHeaders(raw: readonly string[]): string[] {
  const pairs = headerPairs(raw);
  const listed = connectionListed(pairs);
  const out: string[] = [];
  for (const [k, v] of pairs) {
    const name = k.toLowerCase();
    if (HOP_BY_HOP.has(name) || listed.has(name)) continue;
    out.push(k, v);
  }
  return out;
}
