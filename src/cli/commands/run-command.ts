// `hivemind run IMAGE [flags] -- CMD…`: submit, stream the task's output as it runs, fetch its
// /output into a directory, and exit with the task's exit code, as `docker run` does.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import type { AdminClient } from '../../client/admin-client.js';
import { parseSize } from '../../common/units.js';
import type { TaskInfo } from '../../protocol/gen/hivemind/v1/admin.js';
import { OutcomeKind } from '../../protocol/gen/hivemind/v1/common.js';
import type { CliContext } from '../cli-context.js';
import { EXIT_CANCELLED, exitCodeForTask } from '../exit-codes.js';
import { extractCapsFor, extractResult } from '../result-extract.js';
import type { StatusStream } from '../status-line.js';
import { attachInterruptibly, reattachHint } from '../task-attach.js';
import { describeOutcome, stateName } from '../task-format.js';
import { containerResourceOptions } from '../task-spec-flags.js';
import { batchTaskOptions, specFromFlags, submitWithInput } from '../task-submit.js';
import { terminalSafe } from '../terminal-text.js';
import { transferProgress } from '../transfer-progress.js';
import { clientOptions, dataClient, withFollowClient } from './client-commands.js';

type Ctx = () => CliContext;

export function registerRunCommand(program: Command, ctx: Ctx, setExit: (code: number) => void): void {
  clientOptions(
    batchTaskOptions(
      containerResourceOptions(
        program
          .command('run')
          .description("run a task attached: its output streamed live, its /output unpacked into a directory, its exit code as this command's")
          .argument('<image>', 'container image (must exist on the node)')
          .argument('[command...]', 'command and arguments (after --)'),
      ),
    )
      .option('--output-dir <dir>', "where the task's /output is unpacked (default ./<task id>/)")
      .option('--no-result', "don't download the task's /output")
      .option('--max-extract <size>', "cap on what the result unpacks to (default: the task's --max-output, else 1g)")
      .option('--rm', 'tie the task to this command: Ctrl-C (or SIGTERM, SIGHUP) cancels it instead of detaching'),
  ).action(async (image: string, command: string[], o) => {
    const c = ctx();
    const maxExtract = o.maxExtract === undefined ? undefined : parseSize(o.maxExtract, '--max-extract');
    const spec = await specFromFlags(image, command, o, () => dataClient(c, o));
    await withFollowClient(c, o, async (client) => {
      const taskId = await submitWithInput(client.current, spec, o.input, c.stderr);
      c.stderr.write(terminalSafe(`hivemind: task ${taskId}`) + '\n');
      const t = await attachInterruptibly(client, taskId, {
        stdout: c.stdout,
        stderr: c.stderr,
        removeOnExit: Boolean(o.rm),
        exitNow: (code) => process.exit(code),
      });
      if (!t) {
        c.stderr.write(`\nhivemind: ${terminalSafe(reattachHint(taskId))}\n`);
        setExit(EXIT_CANCELLED);
        return;
      }
      // The master in use now: the attachment may have moved to another one.
      if (o.result !== false) await fetchInto(client.current, c, t, resolve(o.outputDir ?? taskId), maxExtract);
      const code = exitCodeForTask(t.state, t.outcome);
      const reason = endReason(t);
      if (code !== 0 && reason) c.stderr.write(`hivemind: ${terminalSafe(reason)}\n`);
      setExit(code);
    });
  });
}

/** One line on why the task ended badly, when it was not its own plain non-zero exit (which speaks for itself). */
export function endReason(t: Pick<TaskInfo, 'taskId' | 'state' | 'outcome'>): string | undefined {
  const plainExit = t.outcome?.kind === OutcomeKind.OUTCOME_KIND_EXITED && t.outcome.exitCode > 0;
  if (plainExit) return undefined;
  const how = describeOutcome(t.outcome);
  return `task ${t.taskId} ${stateName(t.state)}${how ? `: ${how}` : ''}`;
}

/** The task's /output, downloaded (with a progress line) and unpacked into `dir`; nothing when it left none. */
async function fetchInto(client: AdminClient, c: CliContext, t: TaskInfo, dir: string, maxExtract: number | undefined): Promise<void> {
  if (!t.outcome?.resultSha256 || !t.outcome.resultSize) return;
  const tmp = await mkdtemp(join(tmpdir(), 'hivemind-result-'));
  const progress = transferProgress(c.stderr as StatusStream, `result ${t.taskId}`, t.outcome.resultSize);
  try {
    const file = join(tmp, 'result.tar.gz');
    await client.fetchResult(t.taskId, file, undefined, (done, total) => progress.update(done, total));
    progress.done();
    await extractResult(t.taskId, file, dir, extractCapsFor(t.spec, maxExtract));
    c.stderr.write(terminalSafe(`hivemind: the /output of task ${t.taskId} is in ${dir}`) + '\n');
  } finally {
    progress.done();
    await rm(tmp, { recursive: true, force: true });
  }
}
