// The container engines the runner's integration tests run against: Docker, and Podman's
// Docker-compatible API rootful and rootless (scripts/podman-services.sh serves both on fixed sockets).
// Under CI=true an engine whose socket does not answer FAILS the test, like requirements.ts.
import type { TestContext } from 'node:test';
import { execFileSync } from 'node:child_process';

export type EngineName = 'docker' | 'podman' | 'podman-rootless';

export interface EngineTarget {
  name: EngineName;
  /** Unix socket of the engine's Docker-compatible API. */
  socketPath: string;
  /** The ordinary user the engine runs as (rootless only): files the task writes are owned by its subordinate ids. */
  user?: string;
}

export const PODMAN_SOCKET = '/run/hivemind-podman/podman.sock';
export const PODMAN_ROOTLESS_SOCKET = '/run/hivemind-podman-rootless/podman.sock';
export const PODMAN_ROOTLESS_USER = 'hmpodman';

/** Docker's socket: DOCKER_HOST when it names a unix socket, else the default path. */
export function dockerSocketPath(env: NodeJS.ProcessEnv = process.env): string {
  const host = env.DOCKER_HOST;
  return host?.startsWith('unix://') ? host.slice('unix://'.length) : '/var/run/docker.sock';
}

export function engineTarget(name: EngineName, env: NodeJS.ProcessEnv = process.env): EngineTarget {
  switch (name) {
    case 'docker':
      return { name, socketPath: dockerSocketPath(env) };
    case 'podman':
      return { name, socketPath: PODMAN_SOCKET };
    case 'podman-rootless':
      return { name, socketPath: PODMAN_ROOTLESS_SOCKET, user: PODMAN_ROOTLESS_USER };
  }
}

const ALL: readonly EngineName[] = ['docker', 'podman', 'podman-rootless'];

/**
 * The engines to test, all three by default. HM_TEST_ENGINES=docker,podman narrows a local run
 * (an unknown name throws rather than silently testing less).
 */
export function engineTargets(env: NodeJS.ProcessEnv = process.env): EngineTarget[] {
  const wanted = env.HM_TEST_ENGINES?.split(',').map((s) => s.trim()).filter(Boolean) ?? [...ALL];
  for (const w of wanted) if (!ALL.includes(w as EngineName)) throw new Error(`HM_TEST_ENGINES: unknown engine "${w}" (known: ${ALL.join(', ')})`);
  return ALL.filter((n) => wanted.includes(n)).map((n) => engineTarget(n, env));
}

const cache = new Map<EngineName, string | undefined>();

/** Why `name` cannot be used (its socket does not answer GET /_ping with OK), or undefined when it can. */
export function engineMissing(name: EngineName): string | undefined {
  if (!cache.has(name)) {
    const target = engineTarget(name);
    let reason: string | undefined;
    try {
      const body = execFileSync('curl', ['-sS', '--max-time', '5', '--unix-socket', target.socketPath, 'http://d/_ping'], { stdio: 'pipe', timeout: 10_000 }).toString();
      if (body.trim() !== 'OK') reason = `answered /_ping with "${body.trim().slice(0, 80)}"`;
    } catch (err) {
      reason = (err as { stderr?: Buffer }).stderr?.toString().trim() || String(err);
    }
    const fix = name === 'docker' ? 'install docker.io and start dockerd; .ci/run does this' : 'bash scripts/setup.sh installs Podman; bash scripts/podman-services.sh start serves it';
    cache.set(name, reason === undefined ? undefined : `${name} engine at ${target.socketPath} does not answer (${reason}); ${fix}`);
  }
  return cache.get(name);
}

/**
 * True when the test may go on with engine `name`. Otherwise: under CI=true throws (the test
 * fails); locally marks the test skipped with the reason, printed to stderr.
 */
export function requireEngine(t: TestContext, name: EngineName): boolean {
  const reason = engineMissing(name);
  if (!reason) return true;
  if (process.env.CI === 'true') throw new Error(`required component missing under CI=true: ${reason}`);
  process.stderr.write(`\n*** SKIPPING "${t.name}": ${reason} ***\n`);
  t.skip(reason);
  return false;
}
