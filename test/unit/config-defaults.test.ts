// Each setting has one default (config/defaults.ts): the config file, the environment, the CLI
// flags and their help, install.sh (through `hivemind service install`) and programmatic Worker
// options must all come to the same one.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { registerServerCommands } from '../../src/cli/commands/server-commands.js';
import { registerServiceCommands } from '../../src/cli/commands/service-commands.js';
import { parseDuration, parseSize } from '../../src/common/units.js';
import { GATEWAY_DEFAULTS, MASTER_DEFAULTS, MISSED_REPORTS_OFFLINE, WORKER_DEFAULTS } from '../../src/config/defaults.js';
import { compileMasterConfig } from '../../src/config/master-config.js';
import { cacheBudgetBytes, compileWorkerConfig } from '../../src/config/worker-config.js';
import { compileWorkerOptions } from '../../src/worker/worker-options.js';
import { installService } from '../../src/service/service-install.js';
import { FakeServiceHost } from '../helpers/fake-service-host.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

/** The "(default X)" of each option of `hivemind <group> <command> --help`, by long flag. */
function helpDefaults(group: 'worker' | 'master' | 'service', command = 'start'): Map<string, string> {
  const program = new Command();
  registerServerCommands(program, () => { throw new Error('no command runs here'); }, () => undefined);
  registerServiceCommands(program, () => undefined);
  const start = program.commands.find((c) => c.name() === group)!.commands.find((c) => c.name() === command)!;
  const out = new Map<string, string>();
  for (const o of start.options) {
    const m = /\(default:? ([^;)]+)/.exec(o.description);
    if (m && o.long) out.set(o.long, m[1]!.trim());
  }
  return out;
}

test('the drain timeout: the CLI, the config file, install.sh and Worker options yield the same default', async () => {
  const dflt = WORKER_DEFAULTS.drainTimeoutMs;
  assert.equal(dflt, 10 * 60_000);
  assert.equal(compileWorkerConfig({ env: {}, flags: {} }).drainTimeoutMs, dflt, 'CLI without --drain-timeout');
  const file = { worker: { maxTasks: 1 } };
  assert.equal(compileWorkerConfig({ file, filePath: '/etc/hm.json', env: {}, flags: {} }).drainTimeoutMs, dflt, 'config file without drainTimeout');
  assert.equal(compileWorkerOptions({ masterAddress: '127.0.0.1:7070', dataDir: '/tmp/hm-w' }).drainTimeoutMs, dflt, 'Worker.create without drainTimeoutMs');
  assert.equal(parseDuration(helpDefaults('worker').get('--drain-timeout')!, 'help'), dflt, '`hivemind worker start --help`');
  // install.sh passes --drain-timeout on only when given: `hivemind service install` writes the
  // default into the installed config, and install.sh --help names it.
  const script = readFileSync(join(root, 'install.sh'), 'utf8');
  assert.doesNotMatch(script, /drain_timeout="\$\{drain_timeout:-|drain_timeout=["']?[0-9]/, 'install.sh has no default drain timeout of its own');
  assert.match(script, /^\[ -z "\$drain_timeout" \] \|\| opts\+=\(--drain-timeout "\$drain_timeout"\)$/m, 'install.sh passes only a given --drain-timeout');
  const host = new FakeServiceHost('linux', { systemd: false });
  await installService(host, { program: 'install.sh', self: ['/usr/local/bin/hivemind'] }, { token: 'hm1.x', master: '127.0.0.1:7070', service: 'none', noStart: true, dryRun: false });
  const installed = JSON.parse(host.text('/etc/hivemind/worker.json')!) as { worker: Record<string, unknown> };
  assert.equal(parseDuration(installed.worker.drainTimeout as string, 'service install'), dflt, '`hivemind service install` without --drain-timeout (what install.sh runs)');
  assert.equal(compileWorkerConfig({ file: installed, env: {}, flags: {} }).drainTimeoutMs, dflt, 'the installed config, as the worker reads it');
  assert.equal(parseDuration(helpDefaults('service', 'install').get('--drain-timeout')!, 'help'), dflt, '`hivemind service install --help`');
  const usage = /--drain-timeout DUR .*\(default ([^)]+)\)/.exec(script);
  assert.ok(usage, 'install.sh --help names the default');
  assert.equal(parseDuration(usage[1]!, 'install.sh --help'), dflt, 'install.sh --help');
});

test('worker defaults: the schema, Worker options and `worker start --help` agree', () => {
  const c = compileWorkerConfig({ env: {}, flags: {} });
  assert.equal(c.maxTasks, WORKER_DEFAULTS.maxTasks);
  assert.equal(c.maxOutput, WORKER_DEFAULTS.maxOutputBytes);
  assert.equal(c.imageBudget, WORKER_DEFAULTS.imageBudgetBytes);
  assert.equal(c.imageUnusedForMs, WORKER_DEFAULTS.imageUnusedForMs);
  assert.equal(c.monitorPort, WORKER_DEFAULTS.monitorPort);
  assert.equal(c.monitorListen, WORKER_DEFAULTS.monitorListen);
  assert.equal(c.wgInterface, WORKER_DEFAULTS.wgInterface);
  assert.equal(c.logLevel, WORKER_DEFAULTS.logLevel);
  assert.equal(c.allowUnboundedOutput, WORKER_DEFAULTS.allowUnboundedOutput);
  assert.equal(c.spoolDir, join(c.dataDir, 'spool'), 'the spool dir is derived once, in the config');
  const o = compileWorkerOptions({ masterAddress: '127.0.0.1:7070', dataDir: c.dataDir });
  assert.equal(o.maxTasks, WORKER_DEFAULTS.maxTasks);
  assert.equal(o.memoryReserveBytes, WORKER_DEFAULTS.memoryReserveBytes);
  assert.equal(o.spoolDir, c.spoolDir, 'Worker options derive the same spool dir');
  const help = helpDefaults('worker');
  assert.equal(Number(help.get('--max-tasks')), WORKER_DEFAULTS.maxTasks);
  assert.equal(parseSize(help.get('--max-output')!, 'help'), WORKER_DEFAULTS.maxOutputBytes);
  assert.equal(parseSize(help.get('--image-budget')!, 'help'), WORKER_DEFAULTS.imageBudgetBytes);
  assert.equal(parseDuration(help.get('--image-unused-for')!, 'help'), WORKER_DEFAULTS.imageUnusedForMs);
  assert.equal(parseDuration(help.get('--report-interval')!, 'help'), WORKER_DEFAULTS.reportIntervalMs);
  assert.equal(parseSize(help.get('--memory')!.replace(/^total - /, ''), 'help'), WORKER_DEFAULTS.memoryReserveBytes);
  assert.equal(Number(help.get('--monitor-port')), WORKER_DEFAULTS.monitorPort);
  assert.equal(help.get('--monitor-listen'), WORKER_DEFAULTS.monitorListen);
});

