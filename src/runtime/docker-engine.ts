// ContainerEngine over the Docker Engine API (dockerode). Engine failures become EngineError with
// the engine's own message; 304/404 on kill/remove count as success; every call takes a signal.
import { setImmediate as nextTurn } from 'node:timers/promises';
import Docker from 'dockerode';
import type { Readable } from 'node:stream';
import { dockerRootedArchive } from './archive-root.js';
import { matchesLabelFilters } from './labels.js';
import { AbortedError, EngineError, EngineUnreachableError, ImageInUseError, errorMessage } from '../common/errors.js';
import type {
  ContainerCreateConfig,
  ContainerEngine,
  ContainerExit,
  ContainerInfo,
  ContainerStats,
  ContainerSummary,
  EngineVersion,
  ImageInfo,
  LogSink,
  LogsSince,
  PullProgress,
  VolumeSummary,
} from './container-engine.js';
import { LogFrameDecoder, type LogMessage } from './log-frames.js';
import { DockerExecProcess, type ExecOptions, type ExecProcess } from './exec-process.js';
import { dockerClient, type EngineSocket } from './engine-socket.js';
import { isPodman, type EngineReport } from './engine-identity.js';

/** The fields of GET /info that engine-identity.ts reads. */
interface DockerInfoFacts {
  CgroupVersion?: string;
  CgroupDriver?: string;
  SecurityOptions?: unknown[];
  MemoryLimit?: boolean;
  CpuCfsQuota?: boolean;
  PidsLimit?: boolean;
}

/** The fields of Podman's GET /libpod/info that engine-identity.ts reads. */
interface LibpodInfo {
  host?: { security?: { rootless?: boolean }; cgroupControllers?: unknown[] };
}

/** A GET outside dockerode's methods (Podman's own API), through its modem: same socket, same errors. */
function dialJson<T>(docker: Docker, path: string, signal: AbortSignal | undefined): Promise<T> {
  return new Promise((resolve, reject) => {
    const modem = docker.modem as unknown as { dial(o: object, cb: (err: unknown, data: unknown) => void): void };
    modem.dial({ path, method: 'GET', statusCodes: { 200: true, 404: 'not found', 500: 'server error' }, ...(signal ? { abortSignal: signal } : {}) }, (err, data) => (err ? reject(err) : resolve(data as T)));
  });
}

/** An EngineError that remembers the HTTP status the engine answered with (0 when none). */
export class EngineRequestError extends EngineError {
  constructor(message: string, readonly statusCode: number, options?: { cause?: unknown }) {
    super(message, options);
  }
}

export function isNotFound(err: unknown): boolean {
  return err instanceof EngineRequestError && err.statusCode === 404;
}

interface DockerodeError {
  statusCode?: number;
  json?: { message?: string } | string | null;
  message?: string;
  name?: string;
}

/** How much of a log body is decoded between two turns of the event loop. */
const LOG_DECODE_SLICE = 256 * 1024;
/** Socket errors meaning the daemon is not there (stopped, restarting, socket gone). */
const CONNECTION_LOST = new Set(['ECONNREFUSED', 'ECONNRESET', 'ENOENT', 'EPIPE']);

/**
 * Converts a dockerode failure into EngineRequestError (the engine answered), EngineUnreachableError
 * (it could not be reached), or AbortedError when the signal fired.
 */
export function toEngineError(err: unknown, what: string, signal?: AbortSignal): Error {
  if (err instanceof EngineError || err instanceof AbortedError) return err;
  const e = (err ?? {}) as DockerodeError;
  if (signal?.aborted || e.name === 'AbortError') return new AbortedError(`${what}: aborted`, { cause: signal?.reason ?? err });
  const engineMessage = typeof e.json === 'object' && e.json?.message ? e.json.message : typeof e.json === 'string' && e.json.trim() ? e.json.trim() : errorMessage(err);
  if (e.statusCode === undefined && (CONNECTION_LOST.has((err as NodeJS.ErrnoException).code ?? '') || /socket hang up/.test(engineMessage))) {
    return new EngineUnreachableError(`${what}: the Docker daemon is unreachable (${engineMessage})`, { cause: err });
  }
  return new EngineRequestError(`${what}: ${engineMessage}`, e.statusCode ?? 0, { cause: err });
}

