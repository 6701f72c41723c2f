// Bounds what a task can write to /output while it runs: each attempt's /output is a filesystem
// of its own, made in a sparse image file of the output cap plus a small slack and attached to a
// loop device, that Docker's local volume driver mounts. A writer past the end gets ENOSPC from
// the kernel, so at most the image's size ever reaches the host disk.
import { execFile } from 'node:child_process';
import { mkdir, open, readdir, readFile, rm, rmdir } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { HivemindError, errorMessage } from '../common/errors.js';

/** Docker local-driver options (`docker volume create -o type=… -o device=…`). */
export type VolumeDriverOptions = Record<string, string>;

/**
 * How the engine gets an attempt's /output filesystem: a volume it mounts itself from local-driver
 * options (Docker), or a host directory the worker mounted, bound in (Podman: it does not mount a
 * volume that has options for a stopped container's archive copy, and rootless Podman cannot
 * mount a block device at all).
 */
export type OutputFsAttachment = { driverOptions: VolumeDriverOptions } | { hostPath: string };

/** The backing storage of per-attempt /output volumes; the runner's only view of it. */
export interface OutputVolumes {
  /**
   * Makes the backing filesystem of volume `name`, able to hold `capBytes` (and up to
   * `maxEntries` entries) and nothing much beyond, its root owned by the task user, and returns
   * how the engine attaches it (undefined: a plain volume, root's). Throws OutputFsUnavailableError when this host
   * cannot make one.
   */
  create(name: string, capBytes: number, maxEntries: number): Promise<OutputFsAttachment | undefined>;
  /** Frees the backing storage of a volume Docker no longer uses; a missing one is success. */
  release(name: string): Promise<void>;
  /** Names of the volumes whose backing storage is on this host (for the reclaim after a crash). */
  list(): Promise<string[]>;
  /** Whether the volume's backing storage is still attached (a reattach after a host reboot finds it gone). */
  attached(name: string): Promise<boolean>;
}

/** What makes loop filesystems possible, for the startup error and doctor. */
export const OUTPUT_FS_FIX =
  'run the worker as root on Linux with loop devices (/dev/loop-control) and e2fsprogs (mkfs.ext4, debugfs) installed; as a container, pass it the loop devices: --device /dev/loop-control and --device /dev/loopN for each existing /dev/loopN (or --privileged -v /dev:/dev)';

/** This host cannot make a bounded /output (no loop devices, not root, tools missing). */
export class OutputFsUnavailableError extends HivemindError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('OUTPUT_FS_UNAVAILABLE', message, options);
  }
}

const KiB = 1024;
const MiB = 1024 ** 2;
/** Bytes per inode in the filesystems made here (ext4's default size; 128 is deprecated). */
const INODE_BYTES = 256;

/** The shape of the filesystem for an output cap: its inode count and its size in bytes. */
export interface OutputFsLayout {
  inodes: number;
  /** The image's size: the most the attempt's /output can ever take on the host disk. */
  bytes: number;
}

/**
 * The filesystem for a cap: one inode per 8 KiB of cap (at least 1024, at most the entry cap),
 * and room for the cap plus its metadata (the inode tables), 1/64 of the cap for 1 KiB block
 * rounding, and 2 MiB. So data space is always more than the cap: a task that filled it wrote
 * more than the cap, and the check after exit names the cap. ≈ 3.3 MiB for 1 MiB, +4.3% at 1 GiB.
 */
export function outputFsLayout(capBytes: number, maxEntries: number): OutputFsLayout {
  const inodes = Math.min(Math.max(Math.ceil(capBytes / (8 * KiB)), 1024), maxEntries + 16);
  const raw = capBytes + inodes * INODE_BYTES + Math.floor(capBytes / 64) + 2 * MiB;
  return { inodes, bytes: Math.ceil(raw / KiB) * KiB };
}

/** Where a worker keeps its /output images: in its data dir, on the disk the operator sized for it. */
export function outputFsDir(dataDir: string): string {
  return join(dataDir, 'output-fs');
}

/** Runs a program, resolving with its stdout; rejects with its stderr in the message. */
export type RunTool = (file: string, args: string[]) => Promise<string>;

const execFileP = promisify(execFile);
// mkfs.ext4, debugfs and losetup live in sbin, which a non-login PATH may lack.
const TOOL_PATH = [process.env.PATH, '/usr/sbin', '/sbin'].filter(Boolean).join(':');
const runTool: RunTool = async (file, args) => (await execFileP(file, args, { timeout: 60_000, env: { ...process.env, PATH: TOOL_PATH } })).stdout;

const IMAGE_SUFFIX = '.img';
const MOUNT_SUFFIX = '.mnt';
/** Volume names become file names: keep them to Docker's volume-name alphabet. */
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

/**
 * Output filesystems as ext4 images under `dir`, attached with `losetup` (needs root and
 * /dev/loop-control, i.e. Linux with the worker outside a container, or in one given the loop
 * devices: dockerd mounts the /dev/loopN that losetup attached in the container, the same device).
 * ext4 without a journal (nothing to replay: a crashed attempt's output is discarded), 1 KiB
 * blocks so small files waste little, root owned by the task user, no lost+found in the result.
 */
export class LoopOutputVolumes implements OutputVolumes {
  /**
   * `owner`: the host ids of the task user (a rootless engine maps the container's 65534 to a
   * subordinate id). `mountOnHost`: mount each filesystem at `<dir>/<name>.mnt` for a bind mount
   * instead of handing the engine the device (Podman); with a rootless engine `dir` must be a
   * shared mount made before the engine's namespace (scripts/podman-services.sh makes one) and
   * reachable by its user.
   */
  constructor(
    private readonly dir: string,
    private readonly run: RunTool = runTool,
    private readonly sysBlock = '/sys/block',
    private readonly owner = { uid: 65534, gid: 65534 },
    private readonly mountOnHost = false,
  ) {}

