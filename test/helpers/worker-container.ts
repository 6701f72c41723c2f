// Runs the worker's Docker image (Dockerfile, scripts/worker-image.sh) the way a user does:
// `docker run` with the image's own entrypoint (tini, then hivemind as its child), so signals,
// the healthcheck and the exit code are the image's. Containers are labelled and removed by close().
import { runProcess, waitFor, type CliResult } from './cli-process.js';

export const WORKER_IMAGE = 'hivemind/worker:latest';
const LABEL = 'io.hivemind.test=worker-image';

/** Runs `docker ARGS` and collects its output; never rejects on a non-zero exit. */
export function docker(args: string[], timeoutMs = 60_000): Promise<CliResult> {
  return runProcess('docker', args, { timeoutMs, what: `docker ${args.join(' ')}` });
}

/** `docker run --rm IMAGE ARGS` with the host's Docker socket: one-shot commands of the image. */
export function runOnce(args: string[], runArgs: string[] = [], timeoutMs = 60_000): Promise<CliResult> {
  return docker(['run', '--rm', '--label', LABEL, '-v', '/var/run/docker.sock:/var/run/docker.sock', ...runArgs, WORKER_IMAGE, ...args], timeoutMs);
}

export class WorkerContainer {
  private constructor(readonly name: string) {}

  /** `docker run -d` of the image with the host's Docker socket; `runArgs` go before the image, `args` to hivemind. */
  static async start(args: string[], runArgs: string[] = []): Promise<WorkerContainer> {
    const name = `hm-image-test-${process.pid}-${Date.now().toString(36)}`;
    const c = new WorkerContainer(name);
    const r = await docker(['run', '-d', '--name', name, '--label', LABEL, '-v', '/var/run/docker.sock:/var/run/docker.sock', ...runArgs, WORKER_IMAGE, ...args]);
    if (r.code !== 0) {
      await c.close();
      throw new Error(`docker run failed: ${r.stderr}`);
    }
    return c;
  }

  /** `hivemind ARGS` run with docker exec, as the container's user. */
  hivemind(args: string[], timeoutMs = 120_000): Promise<CliResult> {
    return docker(['exec', this.name, 'hivemind', ...args], timeoutMs);
  }

  sh(script: string, env: Record<string, string> = {}): Promise<CliResult> {
    return docker(['exec', ...Object.entries(env).flatMap(([k, v]) => ['-e', `${k}=${v}`]), this.name, 'sh', '-c', script]);
  }

  /** The container's whole output (the worker logs to it). */
  async logs(): Promise<string> {
    const r = await docker(['logs', this.name]);
    return r.stdout + r.stderr;
  }

  async inspect(format: string): Promise<string> {
    const r = await docker(['inspect', '-f', format, this.name]);
    if (r.code !== 0) throw new Error(`docker inspect ${this.name}: ${r.stderr}`);
    return r.stdout.trim();
  }

  async close(): Promise<void> {
    await docker(['rm', '-f', this.name]).catch(() => undefined);
  }
}

/** Starts `hivemind dev` in the image and waits until it says it is up; its worker's node id. */
export async function startDev(runArgs: string[]): Promise<{ c: WorkerContainer; nodeId: string }> {
  const c = await WorkerContainer.start(['dev', '--report-interval', '1s'], runArgs);
  try {
    const logs = await waitFor('hivemind dev to be up in the container', async () => {
      const out = await c.logs();
      if (out.includes('HiveMind dev is up') || (await c.inspect('{{.State.Running}}')) !== 'true') return out;
      return undefined;
    }, 60_000, 250);
    const nodeId = /HiveMind dev is up: .* worker ([0-9a-f]+),/.exec(logs)?.[1];
    if (!nodeId) throw new Error(`hivemind dev did not come up:\n${logs}`);
    return { c, nodeId };
  } catch (err) {
    await c.close();
    throw err;
  }
}
