// The container flags a task spec is built from (--image, --cpus, --memory, --pids, --gpus, --env,
// --data), shared by `hivemind submit` and `hivemind service create` so that both read them alike.
// Parsing is pure; only the data set names need the master (one GetDataInfo each).
import type { Command } from 'commander';
import { ConfigError } from '../common/errors.js';
import { parseDuration, parseSize } from '../common/units.js';
import { DataClient } from '../client/data-client.js';
import { checkMountPath } from '../protocol/data-mount-rules.js';
import { TaskNetwork, type DataMount, type Isolation, type TaskSpec } from '../protocol/gen/hivemind/v1/common.js';
import { ISOLATION_NAMES, isIsolationName, isolationOf } from '../protocol/isolation-rules.js';
import { DATA_FLAG_FORM, parseDataFlag, type DataFlag } from './data-mount-flag.js';
import { parseRate } from '../runtime/egress-rate.js';

/** The raw values of the container flags, as commander hands them over. */
export interface SpecFlags {
  cpus?: string;
  memory?: string;
  pids?: string;
  gpus?: string;
  env?: string[];
  data?: string[];
  /** Batch tasks only (submit). */
  timeout?: string;
  maxOutput?: string;
  network?: string;
  /** With --network egress: the task's own bandwidth cap, e.g. 10mbit. */
  egressRate?: string;
  /** Batch tasks only: runc or gvisor. */
  isolation?: string;
}

/** --network: absent or `none` keeps today's no-network task; `egress` asks for the internet only. */
export function parseNetworkFlag(v: string | undefined): TaskNetwork {
  if (v === undefined || v === 'none') return TaskNetwork.TASK_NETWORK_UNSPECIFIED;
  if (v === 'egress') return TaskNetwork.TASK_NETWORK_EGRESS;
  throw new ConfigError(`--network "${v}" is not none or egress`);
}

const repeat = (v: string, acc: string[]) => [...acc, v];

/** Adds --image and the resource, environment and data flags every task spec takes. */
export function containerSpecOptions(cmd: Command): Command {
  return containerResourceOptions(cmd.requiredOption('--image <image>', 'container image (must exist on the node)'));
}

/** The resource, environment and data flags, for a command that takes the image as an argument (`run`). */
export function containerResourceOptions(cmd: Command): Command {
  return cmd
    .option('--cpus <n>', 'CPU cores (fractions allowed)')
    .option('--memory <size>', 'memory limit, no swap (e.g. 512m)')
    .option('--pids <n>', 'process limit')
    .option('--gpus <n>', 'whole GPUs')
    .option('--env <KEY=VALUE>', 'environment variable (repeatable)', repeat, [] as string[])
    .option(
      '--data <REF:/path>',
      `mount a data set read-only at /path (repeatable): ${DATA_FLAG_FORM}; a name is a data set of \`hivemind data put\`, a url is fetched by the node and checked against its sha256`,
      repeat,
      [] as string[],
    );
}

export function parseEnvPairs(pairs: string[]): Map<string, string> {
  // A Map, not {}: a variable named __proto__ is a valid name and must not vanish.
  const env = new Map<string, string>();
  for (const p of pairs) {
    const i = p.indexOf('=');
    if (i <= 0) throw new ConfigError(`--env "${p}" is not KEY=VALUE`);
    env.set(p.slice(0, i), p.slice(i + 1));
  }
  return env;
}

/** The spec from the flags, without its data mounts (see parseSpecDataFlags and resolveDataFlags). */
export function buildSpec(image: string, command: string[], o: SpecFlags): TaskSpec {
  const num = (v: string | undefined, what: string, integer: boolean): number => {
    if (v === undefined) return 0;
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0 || (integer && !Number.isInteger(n))) throw new ConfigError(`--${what}: "${v}" is not a ${integer ? 'whole ' : ''}number ≥ 0`);
    return n;
  };
  return {
    image,
    command,
    env: parseEnvPairs(o.env ?? []),
    limits: {
      cpus: num(o.cpus, 'cpus', false),
      memoryBytes: o.memory ? parseSize(o.memory, '--memory') : 0,
      pids: num(o.pids, 'pids', true),
      gpus: num(o.gpus, 'gpus', true),
      timeoutMs: o.timeout ? parseDuration(o.timeout, '--timeout') : 0,
    },
    maxOutputBytes: o.maxOutput ? parseSize(o.maxOutput, '--max-output') : 0,
    data: [],
    network: parseNetworkFlag(o.network),
    ...(o.egressRate !== undefined ? { egressRateBps: parseRate(o.egressRate, '--egress-rate') } : {}),
    ...(o.isolation !== undefined ? { isolation: parseIsolationFlag(o.isolation) } : {}),
  };
}

function parseIsolationFlag(v: string): Isolation {
  if (!isIsolationName(v)) throw new ConfigError(`--isolation: "${v}" is not one of ${ISOLATION_NAMES.join(', ')}`);
  return isolationOf(v);
}

/** The --data flags parsed, their container paths checked before any name is looked up. */
export function parseSpecDataFlags(values: readonly string[]): DataFlag[] {
  const flags = values.map(parseDataFlag);
  flags.forEach((f, i) => checkMountPath('mount' in f ? f.mount.path : f.path, `spec.data[${i}].path`));
  return flags;
}

/**
 * The spec's data mounts from the --data flags: names are resolved to digests at the master (one
 * GetDataInfo each), so the spec names exactly the bytes the user meant even if the name moves.
 */
export async function resolveDataFlags(connect: () => DataClient | Promise<DataClient>, flags: readonly DataFlag[]): Promise<DataMount[]> {
  if (!flags.some((f) => 'name' in f)) return flags.map((f) => (f as { mount: DataMount }).mount);
  const client = await connect();
  try {
    const out: DataMount[] = [];
    for (const f of flags) {
      if ('mount' in f) {
        out.push(f.mount);
        continue;
      }
      const info = await client.info(f.name);
      out.push({ sha256: info.sha256, path: f.path, size: info.size, kind: info.kind, url: '' });
    }
    return out;
  } finally {
    client.close();
  }
}
