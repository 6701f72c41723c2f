// `hivemind service create | ls | get | logs | scale | rm | token`: services on the network
// (long-running replicas reached through the master's gateway), registered on the same `service`
// command as `install | uninstall | status` (this machine's worker service). Thin shells over
// ServiceClient that print tables, or JSON with --json.
import type { Command } from 'commander';
import { HivemindError } from '../../common/errors.js';
import { ServiceClient } from '../../client/service-client.js';
import { validateTaskSpec } from '../../master/spec-validation.js';
import type { ServiceInfo } from '../../protocol/gen/hivemind/v1/admin.js';
import { printJson, type CliContext } from '../cli-context.js';
import { formatService, formatServiceTable, formatTokenTable, serviceJson, tokenJson } from '../service-format.js';
import { waitUntilRemoved } from '../service-removal.js';
import { buildCreateServiceRequest, MAX_REPLICAS, parseTokenTtl, parseWholeNumber, type ServiceCreateFlags } from '../service-request.js';
import { containerSpecOptions, parseSpecDataFlags, resolveDataFlags } from '../task-spec-flags.js';
import { stateName } from '../task-format.js';
import { terminalSafe } from '../terminal-text.js';
import { printLogs } from '../task-attach.js';
import { durationText } from '../../common/units.js';
import { clientOptions, dataClient, withFollowClient } from './client-commands.js';
import { activeMaster } from '../master-choice.js';

type Ctx = () => CliContext;
type ClientFlags = { master?: string; adminToken?: string };

/** A replica `service logs` was asked for that the service does not have (now). */
export class NoSuchReplicaError extends HivemindError {
  constructor(message: string) {
    super('NO_SUCH_REPLICA', message);
  }
}

async function withServiceClient<T>(ctx: CliContext, opts: ClientFlags, fn: (c: ServiceClient) => Promise<T>): Promise<T> {
  const c = await activeMaster(ctx, opts);
  const client = ServiceClient.connect(c.master, c.adminToken);
  try {
    return await fn(client);
  } finally {
    client.close();
  }
}

/** The task of replica `index` now, or a NoSuchReplicaError that says what there is. */
export function replicaTask(s: ServiceInfo, index: number): { taskId: string; nodeId: string; state: string } {
  const r = s.replicaList.find((x) => x.index === index);
  const have = s.replicaList.map((x) => x.index).sort((a, b) => a - b);
  if (!r) {
    throw new NoSuchReplicaError(
      `service ${s.name} has no replica ${index} ` + (have.length ? `(it has replica ${have.join(', ')})` : `(it has no replicas now; ${s.replicas} wanted)`),
    );
  }
  if (!r.taskId) throw new NoSuchReplicaError(`replica ${index} of service ${s.name} has no task yet; try again in a moment`);
  return { taskId: r.taskId, nodeId: r.nodeId, state: stateName(r.state) };
}

