// The master a client command talks to: the configured ones (--master a,b / HIVEMIND_MASTER / the
// file / this host's master), the first that answers as active (client/active-master.ts).
import { grpcMasterProbe, pickActiveMaster } from '../client/active-master.js';
import { AdminClient } from '../client/admin-client.js';
import { FailoverClient } from '../client/master-failover.js';
import { sleep } from '../common/sleep.js';
import { compileClientConfig, type ClientConfig } from '../config/client-config.js';
import type { CliContext } from './cli-context.js';

export type ClientFlags = { master?: string; adminToken?: string };

export function clientConfig(ctx: CliContext, opts: ClientFlags): ClientConfig {
  return compileClientConfig({ file: ctx.file, filePath: ctx.filePath, fileText: ctx.fileText, env: ctx.env, flags: { master: opts.master, adminToken: opts.adminToken } });
}

export async function activeMaster(ctx: CliContext, opts: ClientFlags): Promise<{ master: string; adminToken: string }> {
  const c = clientConfig(ctx, opts);
  return { master: await pickActiveMaster(c.masters, grpcMasterProbe(c.adminToken)), adminToken: c.adminToken };
}

/**
 * For commands that follow a task (wait, logs -f, attached runs): a client that moves to the
 * active master when its master is lost (client/master-failover.ts); each move is a line on stderr.
 */
export async function followClient(ctx: CliContext, opts: ClientFlags, note: (line: string) => void): Promise<FailoverClient<AdminClient>> {
  const c = clientConfig(ctx, opts);
  const probe = grpcMasterProbe(c.adminToken);
  return FailoverClient.create({
    masters: c.masters,
    pick: () => pickActiveMaster(c.masters, probe),
    connect: (address) => AdminClient.connect(address, c.adminToken),
    sleep,
    now: () => performance.now(),
    onMove: note,
  });
}