  mountPath(name: string): string {
    return `${this.imagePath(name).slice(0, -IMAGE_SUFFIX.length)}${MOUNT_SUFFIX}`;
  }

  imagePath(name: string): string {
    if (!NAME_RE.test(name)) throw new Error(`output volume name "${name}" is not a plain name`);
    return join(this.dir, `${name}${IMAGE_SUFFIX}`);
  }

  async create(name: string, capBytes: number, maxEntries: number): Promise<OutputFsAttachment> {
    const file = this.imagePath(name);
    const layout = outputFsLayout(capBytes, maxEntries);
    await this.release(name); // an earlier process's leftover of the same attempt
    try {
      // A rootless engine resolves the bind source as its own user: it must be able to pass through.
      await mkdir(this.dir, { recursive: true, mode: this.mountOnHost ? 0o711 : 0o700 });
      const fh = await open(file, 'wx', 0o600);
      try {
        await fh.truncate(layout.bytes); // sparse: blocks are taken only as the task writes
      } finally {
        await fh.close();
      }
      await this.step('mkfs.ext4', ['-q', '-F', '-b', '1024', '-m', '0', '-N', String(layout.inodes), '-O', '^has_journal,^resize_inode', '-E', `root_owner=${this.owner.uid}:${this.owner.gid}`, file]);
      await this.step('debugfs', ['-w', '-R', 'rmdir lost+found', file]);
      const device = (await this.step('losetup', ['--find', '--show', file])).trim();
      if (!/^\/dev\/loop\d+$/.test(device)) throw new OutputFsUnavailableError(`losetup printed "${device}", not a loop device`);
      if (!this.mountOnHost) return { driverOptions: { type: 'ext4', device, o: 'nosuid,nodev' } };
      const at = this.mountPath(name);
      await mkdir(at, { mode: 0o700 });
      await this.step('mount', ['-t', 'ext4', '-o', 'nosuid,nodev,noexec', device, at]);
      return { hostPath: at };
    } catch (err) {
      await this.release(name).catch(() => undefined);
      throw err;
    }
  }

  private async step(tool: string, args: string[]): Promise<string> {
    try {
      return await this.run(tool, args);
    } catch (err) {
      const e = err as NodeJS.ErrnoException & { stderr?: string };
      const why = e.code === 'ENOENT' ? `${tool} is not installed (package e2fsprogs / mount)` : (e.stderr?.trim() || errorMessage(err));
      throw new OutputFsUnavailableError(`cannot make a bounded /output filesystem: ${tool} failed: ${why}`, { cause: err });
    }
  }

  async release(name: string): Promise<void> {
    const file = this.imagePath(name);
    if (this.mountOnHost) {
      const at = this.mountPath(name);
      // Lazy: a container still holding it lets go later; rmdir (not rm -r) cannot reach into a mount.
      await this.run('umount', ['-l', at]).catch(() => undefined);
      await rmdir(at).catch(() => undefined);
    }
    for (const device of await this.devicesOf(file)) {
      // Docker unmounted it when the volume went; if something still holds it, the kernel
      // detaches it when that lets go.
      await this.run('losetup', ['-d', device]).catch(() => undefined);
    }
    await rm(file, { force: true });
  }

  async list(): Promise<string[]> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
    return names.filter((n) => n.endsWith(IMAGE_SUFFIX)).map((n) => n.slice(0, -IMAGE_SUFFIX.length));
  }

  async attached(name: string): Promise<boolean> {
    return (await this.devicesOf(this.imagePath(name))).length > 0;
  }

  /** Loop devices backed by `file`, read from sysfs (`/sys/block/loopN/loop/backing_file`). */
  private async devicesOf(file: string): Promise<string[]> {
    let entries: string[];
    try {
      entries = (await readdir(this.sysBlock)).filter((e) => /^loop\d+$/.test(e));
    } catch {
      return [];
    }
    const found: string[] = [];
    for (const e of entries) {
      const backing = await readFile(join(this.sysBlock, e, 'loop', 'backing_file'), 'utf8').catch(() => '');
      if (backing.trim().replace(/ \(deleted\)$/, '') === file) found.push(`/dev/${e}`);
    }
    return found;
  }

  /** Makes and frees a small image: whether this host can bound /output (for doctor and startup). */
  async probe(): Promise<{ ok: true } | { ok: false; reason: string }> {
    const name = `hivemind-probe-${process.pid}`;
    try {
      await this.create(name, MiB, 16);
      return { ok: true };
    } catch (err) {
      return { ok: false, reason: errorMessage(err) };
    } finally {
      await this.release(name).catch(() => undefined);
    }
  }
}

/**
 * Plain Docker volumes on the host disk: /output is checked against its cap only after the task
 * exits. Only `hivemind dev` (your own tasks on your own machine) and a worker whose operator set
 * allowUnboundedOutput fall back to this, and say so; any other worker refuses to start without a
 * bounded /output (output-volume-policy.ts).
 */
export class UnboundedOutputVolumes implements OutputVolumes {
  create(): Promise<undefined> {
    return Promise.resolve(undefined);
  }
  release(): Promise<void> {
    return Promise.resolve();
  }
  list(): Promise<string[]> {
    return Promise.resolve([]);
  }
  attached(): Promise<boolean> {
    return Promise.resolve(true);
  }
}
