// NVIDIA GPUs through nvidia-smi's CSV query interface. A node without nvidia-smi simply has
// no GPUs; that is the common case, not an error.
import { execa } from 'execa';
import { HivemindError } from '../../common/errors.js';
import type { GpuSample } from './resource-probe.js';

export const NVIDIA_SMI_ARGS = [
  '--query-gpu=index,uuid,name,memory.total,memory.used,utilization.gpu,temperature.gpu,power.draw',
  '--format=csv,noheader,nounits',
];

const MIB = 1024 * 1024;

/** nvidia-smi is installed but failed (driver not loaded, NVML mismatch...). */
export class GpuProbeError extends HivemindError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('GPU_PROBE_FAILED', message, options);
  }
}

/** A numeric CSV field, or undefined for "[N/A]", "N/A", "[Not Supported]", empty, or junk. */
function num(field: string | undefined): number | undefined {
  if (field === undefined) return undefined;
  const s = field.trim();
  if (s === '' || /^\[?(n\/a|not supported|unknown error)\]?$/i.test(s)) return undefined;
  const v = Number(s);
  return Number.isFinite(v) ? v : undefined;
}

/**
 * Parses `nvidia-smi --query-gpu=... --format=csv,noheader,nounits` output. Lines without a
 * usable index are skipped rather than failing the whole report: one broken GPU must not
 * hide the others.
 */
export function parseNvidiaSmiCsv(stdout: string): GpuSample[] {
  const gpus: GpuSample[] = [];
  for (const raw of stdout.split(/\r?\n/)) {
    const line = raw.trim();
    if (!line) continue;
    const f = line.split(',').map((s) => s.trim());
    // GPU names may in theory contain commas; the 6 trailing numeric fields are fixed, so
    // everything between uuid and them is the name.
    if (f.length < 8) continue;
    const tail = f.slice(f.length - 5);
    const index = num(f[0]);
    if (index === undefined || !Number.isInteger(index) || index < 0) continue;
    const memTotal = num(tail[0]);
    const memUsed = num(tail[1]);
    const sample: GpuSample = {
      index,
      uuid: f[1] ?? '',
      name: f.slice(2, f.length - 5).join(','),
      memoryTotalBytes: memTotal === undefined ? 0 : Math.round(memTotal * MIB),
    };
    if (memUsed !== undefined) sample.memoryUsedBytes = Math.round(memUsed * MIB);
    const util = num(tail[2]);
    if (util !== undefined) sample.utilizationPercent = util;
    const temp = num(tail[3]);
    if (temp !== undefined) sample.temperatureC = temp;
    const power = num(tail[4]);
    if (power !== undefined) sample.powerW = power;
    gpus.push(sample);
  }
  return gpus.sort((a, b) => a.index - b.index);
}

export interface GpuProbeOptions {
  /** The executable; resolved on PATH. */
  command?: string;
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
}

/**
 * Runs nvidia-smi and returns the GPUs. Not on PATH => []. Present but failing (driver not
 * loaded, NVML mismatch) => GpuProbeError, so the caller can log why GPUs vanished.
 */
export async function probeGpus(opts: GpuProbeOptions = {}): Promise<GpuSample[]> {
  try {
    const res = await execa(opts.command ?? 'nvidia-smi', NVIDIA_SMI_ARGS, {
      timeout: opts.timeoutMs ?? 10_000,
      env: opts.env ?? process.env,
      extendEnv: false,
      stdin: 'ignore',
    });
    return parseNvidiaSmiCsv(String(res.stdout));
  } catch (err) {
    if ((err as { code?: unknown }).code === 'ENOENT') return [];
    const e = err as { shortMessage?: string; stderr?: unknown };
    const detail = typeof e.stderr === 'string' && e.stderr.trim() ? e.stderr.trim() : (e.shortMessage ?? String(err));
    throw new GpuProbeError(`nvidia-smi failed: ${detail}`, { cause: err });
  }
}
