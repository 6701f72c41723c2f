// A process's CPU time and memory from /proc (Linux): how bench:scale measures the master from
// outside, without asking it. Parsing is pure; ProcessMeter reads the files.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

/** CPU ticks of a process from /proc/PID/stat: user and system time of the process itself. */
export function parseProcStat(text: string): { utime: number; stime: number } {
  // The command name (field 2) is in parentheses and may hold spaces and ')': fields count from the last ')'.
  const close = text.lastIndexOf(')');
  if (close < 0) throw new Error(`not a /proc/PID/stat line: ${text.slice(0, 80)}`);
  const fields = text.slice(close + 2).trim().split(/\s+/);
  // After the name: state is field 3, so utime (field 14) and stime (15) are at 11 and 12.
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  if (!Number.isFinite(utime) || !Number.isFinite(stime)) throw new Error(`no utime/stime in /proc/PID/stat: ${text.slice(0, 80)}`);
  return { utime, stime };
}

/** A "Name:   1234 kB" field of /proc/PID/status in bytes (undefined when absent). */
export function parseStatusBytes(text: string, field: 'VmRSS' | 'VmHWM'): number | undefined {
  const m = new RegExp(`^${field}:\\s+(\\d+)\\s+kB`, 'm').exec(text);
  return m ? Number(m[1]) * 1024 : undefined;
}

export interface ProcSample {
  /** Milliseconds of CPU the process used since it started. */
  cpuMs: number;
  rssBytes: number;
  /** Its peak resident set so far (VmHWM). */
  peakRssBytes: number;
  atMs: number;
}

export class ProcessMeter {
  private constructor(
    private readonly pid: number,
    private readonly ticksPerSecond: number,
  ) {}

  static create(pid: number): ProcessMeter {
    let hz = 100;
    try {
      hz = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      // getconf missing: 100 is Linux's USER_HZ on every common architecture
    }
    return new ProcessMeter(pid, hz);
  }

  sample(): ProcSample {
    const stat = parseProcStat(readFileSync(`/proc/${this.pid}/stat`, 'utf8'));
    const status = readFileSync(`/proc/${this.pid}/status`, 'utf8');
    return {
      cpuMs: ((stat.utime + stat.stime) * 1000) / this.ticksPerSecond,
      rssBytes: parseStatusBytes(status, 'VmRSS') ?? 0,
      peakRssBytes: parseStatusBytes(status, 'VmHWM') ?? 0,
      atMs: performance.now(),
    };
  }
}

/** CPU % (of one core) between two samples. */
export function cpuPercent(from: ProcSample, to: ProcSample): number {
  const wall = to.atMs - from.atMs;
  return wall > 0 ? ((to.cpuMs - from.cpuMs) / wall) * 100 : 0;
}
