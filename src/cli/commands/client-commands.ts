// The admin commands (submit, tasks, get, wait, logs, result, cancel, nodes, token create):
// thin shells over AdminClient that print for humans, or JSON with --json.
import type { Command } from 'commander';
import { AdminClient, DEFAULT_LIST_COUNT, DEFAULT_NODE_COUNT } from '../../client/admin-client.js';
import { ConfigError } from '../../common/errors.js';
import { parseDuration, parseSize, formatBytes } from '../../common/units.js';
import { TaskState } from '../../protocol/gen/hivemind/v1/common.js';
import { extractCapsFor, extractResult } from '../result-extract.js';
import { EXIT_CANCELLED, exitCodeForTask } from '../exit-codes.js';
import { describeOutcome, formatNodeTable, formatTask, formatTaskTable, stateName } from '../task-format.js';
import { printJson, type CliContext } from '../cli-context.js';
import { nodeJson, taskJson } from '../json-output.js';
import { terminalSafe } from '../terminal-text.js';
import { statusLine, type StatusStream } from '../status-line.js';
import { liveTaskLine } from '../task-progress.js';
import { DataClient } from '../../client/data-client.js';
import { activeMaster, followClient } from '../master-choice.js';
import type { FailoverClient } from '../../client/master-failover.js';
import { containerSpecOptions } from '../task-spec-flags.js';
import { batchTaskOptions, specFromFlags, submitWithInput } from '../task-submit.js';
import { attachInterruptibly, isTerminal, printLogs, reattachHint, watchUntilEnd } from '../task-attach.js';
import { transferProgress } from '../transfer-progress.js';

type Ctx = () => CliContext;

export { clientConfig } from '../master-choice.js';

export async function dataClient(ctx: CliContext, opts: { master?: string; adminToken?: string }): Promise<DataClient> {
  const c = await activeMaster(ctx, opts);
  return DataClient.connect(c.master, c.adminToken);
}

export async function withClient<T>(ctx: CliContext, opts: { master?: string; adminToken?: string }, fn: (c: AdminClient) => Promise<T>): Promise<T> {
  const c = await activeMaster(ctx, opts);
  const client = AdminClient.connect(c.master, c.adminToken);
  try {
    return await fn(client);
  } finally {
    client.close();
  }
}

/**
 * `fn` with a client that follows the active master when its master is lost (wait, logs, attached
 * runs); `fn` gets the one AdminClient in use for calls that are not retried (a submit).
 */
export async function withFollowClient<T>(ctx: CliContext, opts: { master?: string; adminToken?: string }, fn: (c: FailoverClient<AdminClient>) => Promise<T>): Promise<T> {
  const client = await followClient(ctx, opts, (line) => ctx.stderr.write(`hivemind: ${terminalSafe(line)}\n`));
  try {
    return await fn(client);
  } finally {
    client.close();
  }
}

export function clientOptions(cmd: Command): Command {
  return cmd
    .option('--master <host:port,...>', 'master address, or several comma-separated (masters sharing one store: the first that answers as active is used) (default: the master running on this host, else the `hivemind dev` master)')
    .option('--admin-token <token>', 'admin token (default: that master\'s)');
}

function parseLimit(v: string): number {
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 0) throw new ConfigError(`--limit: "${v}" is not a whole number ≥ 0 (0 = all)`);
  return n;
}

