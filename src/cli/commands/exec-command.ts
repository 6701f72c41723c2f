// `hivemind exec TARGET [-i] [-t] -- CMD…`: a command in a running task's container, like
// `docker exec`. -i sends stdin (pipes work), -t gives it a terminal (raw mode here, window size
// and resizes sent); the exit code is the command's.
import type { Command } from 'commander';
import { activeMaster } from '../master-choice.js';
import { ConfigError, HivemindError } from '../../common/errors.js';
import { describeGrpcError } from '../../protocol/grpc-errors.js';
import { isMasterLoss } from '../../client/failover-policy.js';
import { runExec, type ExecIo } from '../../client/exec-client.js';
import type { CliContext } from '../cli-context.js';
import { ExecTerminal } from '../exec-terminal.js';
import { terminalSafe } from '../terminal-text.js';

/** Exit codes for signals that ended the client (128 + N, as a shell reports them). */
const SIGNAL_EXIT: Record<string, number> = { SIGINT: 130, SIGTERM: 143, SIGHUP: 129 };

/**
 * The master of an exec session went away (killed, or stepped down to standby). A session is a
 * live process on the node relayed by that master: it cannot move to another master, and running
 * the command again on its own could run it twice, so the user decides.
 */
export class ExecMasterLostError extends HivemindError {
  constructor(master: string, err: unknown) {
    super(
      'EXEC_MASTER_LOST',
      `exec: the session ended: its master ${master} went away (${describeGrpcError(err instanceof HivemindError && err.cause !== undefined ? err.cause : err)}); exec sessions do not move to another master ` +
        '(what the command did before is not undone); run `hivemind exec` again once a master is active',
      { cause: err },
    );
  }
}

export interface ExecFlags {
  interactive?: boolean;
  tty?: boolean;
}

/** Refuses what cannot work before anything is sent: no command, or -t without a terminal to drive it. */
export function checkExecFlags(command: readonly string[], o: ExecFlags, stdinIsTTY: boolean): void {
  if (command.length === 0) throw new ConfigError('exec: no command given; usage: hivemind exec TARGET [-i] [-t] -- CMD [ARG…]');
  if (o.tty && !stdinIsTTY) throw new ConfigError('exec: -t asks for a terminal, but stdin is not a terminal (in a pipe or a script, drop -t)');
}

export function registerExecCommand(program: Command, ctx: () => CliContext, setExit: (code: number) => void): void {
  program
    .command('exec')
    .description('run a command in a running task\'s container (TARGET: a task id, a service NAME or NAME/REPLICA)')
    .argument('<target>', 'task id, service NAME (replica 0) or NAME/REPLICA')
    .argument('[command...]', 'command and arguments (after --)')
    .option('-i, --interactive', 'send stdin to the command')
    .option('-t, --tty', 'give the command a terminal (raw mode here; needs stdin to be a terminal)')
    .option('--master <host:port,...>', 'master address, or several comma-separated: the first that answers as active (default: the `hivemind dev` master)')
    .option('--admin-token <token>', 'admin token (default: the `hivemind dev` master\'s)')
    .action(async (target: string, command: string[], o: ExecFlags & { master?: string; adminToken?: string }) => {
      const c = ctx();
      checkExecFlags(command, o, Boolean(process.stdin.isTTY));
      const cfg = await activeMaster(c, o);
      const tty = Boolean(o.tty);
      const interactive = Boolean(o.interactive);
      const term = tty ? new ExecTerminal(process.stdin, process.stdout, process, interactive) : undefined;
      const ac = new AbortController();
      let signalled: string | undefined;
      const onSignal = (sig: string) => () => {
        signalled ??= sig;
        ac.abort();
      };
      const handlers = Object.keys(SIGNAL_EXIT).map((sig) => [sig, onSignal(sig)] as const);
      for (const [sig, h] of handlers) process.on(sig, h);
      const startSize = term?.size;
      const io: ExecIo = {
        ...(interactive ? { stdin: process.stdin } : {}),
        stdout: process.stdout,
        stderr: process.stderr,
        onStarted: (_started, resize) => term?.watch(resize, startSize!),
      };
      try {
        const start = { target, command, tty, stdin: interactive, ...(startSize ? { size: startSize } : {}) };
        const r = await runExec(cfg.master, cfg.adminToken, start, io, ac.signal);
        term?.restore();
        // After raw mode a remote program may leave the cursor mid-line: the message starts clean.
        if (r.error) process.stderr.write(`${tty ? '\r\n' : ''}hivemind exec: ${terminalSafe(r.error)}\n`);
        setExit(Math.min(255, Math.max(0, r.code)));
      } catch (err) {
        term?.restore();
        if (signalled) {
          setExit(SIGNAL_EXIT[signalled]!);
          return;
        }
        if (isMasterLoss(err)) throw new ExecMasterLostError(cfg.master, err);
        throw err;
      } finally {
        term?.restore();
        for (const [sig, h] of handlers) process.off(sig, h);
      }
    });
}


