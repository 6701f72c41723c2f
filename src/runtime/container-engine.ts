// The narrow view of a container engine that the task runner needs. DockerEngine implements it
// with dockerode; unit tests use hand-written fakes. Field names follow the Docker Engine API so
// that the implementation passes them through unchanged.
import type { Readable } from 'node:stream';
import type { ExecOptions, ExecProcess } from './exec-process.js';
import type { EngineReport } from './engine-identity.js';

/** The subset of Docker's container-create body the runner sets (Engine API v1.41). */
export interface ContainerCreateConfig {
  name: string;
  Image: string;
  Cmd?: string[];
  Env: string[];
  Labels: Record<string, string>;
  User: string;
  Hostname?: string;
  NetworkDisabled: boolean;
  AttachStdin: false;
  AttachStdout: boolean;
  AttachStderr: boolean;
  Tty: false;
  OpenStdin: false;
  HostConfig: {
    NanoCpus: number;
    Memory: number;
    MemorySwap: number;
    PidsLimit: number;
    /** The OCI runtime the engine starts it with: absent = the engine's default (runc); `runsc` = gVisor. */
    Runtime?: 'runsc';
    DeviceRequests?: Array<{ Driver: string; DeviceIDs: string[]; Capabilities: string[][] }>;
    /** 'none', or the node's egress network for a task that asked for it (egress-network.ts). */
    NetworkMode: string;
    /** Resolvers of an egress task (public ones: it reaches nothing private). */
    Dns?: string[];
    Sysctls?: Record<string, string>;
    ReadonlyRootfs: boolean;
    Tmpfs: Record<string, string>;
    CapDrop: ['ALL'];
    CapAdd: [];
    SecurityOpt: string[];
    Privileged: false;
    IpcMode: 'private';
    /** Size of /dev/shm in bytes. */
    ShmSize: number;
    /** Volumes (/input, /output) and, read-only, the task's data sets from the node's cache (bind). Never `Binds`. */
    Mounts: Array<{ Type: 'volume' | 'bind'; Source: string; Target: string; ReadOnly: boolean }>;
    LogConfig: { Type: string; Config: Record<string, string> };
    AutoRemove: false;
  };
}

export interface PullProgress {
  currentBytes: number;
  totalBytes: number;
}

export interface ContainerExit {
  statusCode: number;
  /** The engine's error for a container that could not run (rare; usually empty). */
  error?: string;
}

export interface ContainerState {
  status: string;
  running: boolean;
  oomKilled: boolean;
  exitCode: number;
  error: string;
  startedAt?: string;
  finishedAt?: string;
  /** The host pid of its main process while it runs (a replica's connector enters its network namespace). */
  pid?: number;
}

/** A volume or bind of a container, as the engine reports it: `source` is the path on the engine's host. */
export interface ContainerMount {
  type: string;
  source: string;
  destination: string;
}

export interface ContainerInfo {
  id: string;
  name: string;
  labels: Record<string, string>;
  state: ContainerState;
  /** Its volumes and binds (absent from engines that do not say). */
  mounts?: ContainerMount[];
  /** The limits as the engine recorded them, for checks and diagnostics. */
  hostConfig: Record<string, unknown>;
  /** Its IPv4 address on each network it is attached to (none for a container without network). */
  addresses?: Record<string, string>;
}

export interface ContainerSummary {
  id: string;
  names: string[];
  labels: Record<string, string>;
  state: string;
}

export interface VolumeSummary {
  name: string;
  labels: Record<string, string>;
}

/** An image as the engine knows it; several references (tags, digests) may name one image id. */
export interface ImageInfo {
  id: string;
  /** Its tags in Docker's familiar form, e.g. `alpine:3.20`, `ghcr.io/org/app:1`. */
  repoTags: string[];
  /** Its registry digests, e.g. `alpine@sha256:…`. */
  repoDigests: string[];
  /** Bytes of all its layers, including layers it shares with other images. */
  sizeBytes: number;
}

export interface EngineVersion {
  version: string;
  apiVersion: string;
  os: string;
  arch: string;
}

/** Raw usage counters of a running container (one engine sample, no averaging). */
export interface ContainerStats {
  /** Total CPU time the container used, in ns. */
  cpuTotalNs: number;
  /** Total CPU time of the host, in ns (the denominator for a CPU share). */
  systemCpuNs: number;
  onlineCpus: number;
  /** Memory in use without the reclaimable page cache, as `docker stats` shows it. */
  memoryBytes: number;
}

/** Receives a container's output message by message, each with Docker's time of it (ns). */
export interface LogSink {
  stdout(data: Buffer, atNs: bigint): void;
  stderr(data: Buffer, atNs: bigint): void;
}

