// WireGuard for Windows: the official tunnel service (`wireguard.exe /installtunnelservice` reads
// a wg-quick file) and `wg.exe` for peers and status. The file holds the private key, so it lives
// in the node's data dir, which is readable by Administrators and SYSTEM only.
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ProgramNotFoundError, type CommandRunner } from './command-runner.js';
import { TunnelCommandError, TunnelPermissionError, WireGuardMissingError } from './tunnel-errors.js';
import { WG_NAME_RE, parseWgDump, renderWgConf, renderWgQuickConf, wgSetArgs, type WgInterfaceSpec, type WgInterfaceStatus, type WgPeerChange } from './wg-spec.js';
import type { WgImplementation, WireGuardTool } from './wireguard-tool.js';

export interface WindowsWireGuardOptions {
  /** Directory for the tunnel's .conf file (inside the data dir). */
  confDir: string;
  /** Default: C:\Program Files\WireGuard */
  installDir?: string;
}

export class WindowsWireGuard implements WireGuardTool {
  private readonly wireguardExe: string;
  private readonly wgExe: string;

  constructor(private readonly runner: CommandRunner, private readonly opts: WindowsWireGuardOptions) {
    const dir = opts.installDir ?? 'C:\\Program Files\\WireGuard';
    this.wireguardExe = `${dir}\\wireguard.exe`;
    this.wgExe = `${dir}\\wg.exe`;
  }

  confPath(name: string): string {
    return join(this.opts.confDir, `${name}.conf`);
  }

  private async must(file: string, args: string[]): Promise<string> {
    let r;
    try {
      r = await this.runner.run(file, args);
    } catch (err) {
      if (err instanceof ProgramNotFoundError) throw new WireGuardMissingError(file, 'install WireGuard for Windows (https://www.wireguard.com/install/) or pass its folder');
      throw err;
    }
    if (r.exitCode !== 0) {
      const detail = (r.stderr || r.stdout).trim() || `exit code ${r.exitCode}`;
      if (/Access is denied|elevat/i.test(detail)) throw new TunnelPermissionError(`${file} ${args.join(' ')}: ${detail}`);
      throw new TunnelCommandError(`${file} ${args.join(' ')}`, detail);
    }
    return r.stdout;
  }

  async up(spec: WgInterfaceSpec): Promise<WgImplementation> {
    checkName(spec.name);
    const path = this.confPath(spec.name);
    await writeFile(path, renderWgQuickConf(spec), { mode: 0o600 });
    // Reinstalling is how the service picks up a changed file; a missing service is fine.
    await this.runner.run(this.wireguardExe, ['/uninstalltunnelservice', spec.name]).catch(() => undefined);
    await this.must(this.wireguardExe, ['/installtunnelservice', path]);
    return 'windows-service';
  }

  async syncPeers(spec: WgInterfaceSpec): Promise<void> {
    checkName(spec.name);
    const tmp = join(this.opts.confDir, `${spec.name}.peers.conf`);
    await writeFile(tmp, renderWgConf(spec), { mode: 0o600 });
    try {
      await this.must(this.wgExe, ['syncconf', spec.name, tmp]);
      await writeFile(this.confPath(spec.name), renderWgQuickConf(spec), { mode: 0o600 });
    } finally {
      await rm(tmp, { force: true });
    }
  }

  /**
   * Live change through wg.exe; the service's .conf file is not rewritten here: the caller holds
   * the whole spec and up() writes it again on the next (re)start.
   */
  async updatePeers(name: string, change: WgPeerChange): Promise<void> {
    checkName(name);
    for (const args of wgSetArgs(name, change)) await this.must(this.wgExe, args);
  }

  async show(name: string): Promise<WgInterfaceStatus | undefined> {
    checkName(name);
    let r;
    try {
      r = await this.runner.run(this.wgExe, ['show', name, 'dump']);
    } catch (err) {
      if (err instanceof ProgramNotFoundError) throw new WireGuardMissingError(this.wgExe, 'install WireGuard for Windows');
      throw err;
    }
    if (r.exitCode !== 0) return undefined;
    return parseWgDump(r.stdout);
  }

  async down(name: string): Promise<void> {
    checkName(name);
    const r = await this.runner.run(this.wireguardExe, ['/uninstalltunnelservice', name]).catch(() => undefined);
    if (r && r.exitCode !== 0 && !/not (installed|found)|does not exist/i.test(r.stderr + r.stdout)) {
      throw new TunnelCommandError(`wireguard.exe /uninstalltunnelservice ${name}`, (r.stderr || r.stdout).trim());
    }
    await rm(this.confPath(name), { force: true });
  }
}

function checkName(name: string): void {
  if (!WG_NAME_RE.test(name)) throw new TunnelCommandError('wireguard', `"${name}" is not a valid tunnel name (letters, digits, - and _, at most 15)`);
}
