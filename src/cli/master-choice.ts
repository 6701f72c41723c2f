// The master a client command talks to: the configured ones (--master a,b / HIVEMIND_MASTER / the
// file / this host's master), the first that answers as active (client/active-master.ts).
import { grpcMasterProbe, pickActiveMaster } from '../client/active-master.js';
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
