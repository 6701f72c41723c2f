// WireGuard on Linux through wireguard-tools and iproute2: the kernel module when it is there,
// otherwise the userspace wireguard-go. The private key reaches `wg` on standard input only.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { errorMessage } from '../common/errors.js';
import { ProgramNotFoundError, type CommandResult, type CommandRunner } from './command-runner.js';
import { TunnelCommandError, TunnelPermissionError, TunnelPortInUseError, WireGuardMissingError } from './tunnel-errors.js';
import { DEFAULT_MTU, WG_NAME_RE, parseWgDump, renderWgConf, wgSetArgs, type WgInterfaceSpec, type WgInterfaceStatus, type WgPeerChange } from './wg-spec.js';
import type { WgImplementation, WireGuardTool } from './wireguard-tool.js';

// wireguard-go's interfaces have no kernel side: `wg` says "Unable to access interface" when the socket is gone.
const NO_DEVICE = /No such device|Cannot find device|does not exist|Unable to access interface/i;
const NO_KERNEL_SUPPORT = /Unknown device type|Operation not supported|Not supported|Protocol not supported/i;
const NO_PERMISSION = /Operation not permitted|Permission denied/i;

export class LinuxWireGuard implements WireGuardTool {
  constructor(private readonly runner: CommandRunner) {}

  private async exec(file: string, args: string[], opts: { input?: string } = {}): Promise<CommandResult> {
    try {
      return await this.runner.run(file, args, opts);
    } catch (err) {
      if (err instanceof ProgramNotFoundError) {
        if (file === 'wg') throw new WireGuardMissingError('wg (wireguard-tools)', 'install the wireguard-tools package (apt-get install wireguard-tools / dnf install wireguard-tools)');
        if (file === 'ip') throw new WireGuardMissingError('ip (iproute2)', 'install the iproute2 package');
        if (file === 'wireguard-go') throw new WireGuardMissingError('the WireGuard kernel module and wireguard-go', 'load the wireguard kernel module (modprobe wireguard) or install wireguard-go (apt-get install wireguard-go)');
      }
      throw err;
    }
  }

  private async must(file: string, args: string[], opts: { input?: string; port?: number } = {}): Promise<CommandResult> {
    const r = await this.exec(file, args, opts);
    if (r.exitCode === 0) return r;
    const detail = (r.stderr || r.stdout).trim() || `exit code ${r.exitCode}`;
    if (NO_PERMISSION.test(detail)) throw new TunnelPermissionError(`${file} ${args.join(' ')}: ${detail}`);
    if (/Address already in use/i.test(detail)) throw new TunnelPortInUseError(opts.port ?? 0, detail);
    throw new TunnelCommandError(`${file} ${args.join(' ')}`, detail);
  }

  async up(spec: WgInterfaceSpec): Promise<WgImplementation> {
    checkName(spec.name);
    await this.must('wg', ['--version']);
    let impl: WgImplementation = 'kernel';
    const exists = (await this.exec('ip', ['link', 'show', 'dev', spec.name])).exitCode === 0;
    if (!exists) {
      const add = await this.exec('ip', ['link', 'add', 'dev', spec.name, 'type', 'wireguard']);
      if (add.exitCode !== 0) {
        const detail = add.stderr.trim();
        if (NO_PERMISSION.test(detail)) throw new TunnelPermissionError(`ip link add ${spec.name}: ${detail}`);
        if (!NO_KERNEL_SUPPORT.test(detail)) throw new TunnelCommandError(`ip link add dev ${spec.name} type wireguard`, detail);
        impl = 'userspace';
        await this.must('wireguard-go', [spec.name]);
      }
    } else if ((await this.exec('ip', ['-d', 'link', 'show', 'dev', spec.name])).stdout.includes('wireguard') === false) {
      impl = 'userspace';
    }
    try {
      await this.withConfFile(spec, (file) => this.must('wg', ['setconf', spec.name, file], { port: spec.listenPort }));
      await this.must('ip', ['-4', 'address', 'flush', 'dev', spec.name]);
      await this.must('ip', ['-4', 'address', 'add', spec.address, 'dev', spec.name]);
      await this.must('ip', ['link', 'set', 'dev', spec.name, 'mtu', String(spec.mtu ?? DEFAULT_MTU), 'up']);
    } catch (err) {
      // Leave nothing half-made behind.
      if (!exists) await this.down(spec.name).catch(() => undefined);
      throw err;
    }
    return impl;
  }

  async syncPeers(spec: WgInterfaceSpec): Promise<void> {
    checkName(spec.name);
    await this.withConfFile(spec, (file) => this.must('wg', ['syncconf', spec.name, file], { port: spec.listenPort }));
  }

  async updatePeers(name: string, change: WgPeerChange): Promise<void> {
    checkName(name);
    for (const args of wgSetArgs(name, change)) await this.must('wg', args);
  }

  /**
   * `wg` reads the config (with the private key) from a file: a 0600 file in a fresh 0700
   * directory, removed as soon as `wg` has read it. (/dev/stdin is a socket under Node's spawn,
   * which `wg` cannot open.)
   */
  private async withConfFile<T>(spec: WgInterfaceSpec, fn: (file: string) => Promise<T>): Promise<T> {
    const dir = await mkdtemp(join(tmpdir(), 'hivemind-wg-'));
    try {
      const file = join(dir, `${spec.name}.conf`);
      await writeFile(file, renderWgConf(spec), { mode: 0o600 });
      return await fn(file);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  async show(name: string): Promise<WgInterfaceStatus | undefined> {
    checkName(name);
    const r = await this.exec('wg', ['show', name, 'dump']);
    if (r.exitCode !== 0) {
      if (NO_DEVICE.test(r.stderr)) return undefined;
      throw new TunnelCommandError(`wg show ${name} dump`, r.stderr.trim() || `exit code ${r.exitCode}`);
    }
    return parseWgDump(r.stdout);
  }

  async down(name: string): Promise<void> {
    checkName(name);
    const r = await this.exec('ip', ['link', 'del', 'dev', name]);
    if (r.exitCode === 0 || NO_DEVICE.test(r.stderr)) return;
    throw new TunnelCommandError(`ip link del dev ${name}`, r.stderr.trim() || errorMessage(r.exitCode));
  }
}

function checkName(name: string): void {
  if (!WG_NAME_RE.test(name)) throw new TunnelCommandError('wireguard', `"${name}" is not a valid interface name (letters, digits, - and _, at most 15)`);
}
