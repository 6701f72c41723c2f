// Writes a fake `nvidia-smi` executable into a temp dir, for testing the GPU probe through a
// real process spawn without NVIDIA hardware. It prints the documented CSV for 2 GPUs.
import { mkdtemp, rm, writeFile, chmod } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

/** index, uuid, name, memory.total, memory.used, utilization.gpu, temperature.gpu, power.draw (MiB, %, C, W). */
export const FAKE_GPU_CSV = [
  '0, GPU-11111111-2222-3333-4444-555555555555, NVIDIA GeForce RTX 4090, 24564, 1024, 37, 45, 120.50',
  '1, GPU-66666666-7777-8888-9999-000000000000, NVIDIA A100-SXM4-80GB, 81920, 0, 0, 31, [N/A]',
].join('\n');

export interface FakeNvidiaSmi {
  /** Directory holding the executable; put it first on PATH. */
  dir: string;
  /** File where each invocation's arguments are appended (one line per call). */
  argsFile: string;
  cleanup(): Promise<void>;
}

export async function createFakeNvidiaSmi(opts: { csv?: string; exitCode?: number; stderr?: string } = {}): Promise<FakeNvidiaSmi> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'hm-fake-nvsmi-'));
  const argsFile = path.join(dir, 'args.log');
  const csvFile = path.join(dir, 'out.csv');
  await writeFile(csvFile, (opts.csv ?? FAKE_GPU_CSV) + '\n');
  const script = [
    '#!/bin/sh',
    `echo "$*" >> '${argsFile}'`,
    opts.exitCode ? `echo '${opts.stderr ?? 'NVIDIA-SMI has failed'}' >&2; exit ${opts.exitCode}` : `cat '${csvFile}'`,
    '',
  ].join('\n');
  const exe = path.join(dir, 'nvidia-smi');
  await writeFile(exe, script);
  await chmod(exe, 0o755);
  return { dir, argsFile, cleanup: () => rm(dir, { recursive: true, force: true }) };
}
