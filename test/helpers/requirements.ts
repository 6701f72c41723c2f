// Gates for tests that need real infrastructure. Under CI=true a missing component FAILS the
// test (CI must install it); locally the test is skipped with a loud reason.
import type { TestContext } from 'node:test';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const isCI = process.env.CI === 'true';

function probe(check: () => boolean): boolean {
  try {
    return check();
  } catch {
    return false;
  }
}

const cache = new Map<string, string | undefined>();

function missing(name: string, check: () => boolean, fix: string): string | undefined {
  if (!cache.has(name)) cache.set(name, probe(check) ? undefined : `${name} is not available (${fix})`);
  return cache.get(name);
}

/**
 * Returns true when the test may go on. Otherwise: under CI throws (the test fails),
 * locally marks the test skipped with the reason and prints it to stderr.
 */
function gate(t: TestContext, reason: string | undefined): boolean {
  if (!reason) return true;
  if (isCI) throw new Error(`required component missing under CI=true: ${reason}`);
  process.stderr.write(`\n*** SKIPPING "${t.name}": ${reason} ***\n`);
  t.skip(reason);
  return false;
}

export function dockerMissing(): string | undefined {
  return missing('Docker daemon', () => {
    execFileSync('docker', ['info', '--format', '{{.ServerVersion}}'], { stdio: 'pipe', timeout: 10_000 });
    return true;
  }, 'install docker.io and start dockerd; .ci/run does this');
}

export function requireDocker(t: TestContext): boolean {
  return gate(t, dockerMissing());
}

export function requireDockerImage(t: TestContext, image: string): boolean {
  if (!requireDocker(t)) return false;
  return gate(t, missing(`Docker image ${image}`, () => {
    execFileSync('docker', ['image', 'inspect', image], { stdio: 'pipe', timeout: 10_000 });
    return true;
  }, 'bash scripts/setup.sh builds the local images'));
}

/** The worker's Docker image, built by scripts/worker-image.sh (scripts/setup.sh runs it). */
export function requireWorkerImage(t: TestContext, image = 'hivemind/worker:latest'): boolean {
  if (!requireDocker(t)) return false;
  return gate(t, missing(`Docker image ${image}`, () => {
    execFileSync('docker', ['image', 'inspect', image], { stdio: 'pipe', timeout: 10_000 });
    return true;
  }, 'run bash scripts/worker-image.sh (after npm run build:exe); scripts/setup.sh does both'));
}

export function requireWireGuard(t: TestContext): boolean {
  return gate(t, missing('WireGuard tools', () => {
    execFileSync('wg', ['--version'], { stdio: 'pipe' });
    execFileSync('wireguard-go', ['--version'], { stdio: 'pipe' });
    return true;
  }, 'apt-get install wireguard-tools wireguard-go'));
}

export function requireNetns(t: TestContext): boolean {
  return gate(t, missing('network namespaces', () => {
    const name = `hm-probe-${process.pid}`;
    execFileSync('ip', ['netns', 'add', name], { stdio: 'pipe' });
    execFileSync('ip', ['netns', 'del', name], { stdio: 'pipe' });
    return true;
  }, 'needs root and iproute2'));
}

export function requireChromium(t: TestContext): boolean {
  return gate(t, missing('Chromium', () => existsSync('/usr/bin/chromium'), 'apt-get install chromium'));
}

export function requireShellcheck(t: TestContext): boolean {
  return gate(t, missing('shellcheck', () => {
    execFileSync('shellcheck', ['--version'], { stdio: 'pipe' });
    return true;
  }, 'apt-get install shellcheck; scripts/setup.sh does this'));
}

/** util-linux `script`, which runs a command on a pseudo-terminal (the CLI's terminal output). */
export function requireScript(t: TestContext): boolean {
  return gate(t, missing('script', () => {
    execFileSync('script', ['--version'], { stdio: 'pipe' });
    return true;
  }, 'apt-get install bsdutils (util-linux)'));
}