export interface ContainerEngine {
  ping(signal?: AbortSignal): Promise<void>;
  version(signal?: AbortSignal): Promise<EngineVersion>;
  /** The names of the OCI runtimes registered with the engine (`docker info`'s Runtimes), e.g. runc, runsc. */
  runtimes(signal?: AbortSignal): Promise<string[]>;
  /** What the engine says of itself (/version, /info, Podman's /libpod/info): engine-identity.ts decides which it is. */
  describe(signal?: AbortSignal): Promise<EngineReport>;

  imageExists(image: string, signal?: AbortSignal): Promise<boolean>;
  /** Pulls an image, reporting summed layer progress. Throws EngineError with the engine's message. */
  pullImage(image: string, onProgress: (p: PullProgress) => void, signal?: AbortSignal): Promise<void>;
  /** Imports a rootfs tarball as an image (`docker import`). */
  importImage(rootfsTar: Readable, repo: string, tag: string, signal?: AbortSignal): Promise<void>;
  /** The image a reference resolves to; undefined when the engine has none by that reference. */
  inspectImage(image: string, signal?: AbortSignal): Promise<ImageInfo | undefined>;
  /**
   * Removes an image reference, never forced: the image itself goes with its last reference. A
   * reference that is already gone is success; a reference a container (even a stopped one)
   * still needs fails with ImageInUseError.
   */
  removeImage(image: string, signal?: AbortSignal): Promise<void>;

  /** Creates a volume; `driverOpts` are the local driver's (`type`, `device`, `o`) for a volume on a device. */
  createVolume(name: string, labels: Record<string, string>, signal?: AbortSignal, driverOpts?: Record<string, string>): Promise<void>;
  /** Removes a volume; a missing volume is success. */
  removeVolume(name: string, signal?: AbortSignal): Promise<void>;
  listVolumes(labelFilters: string[], signal?: AbortSignal): Promise<VolumeSummary[]>;

  /** Creates a container and returns its id. */
  createContainer(config: ContainerCreateConfig, signal?: AbortSignal): Promise<string>;
  startContainer(id: string, signal?: AbortSignal): Promise<void>;
  /** Waits until the container exits. Aborting stops the wait, not the container. */
  waitContainer(id: string, signal?: AbortSignal): Promise<ContainerExit>;
  /**
   * Sends SIGTERM, then SIGKILL after `graceMs` (rounded up to whole seconds, Docker's unit), and
   * resolves once it stopped; a container that is already stopped or gone is success.
   */
  stopContainer(id: string, graceMs: number, signal?: AbortSignal): Promise<void>;
  /** Sends SIGKILL; a container that is already stopped or gone is success. */
  killContainer(id: string, signal?: AbortSignal): Promise<void>;
  /** Force-removes a container; a missing container is success. */
  removeContainer(id: string, signal?: AbortSignal): Promise<void>;
  inspectContainer(id: string, signal?: AbortSignal): Promise<ContainerInfo>;
  listContainers(labelFilters: string[], signal?: AbortSignal): Promise<ContainerSummary[]>;

  /** Extracts a tar stream into a directory of the container (which may be created, not started). */
  putArchive(id: string, path: string, tar: Readable, signal?: AbortSignal): Promise<void>;
  /** A tar stream of a path in the container. */
  getArchive(id: string, path: string, signal?: AbortSignal): Promise<Readable>;
  /** One sample of a running container's usage counters. */
  containerStats(id: string, signal?: AbortSignal): Promise<ContainerStats>;
  /**
   * Follows the container's logs from its start until it exits (Docker keeps a bounded log, so a
   * reattaching worker sees what it missed); resolves when the stream ends.
   */
  followLogs(id: string, sink: LogSink, signal?: AbortSignal): Promise<void>;
  /**
   * The last `keepLastBytes` of the output the engine still holds from `sinceNs` on (the engine's
   * time of a frame; frames of that time included), without following. A follower slower than the task loses output when the log file
   * rotates under it, the end included; this reads the end once the container has exited.
   */
  readLogsSince(id: string, sinceNs: bigint, keepLastBytes: number, signal?: AbortSignal): Promise<LogsSince>;
  /**
   * Starts a command in a running container (`docker exec`), unprivileged, as `options.user`: same
   * cgroup limits and namespaces as the container's own process. Resolves once it runs.
   */
  exec(id: string, options: ExecOptions, signal?: AbortSignal): Promise<ExecProcess>;
}

export interface LogsSince {
  /** In order, ending with the container's last output. */
  messages: { stream: 'stdout' | 'stderr'; data: Buffer; atNs: bigint }[];
  /** Output from `sinceNs` on left out to keep only the end. */
  skippedBytes: number;
}
