// The narrow boundary to the operating system's WireGuard and network tools: run a program with
// arguments (never through a shell) and optional standard input. execa in production, a
// recording fake in unit tests.
import { execa } from 'execa';
import { HivemindError } from '../common/errors.js';

export interface CommandResult {
  stdout: string;
  stderr: string;
  exitCode: number;
}

export interface CommandRunner {
  /** Resolves with the result whatever the exit code; rejects only when the program cannot start. */
  run(file: string, args: readonly string[], opts?: { input?: string; timeoutMs?: number }): Promise<CommandResult>;
}

/** The program is not installed (or not on PATH); callers turn it into what to install. */
export class ProgramNotFoundError extends HivemindError {
  constructor(readonly file: string, options?: { cause?: unknown }) {
    super('PROGRAM_NOT_FOUND', `${file}: not found`, options);
  }
}

export const execaRunner: CommandRunner = {
  async run(file, args, opts = {}) {
    try {
      const r = await execa(file, [...args], {
        reject: false,
        input: opts.input,
        timeout: opts.timeoutMs ?? 30_000,
        stdin: opts.input === undefined ? 'ignore' : 'pipe',
        env: { LC_ALL: 'C' },
      });
      if ((r as { code?: string }).code === 'ENOENT' || /ENOENT/.test(String((r as { originalMessage?: string }).originalMessage ?? ''))) throw new ProgramNotFoundError(file);
      return { stdout: String(r.stdout ?? ''), stderr: String(r.stderr ?? ''), exitCode: r.exitCode ?? (r.failed ? 1 : 0) };
    } catch (err) {
      if (err instanceof ProgramNotFoundError) throw err;
      if ((err as { code?: string }).code === 'ENOENT') throw new ProgramNotFoundError(file, { cause: err });
      throw err;
    }
  },
};
