import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { compileWorkerConfig } from '../../src/config/worker-config.js';
import { compileMasterConfig } from '../../src/config/master-config.js';
import { compileClientConfig } from '../../src/config/client-config.js';
import { keyLine, readConfigFile } from '../../src/config/config-file.js';
import { ConfigError } from '../../src/common/errors.js';
import { z } from 'zod';
import { compileSection, zMasterList } from '../../src/config/layered-config.js';

test('worker config: file < env < flags, durations and sizes compiled once', () => {
  const file = { worker: { master: '10.0.0.1:7070', maxTasks: 1, reportInterval: '1m', memory: '2g' } };
  const env = { HIVEMIND_MAX_TASKS: '3', HIVEMIND_HOME: '/srv/hm' };
  const c = compileWorkerConfig({ file, env, flags: { maxTasks: '4', drainTimeout: '90s' } });
  assert.deepEqual(c.master, ['10.0.0.1:7070']);
  assert.equal(c.maxTasks, 4);
  assert.equal(c.reportIntervalMs, 60_000);
  assert.equal(c.drainTimeoutMs, 90_000);
  assert.equal(c.memory, 2 * 1024 ** 3);
  assert.equal(c.dataDir, '/srv/hm/worker');
  const fromEnv = compileWorkerConfig({ file, env, flags: {} });
  assert.equal(fromEnv.maxTasks, 3);
  assert.equal(compileWorkerConfig({ env: {}, flags: {} }).reportIntervalMs, undefined, 'no interval configured: the worker takes the master\'s');
});

test('worker config: a bad value names its source and the expected form', () => {
  assert.throws(
    () => compileWorkerConfig({ env: { HIVEMIND_MAX_TASKS: 'lots' }, flags: { master: '127.0.0.1:7070' } }),
    (err: unknown) => err instanceof ConfigError && /environment variable HIVEMIND_MAX_TASKS/.test(err.message) && /number/.test(err.message),
  );
  assert.throws(
    () => compileWorkerConfig({ env: {}, flags: { master: 'nowhere' } }),
    (err: unknown) => err instanceof ConfigError && /flag --master: expected HOST:PORT/.test(err.message),
  );
  assert.throws(
    () => compileWorkerConfig({ env: {}, flags: { master: '127.0.0.1:7070', reportInterval: 'soon' } }),
    (err: unknown) => err instanceof ConfigError && /flag --report-interval/.test(err.message) && /not a duration/.test(err.message),
  );
  // --master is optional now (a join token replaces it); the tunnel interface name is checked here.
  assert.throws(() => compileWorkerConfig({ env: {}, flags: { wgInterface: 'a-name-far-too-long' } }), /flag --wg-interface: expected letters/);
});

test('worker config: the image budget and unused-for time, defaults and every source', () => {
  const d = compileWorkerConfig({ env: {}, flags: {} });
  assert.equal(d.imageBudget, 20 * 1024 ** 3);
  assert.equal(d.imageUnusedForMs, 24 * 3_600_000);
  const file = { worker: { imageBudget: '5g', imageUnusedFor: '2h' } };
  const fromFile = compileWorkerConfig({ file, env: {}, flags: {} });
  assert.equal(fromFile.imageBudget, 5 * 1024 ** 3);
  assert.equal(fromFile.imageUnusedForMs, 2 * 3_600_000);
  const env = { HIVEMIND_IMAGE_BUDGET: '512m', HIVEMIND_IMAGE_UNUSED_FOR: '30m' };
  const fromEnv = compileWorkerConfig({ file, env, flags: {} });
  assert.equal(fromEnv.imageBudget, 512 * 1024 ** 2);
  assert.equal(fromEnv.imageUnusedForMs, 30 * 60_000);
  const fromFlags = compileWorkerConfig({ file, env, flags: { imageBudget: '0', imageUnusedFor: '1h30m' } });
  assert.equal(fromFlags.imageBudget, 0, 'a zero budget prunes every unused pulled image');
  assert.equal(fromFlags.imageUnusedForMs, 90 * 60_000);
});

