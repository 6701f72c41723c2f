// The `hivemind` CLI as processes inside a NetLab host's namespace: for the tunnel tests and
// the tunnel benchmark.
import type { ChildProcess } from 'node:child_process';
import type { NetLab } from './netns.js';
import { CLI } from './cli-process.js';

export interface NsProc {
  child: ChildProcess;
  /** stdout and stderr so far. */
  output: string;
}

/** `cli`: the CLI entry script to run, this build's by default (the upgrade test runs an older one). */
export function startInNs(lab: NetLab, host: string, args: string[], env: NodeJS.ProcessEnv, cli = CLI): NsProc {
  const child = lab.spawn(host, process.execPath, [cli, ...args], { env });
  const p: NsProc = { child, output: '' };
  child.stdout!.on('data', (d: Buffer) => (p.output += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (p.output += d.toString()));
  return p;
}

export function runInNs(lab: NetLab, host: string, args: string[], env: NodeJS.ProcessEnv, cli = CLI): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    const p = startInNs(lab, host, args, env, cli);
    p.child.on('close', (code) => resolve({ code: code ?? -1, out: p.output }));
  });
}

/** SIGTERM (the drain), then SIGKILL after `graceMs`. */
export async function stopInNs(p: NsProc | undefined, graceMs = 20_000): Promise<void> {
  if (!p || p.child.exitCode !== null || p.child.signalCode !== null) return;
  p.child.kill('SIGTERM');
  await new Promise<void>((resolve) => {
    const t = setTimeout(() => p.child.kill('SIGKILL'), graceMs);
    p.child.once('exit', () => {
      clearTimeout(t);
      resolve();
    });
  });
}