export interface DockerEngineOptions {
  /** The engine's API socket (Docker or Podman); default: dockerode's own default (DOCKER_HOST or /var/run/docker.sock). */
  socket?: EngineSocket;
}

export class DockerEngine implements ContainerEngine {
  constructor(readonly docker: Docker) {}

  static create(opts: DockerEngineOptions = {}): DockerEngine {
    return new DockerEngine(opts.socket ? dockerClient(opts.socket) : new Docker());
  }

  private async call<T>(what: string, signal: AbortSignal | undefined, fn: () => Promise<T>, okStatus: number[] = []): Promise<T | undefined> {
    if (signal?.aborted) throw new AbortedError(`${what}: aborted`, { cause: signal.reason });
    try {
      return await fn();
    } catch (err) {
      const status = (err as DockerodeError | undefined)?.statusCode;
      if (status !== undefined && okStatus.includes(status)) return undefined;
      throw toEngineError(err, what, signal);
    }
  }

  async ping(signal?: AbortSignal): Promise<void> {
    await this.call('docker ping', signal, () => (this.docker.ping as (o: object) => Promise<unknown>).call(this.docker, { abortSignal: signal }));
  }

  async version(signal?: AbortSignal): Promise<EngineVersion> {
    const v = await this.call('docker version', signal, () => (this.docker.version as (o: object) => Promise<Docker.DockerVersion>).call(this.docker, { abortSignal: signal }));
    return { version: v!.Version, apiVersion: v!.ApiVersion, os: v!.Os, arch: v!.Arch };
  }

  async runtimes(signal?: AbortSignal): Promise<string[]> {
    const info = await this.call('docker info', signal, () => (this.docker.info as (o: object) => Promise<{ Runtimes?: Record<string, unknown> }>).call(this.docker, { abortSignal: signal }));
    return Object.keys(info?.Runtimes ?? {});
  }

  async describe(signal?: AbortSignal): Promise<EngineReport> {
    const v = (await this.call('engine version', signal, () => (this.docker.version as (o: object) => Promise<Docker.DockerVersion & { Components?: { Name?: string }[] }>).call(this.docker, { abortSignal: signal })))!;
    const info = (await this.call('engine info', signal, () => (this.docker.info as (o: object) => Promise<DockerInfoFacts>).call(this.docker, { abortSignal: signal }))) ?? {};
    const components = (v.Components ?? []).map((c) => String(c?.Name ?? ''));
    const report: EngineReport = {
      version: String(v.Version ?? ''),
      apiVersion: String(v.ApiVersion ?? ''),
      components,
      cgroupVersion: String(info.CgroupVersion ?? ''),
      cgroupDriver: String(info.CgroupDriver ?? ''),
      securityOptions: Array.isArray(info.SecurityOptions) ? info.SecurityOptions.map(String) : [],
      ...(typeof info.MemoryLimit === 'boolean' ? { memoryLimit: info.MemoryLimit } : {}),
      ...(typeof info.CpuCfsQuota === 'boolean' ? { cpuCfsQuota: info.CpuCfsQuota } : {}),
      ...(typeof info.PidsLimit === 'boolean' ? { pidsLimit: info.PidsLimit } : {}),
    };
    if (!isPodman(report)) return report;
    // Podman's own API says rootless and which cgroup controllers its containers get; its compat /info does not.
    const libpod = await this.call('podman info', signal, () => dialJson<LibpodInfo>(this.docker, '/v4.0.0/libpod/info', signal));
    const host = libpod?.host;
    return {
      ...report,
      podman: {
        rootless: host?.security?.rootless === true,
        ...(Array.isArray(host?.cgroupControllers) ? { cgroupControllers: host.cgroupControllers.map(String) } : {}),
      },
    };
  }

  async imageExists(image: string, signal?: AbortSignal): Promise<boolean> {
    const found = await this.call(`inspect image ${image}`, signal, () => { const img = this.docker.getImage(image); return (img.inspect as (o: object) => Promise<unknown>).call(img, { abortSignal: signal }); }, [404]);
    return found !== undefined;
  }

