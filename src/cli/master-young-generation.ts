// The master's young generation: `hivemind master start` runs with V8 semi-spaces of
// MASTER_SEMI_SPACE_MB, whatever launched it (the npm bin, bin/hivemind, the standalone executable).
//
// V8 sizes a heap's semi-spaces from the machine's memory (64 MiB each on a 24 GiB machine) and
// reads the size only when the process starts. A scavenge copies what is alive in them, and at
// 10,000 nodes the state that a burst of enrolments or submissions creates is alive when it runs:
// scavenges of 65-95 ms held the master's loop (docs/benchmarks.md, "The main thread's young
// generation, and what holds the loop now"). With 8 MiB semi-spaces they stay under ~55 ms, at the
// price of more of them.
//
// The size can only be set on node's command line (--max-semi-space-size) or in NODE_OPTIONS, not
// from the script, so the master replaces its own process once, at start, with the same command
// and the flag: execve(2), the same pid, the same open stdio, nothing left running in between.
// Where that cannot be done (Windows, a Node without process.execve) the master runs as started.
// A flag given by the operator (on node's command line or in NODE_OPTIONS) is kept as given.
import module from 'node:module';
import { isSea } from 'node:sea';

/** The master's semi-space size, MiB (V8's young generation is three of them). */
export const MASTER_SEMI_SPACE_MB = 8;

/** Set in the replaced process's environment: it never replaces itself a second time. */
export const REEXEC_MARK = 'HIVEMIND_MASTER_HEAP';

/** What the decision reads of the running process. */
export interface ProcessView {
  execPath: string;
  /** node's own options on its command line (not the script's). */
  execArgv: readonly string[];
  argv: readonly string[];
  env: Readonly<Record<string, string | undefined>>;
  /** Running as a single executable application (argv[1] is the executable again, not a script). */
  isSea: boolean;
  /** process.execve exists here (POSIX, Node >= 22.15). */
  canExecve: boolean;
}

/** The command to replace the process with. */
export interface Reexec {
  file: string;
  args: string[];
  env: Record<string, string>;
}

const FLAG = /^--max[-_]semi[-_]space[-_]size(=|$)/;

/**
 * The command that runs this master again with MASTER_SEMI_SPACE_MB semi-spaces, or undefined
 * when it should run as it is: the size is already set (by us or by the operator), or the process
 * cannot be replaced here.
 */
export function youngGenerationReexec(p: ProcessView, semiSpaceMb = MASTER_SEMI_SPACE_MB): Reexec | undefined {
  if (!p.canExecve || p.env[REEXEC_MARK]) return undefined;
  const nodeOptions = p.env.NODE_OPTIONS ?? '';
  if (p.execArgv.some((a) => FLAG.test(a)) || nodeOptions.split(/\s+/).some((a) => FLAG.test(a))) return undefined;
  const flag = `--max-semi-space-size=${semiSpaceMb}`;
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(p.env)) if (v !== undefined) env[k] = v;
  env[REEXEC_MARK] = String(semiSpaceMb);
  // A single executable takes node's options from NODE_OPTIONS (its default execArgvExtension),
  // and its argv[1] is itself: the user's arguments start at argv[2].
  if (p.isSea) {
    env.NODE_OPTIONS = nodeOptions ? `${nodeOptions} ${flag}` : flag;
    return { file: p.execPath, args: [p.execPath, ...p.argv.slice(2)], env };
  }
  return { file: p.execPath, args: [p.execPath, flag, ...p.execArgv, ...p.argv.slice(1)], env };
}

/**
 * Replaces this process as youngGenerationReexec says, or returns when it says to run as it is.
 * Called before the master opens anything: execve keeps the pid and stdio, and the descriptors
 * Node opens close on exec. The compile cache is written first, so the replaced process uses it.
 */
export function replaceForYoungGeneration(): void {
  const plan = youngGenerationReexec({
    execPath: process.execPath,
    execArgv: process.execArgv,
    argv: process.argv,
    env: process.env,
    isSea: isSea(),
    canExecve: typeof process.execve === 'function',
  });
  if (!plan) return;
  module.flushCompileCache?.();
  process.execve!(plan.file, plan.args, plan.env);
}
