// The monitor's guards. It binds loopback by default; anything else needs a token (checked with the
// configuration, config/monitor-binding.ts). Requests must name this server in their Host header
// (a DNS-rebinding page cannot borrow the browser's access to 127.0.0.1), controls need a header
// no cross-site form can send plus a same-origin Origin, and every response carries a strict
// Content-Security-Policy.
import { timingSafeEqual, createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { NextFunction, Request, Response } from 'express';
import { isLoopbackHost, parseHostPort } from '../common/address.js';

export { checkMonitorBinding, MIN_TOKEN_LENGTH } from '../config/monitor-binding.js';
export { isLoopbackHost } from '../common/address.js';

export const CONTROL_HEADER = 'x-hivemind-monitor';
export const TOKEN_COOKIE = 'hm_monitor';

export const CONTENT_SECURITY_POLICY = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "connect-src 'self'",
  "img-src 'self' data:",
  "font-src 'self'",
  "object-src 'none'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
  "form-action 'none'",
].join('; ');

const digest = (s: string) => createHash('sha256').update(s).digest();

export function tokenMatches(expected: string, given: string | undefined): boolean {
  return given !== undefined && timingSafeEqual(digest(expected), digest(given));
}

function cookieValue(header: string | undefined, name: string): string | undefined {
  for (const part of (header ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) {
      try {
        return decodeURIComponent(part.slice(eq + 1).trim());
      } catch {
        return undefined;
      }
    }
  }
  return undefined;
}

/** The token a request carries: `Authorization: Bearer`, the cookie, or Socket.IO's auth field. */
export function presentedToken(req: IncomingMessage, socketAuth?: unknown): string | undefined {
  const auth = req.headers.authorization;
  if (auth?.startsWith('Bearer ')) return auth.slice(7).trim();
  const fromCookie = cookieValue(req.headers.cookie, TOKEN_COOKIE);
  if (fromCookie) return fromCookie;
  const t = (socketAuth as { token?: unknown } | undefined)?.token;
  return typeof t === 'string' ? t : undefined;
}

export interface Guard {
  /** Why this request does not name this server in its Host header, or undefined. */
  refuseHost(req: IncomingMessage): string | undefined;
  /** Why this request may not be served at all (Host or token), or undefined. */
  refuse(req: IncomingMessage, socketAuth?: unknown): { status: number; message: string } | undefined;
  /** Why this state-changing request is refused as possibly cross-site, or undefined. */
  refuseControl(req: IncomingMessage): string | undefined;
}

export function createGuard(opts: { port: () => number; token: string | undefined; listenHost: string }): Guard {
  const hostAllowed = (hostHeader: string | undefined): boolean => {
    if (!hostHeader) return false;
    // With a token the token protects; without one only loopback names are this server.
    if (opts.token !== undefined) return true;
    const named = parseHostPort(hostHeader);
    if (!named) return false;
    return isLoopbackHost(named.host) && (named.port === undefined || named.port === opts.port());
  };
  const refuseHost = (req: IncomingMessage) =>
    hostAllowed(req.headers.host) ? undefined : `this monitor answers to localhost only (Host: ${req.headers.host ?? 'none'})`;
  return {
    refuseHost,
    refuse(req, socketAuth) {
      const badHost = refuseHost(req);
      if (badHost) return { status: 421, message: badHost };
      if (opts.token !== undefined && !tokenMatches(opts.token, presentedToken(req, socketAuth))) {
        return { status: 401, message: 'monitor token required: open /monitor.html?token=TOKEN once, or send "Authorization: Bearer TOKEN"' };
      }
      return undefined;
    },
    refuseControl(req) {
      if (req.headers[CONTROL_HEADER] !== '1') return `controls need the "${CONTROL_HEADER}: 1" header (cross-site requests cannot send it)`;
      const origin = req.headers.origin;
      if (origin !== undefined && origin !== 'null') {
        let host: string;
        try {
          host = new URL(origin).host;
        } catch {
          return `bad Origin "${origin}"`;
        }
        if (host !== req.headers.host) return `cross-site request refused (Origin ${origin})`;
      } else if (origin === 'null') {
        return 'cross-site request refused (Origin null)';
      }
      return undefined;
    },
  };
}

/** Security headers on every response. */
export function securityHeaders(_req: Request, res: Response, next: NextFunction): void {
  res.setHeader('Content-Security-Policy', CONTENT_SECURITY_POLICY);
  res.setHeader('X-Content-Type-Options', 'nosniff');
  res.setHeader('X-Frame-Options', 'DENY');
  res.setHeader('Referrer-Policy', 'no-referrer');
  res.setHeader('Cross-Origin-Opener-Policy', 'same-origin');
  res.setHeader('Cross-Origin-Resource-Policy', 'same-origin');
  next();
}