  async pullImage(image: string, onProgress: (p: PullProgress) => void, signal?: AbortSignal): Promise<void> {
    const what = `pull ${image}`;
    const stream = (await this.call(what, signal, () => this.docker.pull(image, { abortSignal: signal }) as Promise<Readable>))!;
    // Progress is per layer; the sum over layers is what a user wants to see.
    const layers = new Map<string, { current: number; total: number }>();
    await readJsonMessages(stream, what, signal, (msg) => {
      const detail = msg.progressDetail as { current?: number; total?: number } | undefined;
      if (typeof msg.id === 'string' && detail && typeof detail.total === 'number' && detail.total > 0) {
        layers.set(msg.id, { current: detail.current ?? 0, total: detail.total });
        let current = 0;
        let total = 0;
        for (const l of layers.values()) {
          current += l.current;
          total += l.total;
        }
        onProgress({ currentBytes: current, totalBytes: total });
      }
    });
  }

  async importImage(rootfsTar: Readable, repo: string, tag: string, signal?: AbortSignal): Promise<void> {
    const what = `import image ${repo}:${tag}`;
    // The tag inside `repo`: Podman ignores the separate `tag` parameter of an import (the image
    // came out as repo:latest); Docker takes either form.
    const stream = (await this.call(what, signal, () => this.docker.importImage(rootfsTar, { repo: `${repo}:${tag}`, abortSignal: signal } as object)))!;
    await readJsonMessages(stream as Readable, what, signal, () => {});
  }

  async inspectImage(image: string, signal?: AbortSignal): Promise<ImageInfo | undefined> {
    const i = await this.call(`inspect image ${image}`, signal, () => { const img = this.docker.getImage(image); return (img.inspect as (o: object) => Promise<Docker.ImageInspectInfo>).call(img, { abortSignal: signal }); }, [404]);
    if (!i) return undefined;
    return { id: i.Id, repoTags: i.RepoTags ?? [], repoDigests: i.RepoDigests ?? [], sizeBytes: i.Size };
  }

  async removeImage(image: string, signal?: AbortSignal): Promise<void> {
    try {
      // No force: an image a container still needs must stay, whoever made that container.
      await this.call(`remove image ${image}`, signal, () => this.docker.getImage(image).remove({ force: false, noprune: false, abortSignal: signal }), [404]);
    } catch (err) {
      if (err instanceof EngineRequestError && err.statusCode === 409) throw new ImageInUseError(err.message, { cause: err });
      throw err;
    }
  }

  async createVolume(name: string, labels: Record<string, string>, signal?: AbortSignal, driverOpts?: Record<string, string>): Promise<void> {
    const body = { Name: name, Labels: labels, ...(driverOpts ? { Driver: 'local', DriverOpts: driverOpts } : {}), abortSignal: signal };
    await this.call(`create volume ${name}`, signal, () => this.docker.createVolume(body as Docker.VolumeCreateOptions));
  }

  async removeVolume(name: string, signal?: AbortSignal): Promise<void> {
    await this.call(`remove volume ${name}`, signal, () => this.docker.getVolume(name).remove({ abortSignal: signal }), [404]);
  }

  async listVolumes(labelFilters: string[], signal?: AbortSignal): Promise<VolumeSummary[]> {
    const res = await this.call('list volumes', signal, () => this.docker.listVolumes({ filters: JSON.stringify({ label: labelFilters }), abortSignal: signal }));
    return (res?.Volumes ?? []).map((v) => ({ name: v.Name, labels: v.Labels ?? {} })).filter((v) => matchesLabelFilters(v.labels, labelFilters));
  }

  async createContainer(config: ContainerCreateConfig, signal?: AbortSignal): Promise<string> {
    const c = await this.call(`create container ${config.name}`, signal, () => this.docker.createContainer({ ...config, abortSignal: signal } as Docker.ContainerCreateOptions));
    return c!.id;
  }

  async startContainer(id: string, signal?: AbortSignal): Promise<void> {
    await this.call(`start container ${short(id)}`, signal, () => this.docker.getContainer(id).start({ abortSignal: signal }), [304]);
  }

  async waitContainer(id: string, signal?: AbortSignal): Promise<ContainerExit> {
    const r = (await this.call(`wait for container ${short(id)}`, signal, () => this.docker.getContainer(id).wait({ abortSignal: signal })))! as { StatusCode: number; Error?: { Message?: string } | null };
    const exit: ContainerExit = { statusCode: r.StatusCode };
    if (r.Error?.Message) exit.error = r.Error.Message;
    return exit;
  }

  async stopContainer(id: string, graceMs: number, signal?: AbortSignal): Promise<void> {
    const t = Math.max(0, Math.ceil(graceMs / 1000));
    await this.call(`stop container ${short(id)}`, signal, () => this.docker.getContainer(id).stop({ t, abortSignal: signal }), [304, 404]);
  }

