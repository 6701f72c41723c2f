// Picks the WireGuard implementation for the platform (production wiring only).
import { execaRunner, type CommandRunner } from './command-runner.js';
import { LinuxWireGuard } from './linux-wireguard.js';
import { WindowsWireGuard } from './windows-wireguard.js';
import type { WireGuardTool } from './wireguard-tool.js';

export function createWireGuardTool(confDir: string, platform: NodeJS.Platform = process.platform, runner: CommandRunner = execaRunner): WireGuardTool {
  return platform === 'win32' ? new WindowsWireGuard(runner, { confDir }) : new LinuxWireGuard(runner);
}
