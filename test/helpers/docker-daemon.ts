// Stops the Docker daemon for a while and starts it again, the way it runs on this machine:
// through systemd when it manages docker, otherwise by re-running dockerd's own command line
// (scripts/setup.sh starts it in the background). Resolves once `docker info` answers again.
import { execFileSync, spawn } from 'node:child_process';
import { openSync, readFileSync } from 'node:fs';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function ok(cmd: string, args: string[]): boolean {
  try {
    execFileSync(cmd, args, { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

async function until(what: string, check: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(200);
  }
}

export async function restartDockerDaemon(downMs: number): Promise<void> {
  if (ok('systemctl', ['is-active', '--quiet', 'docker'])) {
    execFileSync('systemctl', ['stop', 'docker.socket', 'docker'], { stdio: 'ignore' });
    await sleep(downMs);
    execFileSync('systemctl', ['start', 'docker'], { stdio: 'ignore' });
  } else {
    const pid = execFileSync('pgrep', ['-x', 'dockerd']).toString().trim().split('\n')[0]!;
    const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
    process.kill(Number(pid), 'SIGTERM');
    await until('dockerd to exit', () => !ok('kill', ['-0', pid]), 90_000);
    await sleep(downMs);
    const log = openSync('/var/log/hivemind-dockerd.log', 'a');
    spawn(argv[0]!, argv.slice(1), { detached: true, stdio: ['ignore', log, log] }).unref();
  }
  await until('docker info', () => ok('docker', ['info']), 60_000);
}
