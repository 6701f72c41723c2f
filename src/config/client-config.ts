// The admin CLI's connection: --master/--admin-token flags, HIVEMIND_MASTER/HIVEMIND_ADMIN_TOKEN,
// the file's "client" section, then the running local master's pointer (`hivemind master start`),
// and last the file `hivemind dev` writes: on a master host or a dev setup, no flags are needed.
import { existsSync, readFileSync } from 'node:fs';
import { ConfigError } from '../common/errors.js';
import { devClientFile } from './paths.js';
import { readLocalMaster } from './local-master.js';
import { parseMasterList } from './master-list.js';
import { invalidConfig, mergeSection, type ConfigInput, type FieldSource } from './config-layers.js';

export interface ClientConfig {
  /**
   * The masters in the order a command tries them (several share one store: one active, the
   * others standby); see client/active-master.ts.
   */
  masters: string[];
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

/**
 * The section's two fields checked by hand, with the messages the servers' zod schemas give for
 * the same faults (layered-config.ts): zod is ~90 modules a client command would load for this
 * alone (docs/benchmarks.md, CLI startup). test/unit/config.test.ts holds the wording.
 */
function validClientSection(input: ConfigInput): { masters?: string[]; adminToken?: string } {
  const { raw, origin } = mergeSection('client', fields, input);
  const issues: { key: string; message: string }[] = [];
  const str = (key: string, check: (v: string) => string | undefined): string | undefined => {
    const v = raw[key];
    if (v === undefined) return undefined;
    const problem = typeof v === 'string' ? check(v) : `Invalid input: expected string, received ${v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v}`;
    if (problem) issues.push({ key, message: problem });
    return problem ? undefined : (v as string);
  };
  let masters: string[] | undefined;
  if (raw.master !== undefined) {
    const r = parseMasterList(raw.master);
    if ('addresses' in r) masters = r.addresses;
    else issues.push({ key: 'master', message: r.problem });
  }
  const adminToken = str('adminToken', (v) => (v.length >= 1 ? undefined : 'Too small: expected string to have >=1 characters'));
  if (issues.length) throw invalidConfig('client', origin, issues);
  return { masters, adminToken };
}

export function compileClientConfig(input: ConfigInput, fallback: FallbackMasters = onThisHost): ClientConfig {
  const c = validClientSection(input);
  const found = c.masters && c.adminToken ? undefined : (fallback.local(input.env) ?? fallback.dev(input.env));
  const masters = c.masters ?? (found ? [found.master] : undefined);
  const adminToken = c.adminToken ?? found?.adminToken;
  if (!masters || !adminToken) {
    throw new ConfigError(
      'no master to talk to: start one with `hivemind master start` (on this host, as this user) or `hivemind dev`, or pass --master HOST:PORT[,HOST:PORT…] and --admin-token T ' +
        '(or set HIVEMIND_MASTER and HIVEMIND_ADMIN_TOKEN)',
    );
  }
  return { masters, adminToken };
}