test('worker config: allowUnboundedOutput is off by default and set by the file, the env or the flag', () => {
  assert.equal(compileWorkerConfig({ env: {}, flags: {} }).allowUnboundedOutput, false);
  const file = { worker: { allowUnboundedOutput: true } };
  assert.equal(compileWorkerConfig({ file, env: {}, flags: {} }).allowUnboundedOutput, true);
  assert.equal(compileWorkerConfig({ env: { HIVEMIND_ALLOW_UNBOUNDED_OUTPUT: 'true' }, flags: {} }).allowUnboundedOutput, true);
  assert.equal(compileWorkerConfig({ env: { HIVEMIND_ALLOW_UNBOUNDED_OUTPUT: '1' }, flags: {} }).allowUnboundedOutput, true);
  // commander gives a bare --allow-unbounded-output as true
  assert.equal(compileWorkerConfig({ env: {}, flags: { allowUnboundedOutput: true } }).allowUnboundedOutput, true);
  // env over file, as for every key
  assert.equal(compileWorkerConfig({ file, env: { HIVEMIND_ALLOW_UNBOUNDED_OUTPUT: 'false' }, flags: {} }).allowUnboundedOutput, false);
  assert.throws(
    () => compileWorkerConfig({ env: { HIVEMIND_ALLOW_UNBOUNDED_OUTPUT: 'yes please' }, flags: {} }),
    (err: unknown) => err instanceof ConfigError && /environment variable HIVEMIND_ALLOW_UNBOUNDED_OUTPUT: expected true or false/.test(err.message),
  );
  assert.throws(
    () => compileWorkerConfig({ file: { worker: { allowUnboundedOutput: 'sure' } }, filePath: '/etc/hm.json', env: {}, flags: {} }),
    (err: unknown) => err instanceof ConfigError && /"worker.allowUnboundedOutput" in \/etc\/hm.json: expected true or false/.test(err.message),
  );
});

