// The admin CLI's connection: --master/--admin-token flags, HIVEMIND_MASTER/HIVEMIND_ADMIN_TOKEN,
// the file's "client" section, and last the file `hivemind dev` writes, so a dev setup needs no flags.
import { existsSync, readFileSync } from 'node:fs';
import { z } from 'zod';
import { ConfigError } from '../common/errors.js';
import { devClientFile } from './paths.js';
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

export function compileClientConfig(input: ConfigInput): ClientConfig {
  const c = compileSection('client', schema, fields, input);
  const dev = c.master && c.adminToken ? undefined : readDevClientFile(input.env);
  const master = c.master ?? dev?.master;
  const adminToken = c.adminToken ?? dev?.adminToken;
  if (!master || !adminToken) {
    throw new ConfigError(
      'no master to talk to: start one with `hivemind dev`, or pass --master HOST:PORT and --admin-token T ' +
        '(or set HIVEMIND_MASTER and HIVEMIND_ADMIN_TOKEN)',
    );
  }
  return { master, adminToken };
}
