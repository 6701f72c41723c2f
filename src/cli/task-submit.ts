// A task submitted from the CLI flags (`submit`, `run`): the spec built and checked, data set
// names resolved, the --input directory packed and uploaded with a progress line on a terminal.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import type { Command } from 'commander';
import type { AdminClient } from '../client/admin-client.js';
import type { DataClient } from '../client/data-client.js';
import { packDirectory } from '../archive/pack-directory.js';
import { validateTaskSpec } from '../master/spec-validation.js';
import type { TaskSpec } from '../protocol/gen/hivemind/v1/common.js';
import type { StatusStream } from './status-line.js';
import { buildSpec, parseSpecDataFlags, resolveDataFlags, type SpecFlags } from './task-spec-flags.js';
import { transferProgress } from './transfer-progress.js';

/** The flags of a batch task beyond the container's: `submit` and `run` take them alike. */
export function batchTaskOptions(cmd: Command): Command {
  return cmd
    .option('--timeout <duration>', 'wall-clock limit (e.g. 10m)')
    .option('--max-output <size>', 'cap on /output (e.g. 1g)')
    .option('--input <dir>', 'directory to send as /input')
    .option('--network <none|egress>', 'none (default): no network; egress: the internet only, on a node started with --allow-egress')
    .option('--egress-rate <rate>', 'with --network egress: cap the task\'s bandwidth each way (8kbit to 100gbit, e.g. 10mbit); a node\'s own --egress-rate still applies, the lower holds')
    .option('--isolation <runc|gvisor>', 'the runtime the task needs: gvisor places it only on nodes offering gVisor (hivemind nodes), runc only on nodes running runc; default: any node');
}

export interface BatchFlags extends SpecFlags {
  input?: string;
}

/** The spec of these flags, checked by the master's own rules before anything is packed or sent. */
export async function specFromFlags(image: string, command: string[], o: BatchFlags, dataClient: () => DataClient | Promise<DataClient>): Promise<TaskSpec> {
  const spec = buildSpec(image, command, o);
  spec.data = await resolveDataFlags(dataClient, parseSpecDataFlags(o.data ?? []));
  // A precise message here rather than the size limit's after megabytes were packed and sent.
  validateTaskSpec(spec);
  return spec;
}

/** Packs --input (if any) into a temp dir, submits, and returns the task id; the temp dir is removed. */
export async function submitWithInput(client: AdminClient, spec: TaskSpec, input: string | undefined, stderr: NodeJS.WritableStream): Promise<string> {
  if (input === undefined) return client.submit(spec);
  const tmp = await mkdtemp(join(tmpdir(), 'hivemind-input-'));
  const progress = transferProgress(stderr as StatusStream, `upload ${basename(resolve(input))}/`);
  try {
    const inputFile = join(tmp, 'input.tar.gz');
    await packDirectory(input, inputFile);
    return await client.submit(spec, { inputFile, onProgress: (sent, total) => progress.update(sent, total) });
  } finally {
    progress.done();
    await rm(tmp, { recursive: true, force: true });
  }
}