test('worker config: a bad image budget or unused-for time names its source and the form expected', () => {
  assert.throws(
    () => compileWorkerConfig({ env: { HIVEMIND_IMAGE_BUDGET: 'lots' }, flags: {} }),
    (err: unknown) => err instanceof ConfigError && /environment variable HIVEMIND_IMAGE_BUDGET: image budget: "lots" is not a size \(examples: 512m, 2g/.test(err.message),
  );
  assert.throws(
    () => compileWorkerConfig({ env: {}, flags: { imageBudget: '-1g' } }),
    (err: unknown) => err instanceof ConfigError && /flag --image-budget: image budget: "-1g" is not a size/.test(err.message),
  );
  assert.throws(
    () => compileWorkerConfig({ file: { worker: { imageBudget: -5 } }, filePath: '/etc/hm.json', env: {}, flags: {} }),
    (err: unknown) => err instanceof ConfigError && /"worker.imageBudget" in \/etc\/hm.json: image budget: -5 is not a valid size/.test(err.message),
  );
  assert.throws(
    () => compileWorkerConfig({ env: {}, flags: { imageUnusedFor: 'a day' } }),
    (err: unknown) => err instanceof ConfigError && /flag --image-unused-for: image unused for: "a day" is not a duration \(examples: 30s/.test(err.message),
  );
  assert.throws(
    () => compileWorkerConfig({ env: { HIVEMIND_IMAGE_UNUSED_FOR: '24hours' }, flags: {} }),
    (err: unknown) => err instanceof ConfigError && /environment variable HIVEMIND_IMAGE_UNUSED_FOR/.test(err.message),
  );
});

test('config file: unknown keys, wrong types and JSON syntax errors name the line and the fix', () => {
  const dir = mkdtempSync(join(tmpdir(), 'hm-config-'));
  const compile = (path: string) => {
    const loaded = readConfigFile(path);
    return compileWorkerConfig({ file: loaded.values, fileText: loaded.text, filePath: path, env: {}, flags: {} });
  };
  try {
    const bad = join(dir, 'bad.json');
    writeFileSync(bad, '{\n  "worker": {\n    "maxTasks": 2,\n  }\n}\n');
    assert.throws(() => readConfigFile(bad), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.match(err.message, /^config file \S+bad\.json is not valid JSON at line 4, column 3: .+\n  4 \|   \}\n    \|   \^\nfix the JSON there \(no comments, no trailing commas, keys in double quotes\)$/);
      return true;
    });
    const typo = join(dir, 'typo.json');
    writeFileSync(typo, '{\n  "worker": {\n    "master": "127.0.0.1:1",\n    "maxTask": 2\n  }\n}\n');
    assert.throws(() => compile(typo), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.match(err.message, /^config file \S+typo\.json line 4: unknown key "worker\.maxTask"; did you mean "maxTasks"\? \(known keys: .*maxTasks/);
      return true;
    });
    const far = join(dir, 'far.json');
    writeFileSync(far, JSON.stringify({ worker: { master: '127.0.0.1:1', colour: 'blue' } }));
    assert.throws(() => compile(far), (err: unknown) => err instanceof ConfigError && /far\.json line 1: unknown key "worker\.colour"; \(known keys: /.test(err.message));
    const type = join(dir, 'type.json');
    writeFileSync(type, '{\n  "worker": {\n    "master": "127.0.0.1:1",\n\n    "maxTasks": "two"\n  }\n}\n');
    assert.throws(() => compile(type), (err: unknown) => err instanceof ConfigError && /"worker\.maxTasks" in \S+type\.json line 5: expected a number/.test(err.message));
    assert.throws(() => readConfigFile(join(dir, 'absent.json')), /cannot read config file \S+absent\.json: ENOENT.*; pass an existing file to --config \(or HIVEMIND_CONFIG\), or none/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('keyLine finds a key inside its section, not a same-named key elsewhere', () => {
  const text = '{\n  "master": {\n    "dataDir": "/m"\n  },\n  "worker": {\n    "name": "n",\n    "dataDir": "/w"\n  }\n}\n';
  assert.equal(keyLine(text, 'worker', 'dataDir'), 7);
  assert.equal(keyLine(text, 'master', 'dataDir'), 3);
  assert.equal(keyLine('{"worker": {"maxTasks": 1}}', 'worker', 'maxTasks'), 1);
  assert.equal(keyLine(text, 'worker', 'absent'), undefined);
});

test('master config defaults to loopback and 3 attempts', () => {
  const c = compileMasterConfig({ env: { HIVEMIND_HOME: '/x' }, flags: {} });
  assert.equal(c.listen, '127.0.0.1:7070');
  assert.equal(c.maxAttempts, 3);
  assert.equal(c.reportIntervalMs, 30_000);
  assert.equal(c.dataDir, '/x/master');
});

test('master config: the node timeout defaults to 3 report intervals and may not be shorter than one', () => {
  assert.equal(compileMasterConfig({ env: {}, flags: {} }).nodeTimeoutMs, 90_000);
  assert.equal(compileMasterConfig({ env: {}, flags: { reportInterval: '2s' } }).nodeTimeoutMs, 6000, 'follows the report interval');
  assert.equal(compileMasterConfig({ env: { HIVEMIND_NODE_TIMEOUT: '5m' }, flags: {} }).nodeTimeoutMs, 300_000);
  assert.equal(compileMasterConfig({ env: { HIVEMIND_NODE_TIMEOUT: '5m' }, flags: { nodeTimeout: '45s' } }).nodeTimeoutMs, 45_000, 'the flag wins');
  assert.equal(compileMasterConfig({ env: {}, flags: { reportInterval: '10s', nodeTimeout: '10s' } }).nodeTimeoutMs, 10_000, 'one interval is allowed');
  assert.throws(
    () => compileMasterConfig({ env: { HIVEMIND_REPORT_INTERVAL: '10s' }, flags: { nodeTimeout: '5s' } }),
    (err: unknown) => err instanceof ConfigError && err.message.includes('flag --node-timeout: 5.0s is shorter than the report interval (10.0s)'),
  );
  assert.throws(
    () => compileMasterConfig({ file: { master: { nodeTimeout: '20s' } }, filePath: '/etc/hm.json', env: {}, flags: {} }),
    (err: unknown) => err instanceof ConfigError && err.message.includes('"master.nodeTimeout" in /etc/hm.json: 20.0s is shorter than the report interval (30.0s)'),
  );
  assert.throws(
    () => compileMasterConfig({ env: {}, flags: { nodeTimeout: 'soon' } }),
    (err: unknown) => err instanceof ConfigError && /flag --node-timeout: node timeout: "soon" is not a duration/.test(err.message),
  );
});

test('master config: the gateway listens where --gateway-listen says, or not at all with "off"', () => {
  assert.equal(compileMasterConfig({ env: { HIVEMIND_GATEWAY_LISTEN: '0.0.0.0:80' }, flags: {} }).gatewayListen, '0.0.0.0:80');
  assert.equal(compileMasterConfig({ env: { HIVEMIND_GATEWAY_LISTEN: '0.0.0.0:80' }, flags: { gatewayListen: 'off' } }).gatewayListen, 'off', 'the flag wins');
  assert.equal(compileMasterConfig({ file: { master: { gatewayListen: '[::1]:8088' } }, env: {}, flags: {} }).gatewayListen, '[::1]:8088');
  assert.throws(
    () => compileMasterConfig({ env: {}, flags: { gatewayListen: '8088' } }),
    (err: unknown) => err instanceof ConfigError && err.message.includes('flag --gateway-listen: expected HOST:PORT or off'),
  );
});

test('master config: --rpc-threads is a whole number from 0 to MAX_RPC_THREADS, 1 by default; past it a ConfigError names the bound', () => {
  assert.equal(compileMasterConfig({ env: {}, flags: {} }).rpcThreads, 1);
  assert.equal(compileMasterConfig({ env: { HIVEMIND_RPC_THREADS: '0' }, flags: {} }).rpcThreads, 0);
  assert.equal(compileMasterConfig({ env: { HIVEMIND_RPC_THREADS: '0' }, flags: { rpcThreads: '2' } }).rpcThreads, 2, 'the flag wins');
  for (const bad of ['17', '-1', '1.5', 'many']) {
    assert.throws(() => compileMasterConfig({ env: {}, flags: { rpcThreads: bad } }), (err: unknown) => err instanceof ConfigError && err.message.includes('flag --rpc-threads'), bad);
  }
  assert.throws(() => compileMasterConfig({ env: {}, flags: { rpcThreads: '17' } }), /must be at most 16/);
});

test('master config: the operations listener listens where --metrics-listen says, or not at all with "off"', () => {
  assert.equal(compileMasterConfig({ env: {}, flags: {} }).metricsListen, '127.0.0.1:9464');
  assert.equal(compileMasterConfig({ env: { HIVEMIND_METRICS_LISTEN: '0.0.0.0:9100' }, flags: {} }).metricsListen, '0.0.0.0:9100');
  assert.equal(compileMasterConfig({ env: { HIVEMIND_METRICS_LISTEN: '0.0.0.0:9100' }, flags: { metricsListen: 'off' } }).metricsListen, 'off', 'the flag wins');
  assert.equal(compileMasterConfig({ file: { master: { metricsListen: '127.0.0.1:0' } }, env: {}, flags: {} }).metricsListen, '127.0.0.1:0');
  assert.throws(
    () => compileMasterConfig({ env: {}, flags: { metricsListen: '9464' } }),
    (err: unknown) => err instanceof ConfigError && err.message.includes('flag --metrics-listen: expected HOST:PORT or off'),
  );
});

test('client config falls back to the dev master file, and says what to do without one', () => {
  const home = mkdtempSync(join(tmpdir(), 'hm-home-'));
  try {
    assert.throws(() => compileClientConfig({ env: { HIVEMIND_HOME: home }, flags: {} }), /hivemind dev/);
    mkdirSync(join(home, 'dev'), { recursive: true });
    writeFileSync(join(home, 'dev', 'client.json'), JSON.stringify({ master: '127.0.0.1:7071', adminToken: 'abc' }));
    assert.deepEqual(compileClientConfig({ env: { HIVEMIND_HOME: home }, flags: {} }), { masters: ['127.0.0.1:7071'], adminToken: 'abc' });
    assert.deepEqual(compileClientConfig({ env: { HIVEMIND_HOME: home, HIVEMIND_MASTER: '127.0.0.1:9' }, flags: {} }).masters, ['127.0.0.1:9']);
  } finally {
    rmSync(home, { recursive: true, force: true });
  }
});

test('client config without zod: the same errors, word for word, as the zod schema it replaced', () => {
  // The schema client-config.ts had, checked through the servers' path (layered-config.ts).
  const schema = z.object({ master: zMasterList, adminToken: z.string().min(1).optional() }).strict();
  const fields = { master: { env: 'HIVEMIND_MASTER', flag: 'master' }, adminToken: { env: 'HIVEMIND_ADMIN_TOKEN', flag: 'adminToken' } };
  const fileText = '{\n  "client": {\n    "master": 7070,\n    "adminToken": ""\n  }\n}\n';
  const inputs = [
    { env: {}, flags: { master: 'no-port', adminToken: '' } },
    { env: { HIVEMIND_MASTER: 'a b:1' }, flags: { adminToken: 't' } },
    { file: { client: { master: 7070, adminToken: '' } }, filePath: '/etc/hm.json', fileText, env: {}, flags: {} },
    { file: { client: { master: null, adminToken: ['t'] } }, env: {}, flags: {} },
    { file: { client: { master: { host: 'x' }, adminToken: true } }, env: {}, flags: {} },
    { file: { client: { mastr: '127.0.0.1:1' } }, env: {}, flags: {} },
    { file: { client: 'x' }, env: {}, flags: {} },
  ];
  const message = (f: () => unknown) => {
    try {
      f();
    } catch (err) {
      assert.ok(err instanceof ConfigError, String(err));
      return err.message;
    }
    return assert.fail('no error');
  };
  for (const input of inputs) {
    const expected = message(() => compileSection('client', schema, fields, input));
    assert.equal(message(() => compileClientConfig(input)), expected, JSON.stringify(input));
  }
  assert.match(message(() => compileClientConfig(inputs[2]!)), /"client\.master" in \/etc\/hm\.json line 3: expected HOST:PORT or a comma-separated list of them, received number\n.*"client\.adminToken" in \/etc\/hm\.json line 4: Too small/);
  assert.deepEqual(compileClientConfig({ env: { HIVEMIND_MASTER: '[::1]:7070' }, flags: { adminToken: 'T' } }), { masters: ['[::1]:7070'], adminToken: 'T' });
});

test('worker config: labels and name the master would refuse are refused at start, naming the source', () => {
  const refused = (input: Parameters<typeof compileWorkerConfig>[0], re: RegExp) =>
    assert.throws(() => compileWorkerConfig(input), (err: unknown) => err instanceof ConfigError && re.test(err.message), JSON.stringify(input).slice(0, 80));
  const many = Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`l${i}`, 'v']));
  refused({ file: { worker: { labels: many } }, env: {}, flags: {} }, /labels.*65 labels, over the limit of 64/);
  refused({ env: { HIVEMIND_LABELS: 'zone=eu,a b=c' }, flags: {} }, /HIVEMIND_LABELS.*label "a b" may only hold letters, digits and _ \. - \//);
  refused({ env: {}, flags: { label: [`k=${'v'.repeat(257)}`] } }, /--label.*has a value over 256 characters/);
  refused({ file: { worker: { labels: { tier: 'gold\u001b[2J' } } }, env: {}, flags: {} }, /label "tier" has a value with control characters/);
  refused({ env: { HIVEMIND_NAME: 'box\u001b]0;owned\u0007' }, flags: {} }, /HIVEMIND_NAME.*no control characters/);
  const ok = compileWorkerConfig({ env: { HIVEMIND_LABELS: 'zone=eu-west,example.org/tier=gold' }, flags: {} });
  assert.deepEqual(ok.labels, { zone: 'eu-west', 'example.org/tier': 'gold' });
  const proto = compileWorkerConfig({ env: { HIVEMIND_LABELS: '__proto__=x' }, flags: {} });
  assert.deepEqual(Object.keys(proto.labels ?? {}), ['__proto__'], 'a label named __proto__ stays a label');
});

test('worker config: the gateway port and services, defaults and every source', () => {
  const d = compileWorkerConfig({ env: {}, flags: {} });
  assert.equal(d.gatewayPort, 7947);
  assert.equal(d.services, true);
  const file = { worker: { gatewayPort: 9000, services: false } };
  const fromFile = compileWorkerConfig({ file, env: {}, flags: {} });
  assert.equal(fromFile.gatewayPort, 9000);
  assert.equal(fromFile.services, false);
  const env = { HIVEMIND_GATEWAY_PORT: '0', HIVEMIND_SERVICES: 'true' };
  const fromEnv = compileWorkerConfig({ file, env, flags: {} });
  assert.equal(fromEnv.gatewayPort, 0, '0 = a free port');
  assert.equal(fromEnv.services, true);
  const fromFlags = compileWorkerConfig({ file, env, flags: { gatewayPort: '7000', services: false } });
  assert.equal(fromFlags.gatewayPort, 7000);
  assert.equal(fromFlags.services, false, '--no-services');
  assert.throws(() => compileWorkerConfig({ env: { HIVEMIND_GATEWAY_PORT: '70000' }, flags: {} }), /HIVEMIND_GATEWAY_PORT/);
  assert.throws(() => compileWorkerConfig({ env: {}, flags: { gatewayPort: 'high' } }), /--gateway-port/);
  assert.throws(() => compileWorkerConfig({ env: { HIVEMIND_SERVICES: 'maybe' }, flags: {} }), /HIVEMIND_SERVICES: expected true or false/);
});

test('worker config: exec on by default, turned off from the file, env or --no-exec', () => {
  assert.equal(compileWorkerConfig({ env: {}, flags: {} }).exec, true);
  const file = { worker: { exec: false } };
  assert.equal(compileWorkerConfig({ file, env: {}, flags: {} }).exec, false);
  assert.equal(compileWorkerConfig({ file, env: { HIVEMIND_EXEC: 'true' }, flags: {} }).exec, true, 'env over the file');
  assert.equal(compileWorkerConfig({ env: { HIVEMIND_EXEC: 'true' }, flags: { exec: false } }).exec, false, '--no-exec over env');
  assert.throws(() => compileWorkerConfig({ env: { HIVEMIND_EXEC: 'perhaps' }, flags: {} }), /HIVEMIND_EXEC: expected true or false/);
});

test('worker config: the handover wait of a drain, 30 s by default, from env or flag; negative refused', () => {
  assert.equal(compileWorkerConfig({ env: {}, flags: {} }).handoverWaitMs, 30_000);
  assert.equal(compileWorkerConfig({ env: { HIVEMIND_HANDOVER_WAIT: '2m' }, flags: {} }).handoverWaitMs, 120_000);
  assert.equal(compileWorkerConfig({ env: { HIVEMIND_HANDOVER_WAIT: '2m' }, flags: { handoverWait: '5s' } }).handoverWaitMs, 5_000);
  assert.throws(() => compileWorkerConfig({ env: {}, flags: { handoverWait: 'soon' } }), (err: unknown) => err instanceof ConfigError && /handover wait/.test(err.message));
});