export function registerClientCommands(program: Command, ctx: Ctx, setExit: (code: number) => void): void {
  clientOptions(
    batchTaskOptions(containerSpecOptions(program.command('submit').description('submit a task; prints its id')))
      .option('--wait', "stream the task's output until it ends and exit with its outcome (Ctrl-C detaches)")
      .option('--json', 'print JSON')
      .argument('[command...]', 'command and arguments (after --)'),
  ).action(async (command: string[], o) => {
    const c = ctx();
    const spec = await specFromFlags(o.image, command, o, () => dataClient(c, o));
    await withFollowClient(c, o, async (client) => {
      const taskId = await submitWithInput(client.current, spec, o.input, c.stderr);
      if (!o.wait) {
        if (o.json) printJson(c, { taskId });
        else c.stdout.write(terminalSafe(taskId) + '\n');
        return;
      }
      c.stderr.write(terminalSafe(`submitted ${taskId}`) + '\n');
      const t = await attachInterruptibly(client, taskId, {
        // With --json, stdout is the one JSON document: the task's output goes to stderr.
        stdout: o.json ? c.stderr : c.stdout,
        stderr: c.stderr,
        removeOnExit: false,
        exitNow: (code) => process.exit(code),
        onState: (t) => c.stderr.write(terminalSafe(`${taskId}: ${stateName(t.state)}`) + '\n'),
      });
      if (!t) {
        c.stderr.write(`\nhivemind: ${terminalSafe(reattachHint(taskId))}\n`);
        setExit(EXIT_CANCELLED);
        return;
      }
      if (o.json) printJson(c, taskJson(t));
      else c.stdout.write(terminalSafe(`${taskId} ${stateName(t.state)} ${describeOutcome(t.outcome)}`) + '\n');
      setExit(exitCodeForTask(t.state, t.outcome));
    });
  });

  clientOptions(
    program
      .command('tasks')
      .description('list tasks, newest first')
      .option('--state <state>', 'only tasks in this state (queued, running, succeeded, failed, ...)')
      .option('--limit <n>', 'at most this many (0 = all; read page by page)', String(DEFAULT_LIST_COUNT))
      .option('--json', 'print JSON'),
  ).action(async (o) => {
    const c = ctx();
    const states: TaskState[] = [];
    if (o.state) {
      const key = `TASK_STATE_${String(o.state).toUpperCase()}` as keyof typeof TaskState;
      const s = TaskState[key];
      if (typeof s !== 'number') throw new ConfigError(`--state: unknown state "${o.state}"`);
      states.push(s);
    }
    const limit = parseLimit(o.limit);
    const tasks = await withClient(c, o, (client) => client.listTasks({ states, limit }));
    if (o.json) printJson(c, tasks.map(taskJson));
    else c.stdout.write(formatTaskTable(tasks) + '\n');
  });

  clientOptions(program.command('get').description('show one task with its history').argument('<task-id>').option('--json', 'print JSON')).action(
    async (taskId: string, o) => {
      const c = ctx();
      const t = await withClient(c, o, (client) => client.getTask(taskId));
      if (o.json) printJson(c, taskJson(t));
      else c.stdout.write(formatTask(t) + '\n');
    },
  );

  clientOptions(
    program.command('wait').description('wait for a task to finish; the exit code reflects its outcome').argument('<task-id>').option('--json', 'print JSON'),
  ).action(async (taskId: string, o) => {
    const c = ctx();
    // The task's state and own progress, live on a terminal (nothing in a pipe).
    const live = statusLine(c.stderr as StatusStream);
    // Without a signal the watch ends only at a terminal state (or throws).
    const t = (await withFollowClient(c, o, (client) => watchUntilEnd(client, taskId, { onEvery: (t) => live.update(liveTaskLine(t, stateName), true) })).finally(() => live.done()))!;
    if (o.json) printJson(c, taskJson(t));
    else c.stdout.write(terminalSafe(`${taskId} ${stateName(t.state)} ${describeOutcome(t.outcome)}`) + '\n');
    setExit(exitCodeForTask(t.state, t.outcome));
  });

  clientOptions(program.command('logs').description("print a task's output").argument('<task-id>').option('-f, --follow', 'stream until the task ends')).action(
    async (taskId: string, o) => {
      const c = ctx();
      await withFollowClient(c, o, async (client) => {
        await printLogs(client.streamLogs(taskId, { follow: Boolean(o.follow) }), c.stdout, c.stderr);
      });
    },
  );

  clientOptions(
    program
      .command('result')
      .description("download a task's result archive (resumes a partial download; checks the sha256)")
      .argument('<task-id>')
      .requiredOption('-o, --output <file>', 'where to write the .tar.gz')
      .option('--extract <dir>', 'also unpack it into this directory (safely; all or nothing)')
      .option('--max-extract <size>', "cap on what --extract unpacks (default: the task's --max-output, else 1g)")
      .option('--json', 'print JSON'),
  ).action(async (taskId: string, o) => {
    const c = ctx();
    const maxExtract = o.maxExtract === undefined ? undefined : parseSize(o.maxExtract, '--max-extract');
    const progress = transferProgress(c.stderr as StatusStream, `result ${taskId}`);
    const { r, task } = await withClient(c, o, async (client) => ({
      r: await client.fetchResult(taskId, o.output, undefined, (done, total) => progress.update(done, total)).finally(() => progress.done()),
      task: o.extract ? await client.getTask(taskId) : undefined,
    }));
    if (o.extract) await extractResult(taskId, o.output, o.extract, extractCapsFor(task?.spec, maxExtract));
    if (o.json) printJson(c, { taskId, file: o.output, ...r, extractedTo: o.extract });
    else c.stdout.write(terminalSafe(`${o.output}: ${formatBytes(r.size)}, sha256 ${r.sha256}${o.extract ? `, extracted to ${o.extract}` : ''}`) + '\n');
  });

  clientOptions(program.command('cancel').description('cancel a queued or running task').argument('<task-id>').option('--json', 'print JSON')).action(
    async (taskId: string, o) => {
      const c = ctx();
      const t = await withClient(c, o, (client) => client.cancelTask(taskId, 'cancelled from the CLI'));
      if (o.json) printJson(c, taskJson(t));
      else c.stdout.write(terminalSafe(`${taskId}: ${stateName(t.state)}${t.cancelRequested && !isTerminal(t.state) ? ' (cancel sent to the node)' : ''}`) + '\n');
    },
  );

  const nodes = program.command('nodes').description('list nodes; `nodes remove ID` removes one');
  clientOptions(
    nodes.command('remove').description("revoke a node's credential, remove its WireGuard peer and requeue its tasks").argument('<node-id>').option('--json', 'print JSON'),
  ).action(async (nodeId: string, o) => {
    const c = ctx();
    const r = await withClient(c, o, (client) => client.removeNode(nodeId));
    if (o.json) printJson(c, r);
    else c.stdout.write(terminalSafe(`removed node ${r.nodeId}; ${r.tasksRequeued} task(s) requeued`) + '\n');
  });
  clientOptions(nodes.option('--limit <n>', 'at most this many (0 = all; read page by page)', String(DEFAULT_NODE_COUNT)).option('--json', 'print JSON')).action(async (o) => {
    const c = ctx();
    const limit = parseLimit(o.limit);
    const nodes = await withClient(c, o, (client) => client.listNodes({ limit }));
    if (o.json) printJson(c, nodes.map(nodeJson));
    else c.stdout.write(formatNodeTable(nodes) + '\n');
  });

  const token = program.command('token').description('enrollment tokens');
  clientOptions(
    token
      .command('create')
      .description('create an enrollment token for a new worker')
      .option('--ttl <duration>', 'validity', '24h')
      .option('--uses <n>', 'how many workers may enroll with it', '1')
      .option('--json', 'print JSON'),
  ).action(async (o) => {
    const c = ctx();
    const uses = Number(o.uses);
    if (!Number.isInteger(uses) || uses < 1) throw new ConfigError(`--uses: "${o.uses}" is not a whole number ≥ 1`);
    const r = await withClient(c, o, (client) => client.createToken({ ttlMs: parseDuration(o.ttl, '--ttl'), uses }));
    if (o.json) printJson(c, r);
    else c.stdout.write(terminalSafe(r.token) + '\n');
  });

  clientOptions(token.command('list').description('enrollment tokens (ids only; secrets are never stored)').option('--json', 'print JSON')).action(async (o) => {
    const c = ctx();
    const list = await withClient(c, o, (client) => client.listTokens());
    if (o.json) printJson(c, list);
    else {
      const rows = list.map((t) => `${t.tokenId}  ${t.revoked ? 'revoked' : t.usesLeft === 0 ? 'used up' : t.expiresAtMs <= Date.now() ? 'expired' : 'valid'}  uses left ${t.usesLeft}  expires ${new Date(t.expiresAtMs).toISOString()}`);
      c.stdout.write((rows.length ? rows.map((r) => terminalSafe(r)).join('\n') : 'no enrollment tokens') + '\n');
    }
  });

  clientOptions(token.command('revoke').description('refuse an enrollment token from now on').argument('<token-id>').option('--json', 'print JSON')).action(async (id: string, o) => {
    const c = ctx();
    const t = await withClient(c, o, (client) => client.revokeToken(id));
    if (o.json) printJson(c, t);
    else c.stdout.write(terminalSafe(`token ${t.tokenId} revoked`) + '\n');
  });
}
