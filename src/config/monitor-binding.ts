// Where the local monitor may listen, checked with the rest of the configuration at start: it binds
// loopback by default; any other address needs a (long enough) token. The monitor's request guards
// (monitor/monitor-security.ts) use the same loopback rule.
import { isLoopbackHost } from '../common/address.js';
import { ConfigError } from '../common/errors.js';

export const MIN_TOKEN_LENGTH = 16;

/** Checked once at start: a non-loopback bind without a (long enough) token is refused. */
export function checkMonitorBinding(host: string, token: string | undefined): void {
  if (token !== undefined && token.length < MIN_TOKEN_LENGTH) {
    throw new ConfigError(`the monitor token must be at least ${MIN_TOKEN_LENGTH} characters (e.g. \`openssl rand -hex 16\`)`);
  }
  if (!isLoopbackHost(host) && token === undefined) {
    throw new ConfigError(
      `the monitor would listen on ${host}, reachable from other machines: set a monitor token (--monitor-token or HIVEMIND_MONITOR_TOKEN) or keep the default 127.0.0.1`,
    );
  }
}
