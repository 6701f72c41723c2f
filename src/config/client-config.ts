// The admin CLI's connection: --master/--admin-token flags, HIVEMIND_MASTER/HIVEMIND_ADMIN_TOKEN,
// the file's "client" section, then the running local master's pointer (`hivemind master start`),
// and last the file `hivemind dev` writes: on a master host or a dev setup, no flags are needed.
import { existsSync, readFileSync } from 'node:fs';
import { z } from 'zod';
import { ConfigError } from '../common/errors.js';
import { devClientFile } from './paths.js';
import { readLocalMaster } from './local-master.js';
import { compileSection, zAddress, type ConfigInput, type FieldSource } from './layered-config.js';

const schema = z
  .object({
    master: zAddress.optional(),
    adminToken: z.string().min(1).optional(),
  })
  .strict();

export interface ClientConfig {
  master: string;
  adminToken: string;
}

const fields: Record<string, FieldSource> = {
  master: { env: 'HIVEMIND_MASTER', flag: 'master' },
  adminToken: { env: 'HIVEMIND_ADMIN_TOKEN', flag: 'adminToken' },
};

export interface DevClientFile {
  master: string;
  adminToken: string;
}

export function readDevClientFile(env: NodeJS.ProcessEnv = process.env): DevClientFile | undefined {
  const path = devClientFile(env);
  if (!existsSync(path)) return undefined;
  try {
    const v = JSON.parse(readFileSync(path, 'utf8')) as Partial<DevClientFile>;
    if (typeof v.master === 'string' && typeof v.adminToken === 'string') return { master: v.master, adminToken: v.adminToken };
  } catch {
    // a torn or foreign file: behave as if there were no dev master
  }
  return undefined;
}

/** Where the connection's missing parts come from when flags, env and file leave them out. */
export interface FallbackMasters {
  local(env: NodeJS.ProcessEnv | undefined): { master: string; adminToken: string } | undefined;
  dev(env: NodeJS.ProcessEnv | undefined): DevClientFile | undefined;
}

const onThisHost: FallbackMasters = { local: (env) => readLocalMaster(env), dev: (env) => readDevClientFile(env) };

export function compileClientConfig(input: ConfigInput, fallback: FallbackMasters = onThisHost): ClientConfig {
  const c = compileSection('client', schema, fields, input);
  const found = c.master && c.adminToken ? undefined : (fallback.local(input.env) ?? fallback.dev(input.env));
  const master = c.master ?? found?.master;
  const adminToken = c.adminToken ?? found?.adminToken;
  if (!master || !adminToken) {
    throw new ConfigError(
      'no master to talk to: start one with `hivemind master start` (on this host, as this user) or `hivemind dev`, or pass --master HOST:PORT and --admin-token T ' +
        '(or set HIVEMIND_MASTER and HIVEMIND_ADMIN_TOKEN)',
    );
  }
  return { master, adminToken };
}