/** The exec terminal test drives a real terminal: a tmux pane (send-keys, capture-pane). */
export function requireTmux(t: TestContext): boolean {
  return gate(t, missing('tmux', () => {
    execFileSync('tmux', ['-V'], { stdio: 'pipe' });
    return true;
  }, 'apt-get install tmux'));
}

/** Mounting a tmpfs (a small disk that fills up) needs root. */
export function requireMount(t: TestContext): boolean {
  return gate(t, missing('tmpfs mounts', () => {
    const dir = `/tmp/hm-mount-probe-${process.pid}`;
    execFileSync('mkdir', ['-p', dir]);
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', dir], { stdio: 'pipe' });
      execFileSync('umount', [dir], { stdio: 'pipe' });
      return true;
    } finally {
      execFileSync('rmdir', [dir]);
    }
  }, 'needs root'));
}

/** The standalone Linux executable under test: env HM_TEST_EXE, else dist-exe/hivemind-linux-x64. */
export function executablePath(env: NodeJS.ProcessEnv = process.env): string {
  // dist/test/helpers/ → the repository root
  return env.HM_TEST_EXE || join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'dist-exe', 'hivemind-linux-x64');
}

export function requireExecutable(t: TestContext): boolean {
  const exe = executablePath();
  return gate(t, missing(`standalone executable ${exe}`, () => existsSync(exe), 'run npm run build:exe, or point HM_TEST_EXE at one'));
}

/** Each of `files` (paths) made by `npm run build:exe`. */
export function requireBuiltFiles(t: TestContext, files: readonly string[]): boolean {
  return gate(t, missing(`the build:exe outputs ${files.join(', ')}`, () => files.every((f) => existsSync(f)), 'run npm run build:exe (setup.sh does)'));
}

/** The upgrade test builds an earlier commit of this repository: it needs the git history. */
export function requireCommit(t: TestContext, commit: string): boolean {
  return gate(t, missing(`commit ${commit}`, () => {
    execFileSync('git', ['-C', join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..'), 'cat-file', '-e', `${commit}^{commit}`], { stdio: 'pipe' });
    return true;
  }, 'the upgrade test builds it from git history: clone without --depth, or `git fetch --unshallow`'));
}

/** promtool: scripts/setup.sh extracts it from Debian's prometheus package into .tools/promtool/ (not installed). */
export function promtoolPath(): string {
  const local = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', '.tools', 'promtool', 'promtool');
  return existsSync(local) ? local : 'promtool';
}

export function requirePromtool(t: TestContext): boolean {
  return gate(t, missing('promtool', () => {
    execFileSync(promtoolPath(), ['--version'], { stdio: 'pipe', timeout: 10_000 });
    return true;
  }, 'bash scripts/setup.sh puts it at .tools/promtool/promtool'));
}

/** The test PostgreSQL cluster (scripts/test-postgres.sh; HIVEMIND_TEST_PG overrides where it is). */
export function requirePostgres(t: TestContext, url: string | undefined): boolean {
  return gate(t, url ? undefined : 'the test PostgreSQL (bash scripts/test-postgres.sh starts it; .ci/run does this)');
}

/** gVisor: Docker's `runsc` runtime registered (scripts/setup.sh installs and registers it) and a container starting under it. */
export function requireGvisor(t: TestContext): boolean {
  if (!requireDocker(t)) return false;
  return gate(t, missing('gVisor (Docker runtime runsc)', () => {
    const runtimes = execFileSync('docker', ['info', '--format', '{{json .Runtimes}}'], { stdio: 'pipe', timeout: 10_000 }).toString();
    if (!runtimes.includes('"runsc"')) return false;
    execFileSync('docker', ['run', '--rm', '--runtime', 'runsc', '--network', 'none', 'hivemind/busybox:1', 'true'], { stdio: 'pipe', timeout: 60_000 });
    return true;
  }, 'apt-get install runsc and register it with --network=none: bash scripts/setup.sh does both (.ci/run runs it)'));
}
