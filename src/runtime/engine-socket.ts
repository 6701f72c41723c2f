// Where the node's container engine listens (--engine-socket, HIVEMIND_ENGINE_SOCKET, DOCKER_HOST):
// parsed once into the dockerode options every engine client of the worker is built from, so
// Docker, rootful Podman and rootless Podman are reached the same way.
import Docker from 'dockerode';
import { ConfigError } from '../common/errors.js';

/** A parsed engine address: a unix socket, or plain HTTP over TCP (no TLS: loopback or a private link). */
export type EngineSocket = { kind: 'unix'; path: string } | { kind: 'tcp'; host: string; port: number };

/** sun_path holds 108 bytes with its terminating NUL on Linux. */
const UNIX_PATH_MAX = 107;
const CONTROL = /[\u0000-\u001f\u007f]/;

/**
 * `/run/podman/podman.sock`, `unix:///run/podman/podman.sock` or `tcp://127.0.0.1:2375`; `what`
 * names where the value came from, for the error.
 */
export function parseEngineSocket(value: string, what = '--engine-socket'): EngineSocket {
  const v = value.trim();
  const bad = (why: string): ConfigError =>
    new ConfigError(`${what} "${CONTROL.test(value) ? JSON.stringify(value) : value}" ${why}; give an absolute socket path (/run/podman/podman.sock), unix:///PATH or tcp://HOST:PORT`);
  if (!v) throw bad('is empty');
  if (CONTROL.test(v)) throw bad('contains control characters');
  if (v.startsWith('tcp://')) {
    const m = /^tcp:\/\/(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})\/?$/.exec(v);
    const port = Number(m?.[2]);
    if (!m || !(port >= 1 && port <= 65535)) throw bad('is not tcp://HOST:PORT with a port from 1 to 65535');
    return { kind: 'tcp', host: m[1]!.replace(/^\[|\]$/g, ''), port };
  }
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(v) && !v.startsWith('unix://')) throw bad(`uses the scheme ${v.slice(0, v.indexOf('://') + 3)}, which the worker does not speak (https and ssh engines are not supported)`);
  const path = v.startsWith('unix://') ? v.slice('unix://'.length) : v;
  if (!path.startsWith('/')) throw bad('is not an absolute path');
  if (Buffer.byteLength(path) > UNIX_PATH_MAX) throw bad(`is longer than the ${UNIX_PATH_MAX} bytes a unix socket path may have`);
  return { kind: 'unix', path };
}

/** The address as a user writes it: for logs, doctor and NodeFacts-free display. */
export function engineSocketText(s: EngineSocket): string {
  return s.kind === 'unix' ? `unix://${s.path}` : `tcp://${s.host.includes(':') ? `[${s.host}]` : s.host}:${s.port}`;
}

/** dockerode's options for the address. */
export function dockerodeOptions(s: EngineSocket): Docker.DockerOptions {
  return s.kind === 'unix' ? { socketPath: s.path } : { host: s.host, port: s.port, protocol: 'http' };
}

/** A dockerode client of the engine at `s`. */
export function dockerClient(s: EngineSocket): Docker {
  return new Docker(dockerodeOptions(s));
}

/**
 * The engine the worker uses when none is configured: DOCKER_HOST when set (what docker and
 * podman's own clients honour), else `fallback` (WORKER_DEFAULTS.engineSocket).
 */
export function defaultEngineSocket(env: Readonly<Record<string, string | undefined>>, fallback: string): EngineSocket {
  const fromEnv = env.DOCKER_HOST?.trim();
  return fromEnv ? parseEngineSocket(fromEnv, 'DOCKER_HOST') : parseEngineSocket(fallback, 'the default engine socket');
}
