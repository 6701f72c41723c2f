// The bounds of an exec session (docs/exec.md), one set for both ends that check them: the master
// checks a client's start and input, the node checks the master's again (it trusts no one's bound).
// Each check returns what is wrong, in words, or undefined; the caller adds its own error type.
import type { ExecInput, TerminalSize } from './gen/hivemind/v1/common.js';

export const EXEC_BOUNDS = {
  maxArgs: 64,
  maxCommandBytes: 8 * 1024,
  /** One stdin message; the client sends its stdin in pieces of this size. */
  maxStdinBytes: 64 * 1024,
  /** Columns and rows, each 1..maxTerminalSide. */
  maxTerminalSide: 1000,
} as const;

/** What is wrong with a command's argv, or undefined. */
export function execCommandProblem(argv: readonly string[]): string | undefined {
  const n = argv.length;
  if (n < 1 || n > EXEC_BOUNDS.maxArgs) return `the command has ${n} arguments; 1 to ${EXEC_BOUNDS.maxArgs} are allowed`;
  const bytes = argv.reduce((sum, a) => sum + Buffer.byteLength(a), 0);
  if (bytes > EXEC_BOUNDS.maxCommandBytes) return `the command is ${bytes} bytes, over the limit of ${EXEC_BOUNDS.maxCommandBytes}`;
  if (argv[0] === '') return "the command's first argument (the program) is empty";
  if (argv.some((a) => a.includes('\0'))) return 'an argument of the command contains a NUL byte';
  return undefined;
}

/** What is wrong with a terminal size, or undefined. */
export function terminalSizeProblem(size: TerminalSize): string | undefined {
  const max = EXEC_BOUNDS.maxTerminalSide;
  const ok = (n: number) => Number.isInteger(n) && n >= 1 && n <= max;
  return ok(size.cols) && ok(size.rows) ? undefined : `terminal size ${size.cols}x${size.rows} is out of bounds (1..${max} columns and rows)`;
}

/**
 * What is wrong with one message after the start, or undefined: a second start, stdin without
 * `-i` or over its bound, stdin after its end (when the caller tracks it), a size out of bounds, a
 * resize without a terminal (when the caller says whether there is one), an empty message.
 */
export function execInputProblem(input: ExecInput, session: { stdin: boolean; stdinClosed?: boolean; tty?: boolean }): string | undefined {
  const i = input.input;
  switch (i?.$case) {
    case 'start':
      return 'a second start in the session; start comes once, first';
    case 'stdin':
      if (!session.stdin) return 'stdin sent, but the start did not ask for stdin (-i)';
      if (session.stdinClosed) return 'stdin after its end';
      if (i.value.length > EXEC_BOUNDS.maxStdinBytes) return `a stdin message of ${i.value.length} bytes, over the limit of ${EXEC_BOUNDS.maxStdinBytes} per message`;
      return undefined;
    case 'stdinEof':
      return undefined;
    case 'resize':
      if (session.tty === false) return 'a resize without a terminal (-t)';
      return terminalSizeProblem(i.value);
    default:
      return 'an empty input message';
  }
}
