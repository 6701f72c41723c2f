// The master's configuration: file section "master", HIVEMIND_* env, `hivemind master start` flags.
import { join } from 'node:path';
import { z } from 'zod';
import { hivemindHome } from './paths.js';
import { compileSection, zAddress, zDurationMs, zInt, zLogLevel, type ConfigInput, type FieldSource } from './layered-config.js';

const schema = z
  .object({
    /** gRPC listen address. Default 127.0.0.1:7070 (loopback only). */
    listen: zAddress.default('127.0.0.1:7070'),
    /** Database, inputs, results, logs. Default $HIVEMIND_HOME/master. */
    dataDir: z.string().min(1).optional(),
    /** Interval workers report at; a node is offline after 3 missed reports. Default 30s. */
    reportInterval: zDurationMs('report interval').default(30_000),
    /** Attempts per task before it fails for good when nodes are lost. Default 3. */
    maxAttempts: zInt(1, 100).default(3),
    logLevel: zLogLevel.default('info'),
  })
  .strict();

export interface MasterConfig {
  listen: string;
  dataDir: string;
  reportIntervalMs: number;
  maxAttempts: number;
  logLevel: string;
}

const fields: Record<string, FieldSource> = {
  listen: { env: 'HIVEMIND_LISTEN', flag: 'listen' },
  dataDir: { env: 'HIVEMIND_DATA_DIR', flag: 'dataDir' },
  reportInterval: { env: 'HIVEMIND_REPORT_INTERVAL', flag: 'reportInterval' },
  maxAttempts: { env: 'HIVEMIND_MAX_ATTEMPTS', flag: 'maxAttempts' },
  logLevel: { env: 'HIVEMIND_LOG_LEVEL', flag: 'logLevel' },
};

export function compileMasterConfig(input: ConfigInput): MasterConfig {
  const c = compileSection('master', schema, fields, input);
  return {
    listen: c.listen,
    dataDir: c.dataDir ?? join(hivemindHome(input.env), 'master'),
    reportIntervalMs: c.reportInterval,
    maxAttempts: c.maxAttempts,
    logLevel: c.logLevel,
  };
}