export function registerServiceAppCommands(service: Command, ctx: Ctx): void {
  clientOptions(
    containerSpecOptions(
      service
        .command('create')
        .description('create a service: REPLICAS copies of a container serving HTTP on --port, reached at the master\'s gateway /s/NAME/')
        .argument('<name>', 'service name: a-z, 0-9 and -, at most 63 characters (the gateway path /s/NAME/)'),
    )
      .requiredOption('--port <port>', 'the port the container listens on (on its own loopback)')
      .option('--replicas <n>', 'how many replicas to run (default 1, at most 64)')
      .option('--health <path>', 'HTTP path the node GETs to check a replica (2xx/3xx = healthy); default: a TCP connect to --port')
      .option('--public', 'reachable through the gateway without a token (default: a service token is needed)')
      .option('--grace <duration>', 'from SIGTERM to SIGKILL when a replica is stopped (default 10s, at most 10m)')
      .option('--json', 'print JSON')
      .argument('[command...]', 'command and arguments (after --)'),
  ).action(async (name: string, command: string[], o: ServiceCreateFlags & ClientFlags & { json?: boolean }) => {
    const c = ctx();
    const dataFlags = parseSpecDataFlags(o.data ?? []);
    // Every flag is checked before a name is looked up at the master.
    buildCreateServiceRequest(name, command, o, []);
    const req = buildCreateServiceRequest(name, command, o, await resolveDataFlags(() => dataClient(c, o), dataFlags));
    // The master's spec rules here first, for a precise message before anything is sent.
    validateTaskSpec(req.spec);
    const s = await withServiceClient(c, o, (client) => client.create(req));
    if (o.json) return printJson(c, serviceJson(s));
    c.stdout.write(terminalSafe(`created service ${s.name}: ${s.replicas} replica(s), endpoint ${s.endpoint}`) + '\n');
    if (!s.public) c.stderr.write(terminalSafe(`clients need a token: hivemind service token create ${s.name}`) + '\n');
  });

  clientOptions(service.command('ls').alias('list').description('list the services: healthy/wanted replicas, traffic, endpoint').option('--json', 'print JSON')).action(
    async (o: ClientFlags & { json?: boolean }) => {
      const c = ctx();
      const list = await withServiceClient(c, o, (client) => client.list());
      if (o.json) printJson(c, list.map(serviceJson));
      else c.stdout.write(formatServiceTable(list) + '\n');
    },
  );

  clientOptions(service.command('get').description('show a service and its replicas: node, state, health, restarts, last exit, traffic').argument('<name>').option('--json', 'print JSON')).action(
    async (name: string, o: ClientFlags & { json?: boolean }) => {
      const c = ctx();
      const s = await withServiceClient(c, o, (client) => client.get(name));
      if (o.json) printJson(c, serviceJson(s));
      else c.stdout.write(formatService(s, Date.now()) + '\n');
    },
  );

  clientOptions(
    service
      .command('logs')
      .description("print a replica's output (its current task's log)")
      .argument('<name>')
      .option('--replica <n>', 'which replica, by index', '0')
      .option('-f, --follow', 'stream until the replica\'s task ends'),
  ).action(async (name: string, o: ClientFlags & { replica: string; follow?: boolean }) => {
    const c = ctx();
    const index = parseWholeNumber(o.replica, '--replica', 0);
    const r = replicaTask(await withServiceClient(c, o, (client) => client.get(name)), index);
    // On stderr: stdout is the log itself, for pipes.
    c.stderr.write(terminalSafe(`replica ${index}: task ${r.taskId}${r.nodeId ? ` on node ${r.nodeId.slice(0, 12)}` : ''} (${r.state})`) + '\n');
    await withFollowClient(c, o, async (client) => {
      await printLogs(client.streamLogs(r.taskId, { follow: Boolean(o.follow) }), c.stdout, c.stderr);
    });
    if (o.follow) c.stderr.write(terminalSafe(`task ${r.taskId} ended; the service starts a new task for replica ${index}: run again to follow it`) + '\n');
  });

  clientOptions(service.command('scale').description('set how many replicas a service runs (0 stops them all, keeping the service)').argument('<name>').argument('<replicas>').option('--json', 'print JSON')).action(
    async (name: string, replicas: string, o: ClientFlags & { json?: boolean }) => {
      const c = ctx();
      const n = parseWholeNumber(replicas, 'replicas', 0, MAX_REPLICAS);
      const s = await withServiceClient(c, o, (client) => client.scale(name, n));
      if (o.json) printJson(c, serviceJson(s));
      else c.stdout.write(terminalSafe(`service ${s.name}: ${s.replicas} replica(s) wanted, ${s.healthy} healthy now`) + '\n');
    },
  );

  clientOptions(
    service
      .command('rm')
      .alias('remove')
      .description('remove a service: every replica is stopped (SIGTERM, then SIGKILL after its grace period)')
      .argument('<name>')
      .option('--wait', 'wait until the master has stopped every replica and forgotten the service (at most grace + 30s)')
      .option('--json', 'print JSON'),
  ).action(async (name: string, o: ClientFlags & { json?: boolean; wait?: boolean }) => {
    const c = ctx();
    const s = await withServiceClient(c, o, async (client) => {
      const removed = await client.remove(name);
      if (o.wait) await waitUntilRemoved((n) => client.get(n), removed);
      return removed;
    });
    if (o.json) printJson(c, { ...serviceJson(s), removed: Boolean(o.wait) });
    else if (o.wait) c.stdout.write(terminalSafe(`removed service ${s.name}`) + '\n');
    else c.stdout.write(terminalSafe(`removing service ${s.name}: its replicas are stopping (grace ${durationText(s.graceMs)})`) + '\n');
  });

  const token = service.command('token').description("a service's gateway access tokens (Authorization: Bearer ...)");
  clientOptions(
    token
      .command('create')
      .description('create a token for a service\'s clients; it is printed once and never stored')
      .argument('<service>')
      .option('--label <text>', 'who it is for (at most 128 characters)')
      .option('--ttl <duration>', 'lifetime, e.g. 30d (default: never expires; revoke it with `service token revoke`)')
      .option('--json', 'print JSON'),
  ).action(async (svc: string, o: ClientFlags & { label?: string; ttl?: string; json?: boolean }) => {
    const c = ctx();
    const ttlMs = parseTokenTtl(o.ttl);
    const r = await withServiceClient(c, o, (client) => client.createToken(svc, { label: o.label, ttlMs }));
    if (o.json) return printJson(c, { token: r.token, info: r.info ? tokenJson(r.info, Date.now()) : undefined });
    c.stdout.write(terminalSafe(r.token) + '\n');
    c.stderr.write(terminalSafe(`token id ${r.info?.tokenId ?? '?'}: the token is shown only this once`) + '\n');
  });

  clientOptions(token.command('ls').alias('list').description("a service's tokens (ids only; secrets are never stored)").argument('<service>').option('--json', 'print JSON')).action(
    async (svc: string, o: ClientFlags & { json?: boolean }) => {
      const c = ctx();
      const list = await withServiceClient(c, o, (client) => client.listTokens(svc));
      const now = Date.now();
      if (o.json) printJson(c, list.map((t) => tokenJson(t, now)));
      else c.stdout.write(formatTokenTable(list, now) + '\n');
    },
  );

  clientOptions(token.command('revoke').description('refuse a service token from now on').argument('<token-id>').option('--json', 'print JSON')).action(
    async (id: string, o: ClientFlags & { json?: boolean }) => {
      const c = ctx();
      const t = await withServiceClient(c, o, (client) => client.revokeToken(id));
      if (o.json) printJson(c, tokenJson(t, Date.now()));
      else c.stdout.write(terminalSafe(`token ${t.tokenId} of service ${t.service} revoked`) + '\n');
    },
  );
}