  async killContainer(id: string, signal?: AbortSignal): Promise<void> {
    try {
      await this.call(`kill container ${short(id)}`, signal, () => this.docker.getContainer(id).kill({ abortSignal: signal }), [304, 404]);
    } catch (err) {
      // 409: the container is not running, which is what a kill wants.
      if (err instanceof EngineRequestError && err.statusCode === 409) return;
      throw err;
    }
  }

  async removeContainer(id: string, signal?: AbortSignal): Promise<void> {
    await this.call(`remove container ${short(id)}`, signal, () => this.docker.getContainer(id).remove({ force: true, v: false, abortSignal: signal }), [304, 404]);
  }

  async inspectContainer(id: string, signal?: AbortSignal): Promise<ContainerInfo> {
    const i = (await this.call(`inspect container ${short(id)}`, signal, () => this.docker.getContainer(id).inspect({ abortSignal: signal })))!;
    const state: ContainerInfo['state'] = {
      status: i.State.Status,
      running: i.State.Running,
      oomKilled: i.State.OOMKilled,
      exitCode: i.State.ExitCode,
      error: i.State.Error ?? '',
    };
    if (i.State.StartedAt) state.startedAt = i.State.StartedAt;
    if (i.State.FinishedAt) state.finishedAt = i.State.FinishedAt;
    if (i.State.Running && i.State.Pid > 0) state.pid = i.State.Pid;
    const mounts = (i.Mounts ?? []).map((m) => ({ type: String(m.Type ?? ''), source: m.Source ?? '', destination: m.Destination ?? '' }));
    const addresses: Record<string, string> = {};
    for (const [net, n] of Object.entries(i.NetworkSettings?.Networks ?? {})) if (n?.IPAddress) addresses[net] = n.IPAddress;
    return { id: i.Id, name: i.Name.replace(/^\//, ''), labels: i.Config.Labels ?? {}, state, hostConfig: i.HostConfig as unknown as Record<string, unknown>, mounts, addresses };
  }

  async listContainers(labelFilters: string[], signal?: AbortSignal): Promise<ContainerSummary[]> {
    const list = await this.call('list containers', signal, () => this.docker.listContainers({ all: true, filters: JSON.stringify({ label: labelFilters }), abortSignal: signal }));
    return (list ?? []).map((c) => ({ id: c.Id, names: c.Names.map((n) => n.replace(/^\//, '')), labels: c.Labels ?? {}, state: c.State })).filter((c) => matchesLabelFilters(c.labels, labelFilters));
  }

  async putArchive(id: string, path: string, tar: Readable, signal?: AbortSignal): Promise<void> {
    await this.call(`copy into ${path} of container ${short(id)}`, signal, () => this.docker.getContainer(id).putArchive(tar, { path, abortSignal: signal }));
  }

  async getArchive(id: string, path: string, signal?: AbortSignal): Promise<Readable> {
    const s = await this.call(`copy ${path} out of container ${short(id)}`, signal, () => this.docker.getContainer(id).getArchive({ path, abortSignal: signal }));
    return dockerRootedArchive(s as unknown as Readable, path);
  }

  async containerStats(id: string, signal?: AbortSignal): Promise<ContainerStats> {
    // one-shot: no 1 s wait for a second sample; the caller keeps the previous one.
    const container = this.docker.getContainer(id);
    const stats = container.stats as (o: object) => Promise<unknown>;
    const st = (await this.call(`stats of container ${short(id)}`, signal, () =>
      stats.call(container, { stream: false, 'one-shot': true, abortSignal: signal }),
    )) as DockerStats;
    const mem = st.memory_stats ?? {};
    const memStats = mem.stats ?? {};
    // cgroup v1 counts page cache in usage; v2 names it inactive_file. Same rule as `docker stats`.
    const cache = memStats.total_inactive_file ?? memStats.inactive_file ?? 0;
    return {
      cpuTotalNs: st.cpu_stats?.cpu_usage?.total_usage ?? 0,
      systemCpuNs: st.cpu_stats?.system_cpu_usage ?? 0,
      onlineCpus: st.cpu_stats?.online_cpus || st.cpu_stats?.cpu_usage?.percpu_usage?.length || 1,
      memoryBytes: Math.max(0, (mem.usage ?? 0) - cache),
    };
  }

  async readLogsSince(id: string, sinceNs: bigint, keepLastBytes: number, signal?: AbortSignal): Promise<LogsSince> {
    const what = `logs of container ${short(id)}`;
    // `since` is in seconds (fractions allowed): the engine answers from that time, frames at it included
    // (Podman stamps frames to the second: many share the time of the last one seen live)
    const since = `${sinceNs / 1_000_000_000n}.${String(sinceNs % 1_000_000_000n).padStart(9, '0')}`;
    const body = (await this.call(what, signal, () =>
      this.docker.getContainer(id).logs({ follow: false, since, stdout: true, stderr: true, timestamps: true, abortSignal: signal } as unknown as Docker.ContainerLogsOptions & { follow: false }),
    )) as unknown as Buffer;
    // Only the end is kept; the body (up to the engine's log cap) is decoded in slices, yielding
    // between them, so that a flood's megabytes never stall the worker's reports.
    const kept: LogMessage[] = [];
    let keptBytes = 0;
    let skippedBytes = 0;
    const frames = new LogFrameDecoder((m) => {
      if (m.atNs < sinceNs) return;
      kept.push(m);
      keptBytes += m.data.length;
      while (keptBytes > keepLastBytes && kept.length > 1) {
        const old = kept.shift()!;
        keptBytes -= old.data.length;
        skippedBytes += old.data.length;
      }
    });
    for (let at = 0; at < body.length; at += LOG_DECODE_SLICE) {
      frames.push(body.subarray(at, at + LOG_DECODE_SLICE));
      await nextTurn();
    }
    return { messages: kept, skippedBytes };
  }

  async exec(id: string, options: ExecOptions, signal?: AbortSignal): Promise<ExecProcess> {
    return (await this.call(`exec in container ${short(id)}`, signal, () => DockerExecProcess.start(this.docker.getContainer(id), options, signal)))!;
  }

  async followLogs(id: string, sink: LogSink, signal?: AbortSignal): Promise<void> {
    const what = `logs of container ${short(id)}`;
    const stream = (await this.call(what, signal, () =>
      this.docker.getContainer(id).logs({ follow: true, stdout: true, stderr: true, timestamps: true, abortSignal: signal } as unknown as Docker.ContainerLogsOptions & { follow: true }),
    )) as unknown as Readable;
    const frames = new LogFrameDecoder((m) => sink[m.stream](m.data, m.atNs));
    stream.on('data', (d: Buffer) => frames.push(d));
    await new Promise<void>((resolve, reject) => {
      stream.once('end', resolve);
      stream.once('close', resolve);
      stream.once('error', (err) => reject(toEngineError(err, what, signal)));
    });
  }
}

/** The fields of the Engine API's stats answer that the worker reads. */
interface DockerStats {
  cpu_stats?: { cpu_usage?: { total_usage?: number; percpu_usage?: number[] }; system_cpu_usage?: number; online_cpus?: number };
  memory_stats?: { usage?: number; stats?: { total_inactive_file?: number; inactive_file?: number } };
}

function short(id: string): string {
  return /^[0-9a-f]{64}$/.test(id) ? id.slice(0, 12) : id;
}

/** Reads a JSON-lines progress stream (pull/import), failing on the first error message in it. */
async function readJsonMessages(stream: Readable, what: string, signal: AbortSignal | undefined, onMessage: (m: Record<string, unknown>) => void): Promise<void> {
  let rest = '';
  const onAbort = () => stream.destroy(new AbortedError(`${what}: aborted`, { cause: signal?.reason }));
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    for await (const chunk of stream) {
      rest += String(chunk);
      const lines = rest.split('\n');
      rest = lines.pop() ?? '';
      for (const line of lines) handle(line);
    }
    handle(rest);
  } catch (err) {
    throw toEngineError(err, what, signal);
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }

  function handle(line: string): void {
    if (!line.trim()) return;
    let msg: Record<string, unknown>;
    try {
      msg = JSON.parse(line) as Record<string, unknown>;
    } catch {
      return;
    }
    const detail = msg.errorDetail as { message?: string } | undefined;
    if (typeof msg.error === 'string' || detail?.message) throw new EngineRequestError(`${what}: ${detail?.message ?? String(msg.error)}`, 0);
    onMessage(msg);
  }
}