test('master defaults: the schema and `master start --help` agree', () => {
  const c = compileMasterConfig({ env: {}, flags: {} });
  assert.equal(c.listen, MASTER_DEFAULTS.listen);
  assert.equal(c.reportIntervalMs, MASTER_DEFAULTS.reportIntervalMs);
  assert.equal(c.nodeTimeoutMs, MASTER_DEFAULTS.reportIntervalMs * MISSED_REPORTS_OFFLINE);
  assert.equal(c.maxAttempts, MASTER_DEFAULTS.maxAttempts);
  assert.equal(c.maxDataBytes, MASTER_DEFAULTS.maxDataBytes);
  assert.equal(compileMasterConfig({ env: { HIVEMIND_MAX_DATA: '2g' }, flags: {} }).maxDataBytes, 2 * 1024 ** 3);
  const t = compileMasterConfig({ env: {}, flags: { wgEndpoint: '192.0.2.1:51820' } }).tunnel!;
  assert.deepEqual(t, { endpoint: '192.0.2.1:51820', subnet: MASTER_DEFAULTS.wgSubnet, interfaceName: MASTER_DEFAULTS.wgInterface, enrollListen: MASTER_DEFAULTS.enrollListen, nodePort: MASTER_DEFAULTS.nodePort, mesh: MASTER_DEFAULTS.mesh, peerEndpoints: [] });
  const help = helpDefaults('master');
  assert.equal(help.get('--listen'), MASTER_DEFAULTS.listen);
  assert.equal(parseDuration(help.get('--report-interval')!, 'help'), MASTER_DEFAULTS.reportIntervalMs);
  assert.equal(Number(help.get('--max-attempts')), MASTER_DEFAULTS.maxAttempts);
  assert.equal(help.get('--wg-subnet'), MASTER_DEFAULTS.wgSubnet);
  assert.equal(help.get('--wg-interface'), MASTER_DEFAULTS.wgInterface);
  assert.equal(help.get('--enroll-listen'), MASTER_DEFAULTS.enrollListen);
  assert.equal(Number(help.get('--node-port')), MASTER_DEFAULTS.nodePort);
  assert.equal(parseSize(help.get('--max-data')!, 'help'), MASTER_DEFAULTS.maxDataBytes);
  assert.equal(c.gatewayListen, GATEWAY_DEFAULTS.listen);
  assert.equal(help.get('--gateway-listen'), GATEWAY_DEFAULTS.listen);
  assert.equal(c.metricsListen, MASTER_DEFAULTS.metricsListen);
  assert.equal(help.get('--metrics-listen'), MASTER_DEFAULTS.metricsListen);
});

test('the worker config yields the Worker options\' settings under their names: compiling them again changes nothing', () => {
  const c = compileWorkerConfig({ env: {}, flags: { cpus: '2', memory: '1g', maxTasks: '3', drainTimeout: '30s', dataDir: '/tmp/hm-w' } });
  assert.equal(c.cpus, 2);
  assert.equal(c.memory, 1024 ** 3);
  const o = compileWorkerOptions({ ...c, masterAddress: '127.0.0.1:7070' });
  for (const [k, v] of Object.entries(o)) {
    if (k !== 'masterAddress' && k !== 'masterAddresses' && k !== 'enrollmentToken') assert.deepEqual(v, (c as unknown as Record<string, unknown>)[k], k);
  }
});

test('the data cache budget: --cache-max / HIVEMIND_CACHE_MAX / cacheMax, else the default share of the free disk, as help says', () => {
  assert.equal(compileWorkerConfig({ env: {}, flags: {} }).cacheMax, undefined, 'no fixed default');
  assert.equal(compileWorkerConfig({ env: { HIVEMIND_CACHE_MAX: '2g' }, flags: {} }).cacheMax, 2 * 1024 ** 3);
  assert.equal(compileWorkerConfig({ file: { worker: { cacheMax: '3g' } }, filePath: '/etc/hm.json', env: { HIVEMIND_CACHE_MAX: '2g' }, flags: { cacheMax: '1g' } }).cacheMax, 1024 ** 3, 'flag over env over file');
  assert.throws(() => compileWorkerConfig({ env: {}, flags: { cacheMax: 'lots' } }), /cache max/);
  assert.equal(cacheBudgetBytes(undefined, 1000), 1000 * WORKER_DEFAULTS.cacheFreeShare);
  assert.equal(cacheBudgetBytes(5, 1000), 5);
  assert.equal(helpDefaults('worker').get('--cache-max'), `${WORKER_DEFAULTS.cacheFreeShare * 100}% of the data dir's free disk at start`);
});
