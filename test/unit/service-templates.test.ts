// The systemd unit and the Windows task as text: rendered from the template files with the
// node's paths and drain timeout, XML-escaped, with Windows paths; and the installed config.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { durationText, parseDuration } from '../../src/common/units.js';
import { WORKER_DEFAULTS } from '../../src/config/defaults.js';
import { DEFAULT_DRAIN_TIMEOUT, InstalledConfigError, parseInstalledConfig, renderInstalledConfig } from '../../src/service/installed-config.js';
import { serviceLayout, stopTimeoutSeconds, windowsPath } from '../../src/service/service-layout.js';
import { fillTemplate, loadTemplate, renderSystemdUnit, renderWindowsTask, SYSTEMD_UNIT_TEMPLATE, WINDOWS_TASK_TEMPLATE, xmlEscape } from '../../src/service/service-templates.js';
import { ConfigError } from '../../src/common/errors.js';

const lines = (text: string) => text.split('\n');

test('the systemd unit: ExecStart, the drain and its stop timeout, the state directory, the hardening', () => {
  const unit = renderSystemdUnit({ command: ['/usr/local/bin/hivemind'], configFile: '/etc/hivemind/worker.json', dataDir: '/var/lib/hivemind', drainTimeout: '2m', drainTimeoutMs: 120_000 });
  const l = lines(unit);
  for (const line of [
    'ExecStart=/usr/local/bin/hivemind --config /etc/hivemind/worker.json worker start',
    'Environment=HIVEMIND_HOME=/var/lib/hivemind',
    'Restart=on-failure',
    'RestartPreventExitStatus=2',
    'KillSignal=SIGTERM',
    'KillMode=mixed',
    'TimeoutStopSec=150',
    'StateDirectory=hivemind',
    'StateDirectoryMode=0700',
    'LogsDirectory=hivemind',
    'ProtectSystem=strict',
    'ReadWritePaths=/run',
    'CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW CAP_CHOWN CAP_DAC_OVERRIDE CAP_FOWNER CAP_KILL',
    'UMask=0077',
    'WantedBy=multi-user.target',
  ]) {
    assert.ok(l.includes(line), `${line}\n${unit}`);
  }
  assert.ok(unit.includes('timeout, 2m); whatever is left is killed after the drain timeout plus 30s.'), unit);
  assert.doesNotMatch(unit, /\{\{|\}\}/, 'every placeholder filled');
  assert.ok(unit.endsWith('WantedBy=multi-user.target\n'));
  assert.equal(l.filter((x) => x.startsWith('ReadWritePaths=')).length, 1, 'only /run');
});

test('the systemd unit for another data dir makes it writable instead of a StateDirectory, and runs node with the CLI script when there is no installed copy', () => {
  const unit = renderSystemdUnit({ command: ['/usr/bin/node', '/usr/lib/node_modules/hivemind-worker/dist/src/cli/hivemind.js'], configFile: '/etc/hivemind/worker.json', dataDir: '/srv/hm', drainTimeout: '1h30m', drainTimeoutMs: parseDuration('1h30m') });
  const l = lines(unit);
  assert.ok(l.includes('ExecStart=/usr/bin/node /usr/lib/node_modules/hivemind-worker/dist/src/cli/hivemind.js --config /etc/hivemind/worker.json worker start'), unit);
  assert.ok(l.includes('ReadWritePaths=/srv/hm'), unit);
  assert.ok(!l.some((x) => x.startsWith('StateDirectory')), unit);
  assert.ok(l.includes(`TimeoutStopSec=${5400 + 30}`), unit);
  assert.equal(stopTimeoutSeconds(250), 31, 'a part of a second counts as a whole one');
});

test('the Windows task: boot trigger as SYSTEM, no time limit, backslashed and XML-escaped paths', () => {
  const layout = serviceLayout('windows', undefined, { ProgramW6432: 'C:\\Program Files', ProgramData: 'C:\\ProgramData' });
  assert.equal(layout.exe, 'C:\\Program Files/HiveMind/hivemind.exe');
  const xml = renderWindowsTask({ command: [layout.exe], configFile: layout.configFile, dataDir: 'C:/Data/R&D <nodes>', logDir: layout.logDir });
  for (const text of [
    '<?xml version="1.0" encoding="UTF-16"?>',
    '<BootTrigger>',
    '<UserId>S-1-5-18</UserId>',
    '<ExecutionTimeLimit>PT0S</ExecutionTimeLimit>',
    '<RestartOnFailure>',
    '<Command>C:\\Program Files\\HiveMind\\hivemind.exe</Command>',
    '<Arguments>--config "C:\\ProgramData\\HiveMind\\worker.json" worker start --log-file "C:\\ProgramData\\HiveMind\\logs\\worker.log"</Arguments>',
    '<WorkingDirectory>C:\\Data\\R&amp;D &lt;nodes&gt;</WorkingDirectory>',
  ]) {
    assert.ok(xml.includes(text), `${text}\n${xml}`);
  }
  assert.doesNotMatch(xml, /\{\{|\}\}/);
});

test('the Windows task runs node with the CLI script, quoted, when there is no installed copy', () => {
  const xml = renderWindowsTask({ command: ['C:/node/node.exe', 'C:/npm/hivemind-worker/dist/src/cli/hivemind.js'], configFile: 'C:/ProgramData/HiveMind/worker.json', dataDir: 'C:/ProgramData/HiveMind/worker', logDir: 'C:/ProgramData/HiveMind/logs' });
  assert.ok(xml.includes('<Command>C:\\node\\node.exe</Command>'), xml);
  assert.ok(xml.includes('<Arguments>"C:\\npm\\hivemind-worker\\dist\\src\\cli\\hivemind.js" --config "C:\\ProgramData\\HiveMind\\worker.json" worker start'), xml);
});

test('templates: every placeholder must have a value and every value a placeholder', () => {
  assert.equal(fillTemplate('a={{A}} b={{B}}', { A: '1', B: '2' }), 'a=1 b=2');
  assert.throws(() => fillTemplate('a={{A}}', {}), /\{\{A\}\} has no value/);
  assert.throws(() => fillTemplate('a', { A: '1' }), /no placeholder for A/);
  assert.match(loadTemplate(SYSTEMD_UNIT_TEMPLATE), /^\[Service\]$/m);
  assert.match(loadTemplate(WINDOWS_TASK_TEMPLATE), /<Task /);
  assert.equal(xmlEscape('<a href="x">&</a>'), '&lt;a href=&quot;x&quot;&gt;&amp;&lt;/a&gt;');
  assert.equal(windowsPath('C:/ProgramData/HiveMind'), 'C:\\ProgramData\\HiveMind');
});

test('the layouts: Linux paths, and Windows ones from ProgramW6432 / ProgramFiles / ProgramData or their defaults', () => {
  const linux = serviceLayout('linux', undefined, {});
  assert.deepEqual([linux.exe, linux.configFile, linux.defaultDataDir, linux.logDir, linux.unitFile], ['/usr/local/bin/hivemind', '/etc/hivemind/worker.json', '/var/lib/hivemind', '/var/log/hivemind', '/etc/systemd/system/hivemind-worker.service']);
  assert.equal(serviceLayout('linux', '/opt/bin', {}).exe, '/opt/bin/hivemind');
  const win = serviceLayout('windows', undefined, {});
  assert.deepEqual([win.exe, win.configFile, win.defaultDataDir, win.logDir, win.taskXml], ['C:/Program Files/HiveMind/hivemind.exe', 'C:/ProgramData/HiveMind/worker.json', 'C:/ProgramData/HiveMind/worker', 'C:/ProgramData/HiveMind/logs', 'C:/ProgramData/HiveMind/HiveMindWorker.xml']);
  assert.equal(serviceLayout('windows', undefined, { ProgramFiles: 'D:/PF', ProgramW6432: '' }).exe, 'D:/PF/HiveMind/hivemind.exe');
});

test('the installed config: one key a line in a fixed order, checked by the worker\'s schema', () => {
  const text = renderInstalledConfig({ master: '10.0.0.5:7070', token: 'hm1.x', name: 'n1', maxTasks: 3, monitorPort: 0, drainTimeout: '10m', allowUnboundedOutput: false, dataDir: '/srv/a "b"\\c' }, '/etc/hivemind/worker.json');
  assert.equal(text, ['{', '  "worker": {', '    "master": "10.0.0.5:7070",', '    "token": "hm1.x",', '    "name": "n1",', '    "maxTasks": 3,', '    "monitorPort": 0,', '    "drainTimeout": "10m",', '    "dataDir": "/srv/a \\"b\\"\\\\c"', '  }', '}', ''].join('\n'));
  const win = renderInstalledConfig({ token: 'hmj1.x', drainTimeout: '10m', allowUnboundedOutput: true, dataDir: 'C:/ProgramData/HiveMind/worker' }, 'worker.json');
  assert.match(win, /"drainTimeout": "10m",\n {4}"allowUnboundedOutput": true,\n {4}"dataDir"/);
  assert.throws(() => renderInstalledConfig({ master: 'nohost', token: 'x', drainTimeout: '10m', allowUnboundedOutput: false, dataDir: '/d' }, 'worker.json'), ConfigError);
  assert.throws(() => renderInstalledConfig({ token: 'x', drainTimeout: 'soon', allowUnboundedOutput: false, dataDir: '/d' }, 'worker.json'), ConfigError);
});

test('reading the installed config: data dir and drain timeout through the schema; a broken file is an error', () => {
  assert.deepEqual(parseInstalledConfig('{"worker": {"dataDir": "/srv/hm", "drainTimeout": "3m"}}', '/etc/hivemind/worker.json'), { dataDir: '/srv/hm', drainTimeout: { text: '3m', ms: 180_000 } });
  assert.deepEqual(parseInstalledConfig('{"worker": {"drainTimeout": 90}}', 'w.json'), { dataDir: undefined, drainTimeout: { text: '1m30s', ms: 90_000 } });
  assert.deepEqual(parseInstalledConfig('{}', 'w.json'), { dataDir: undefined, drainTimeout: DEFAULT_DRAIN_TIMEOUT });
  assert.throws(() => parseInstalledConfig('{"worker": {"drainTimeout": "soon"}}', '/etc/hivemind/worker.json'), (e: Error) => e instanceof InstalledConfigError && /\/etc\/hivemind\/worker\.json/.test(e.message) && /soon/.test(e.message));
  assert.throws(() => parseInstalledConfig('{"worker": ', 'w.json'), InstalledConfigError);
  assert.equal(DEFAULT_DRAIN_TIMEOUT.ms, WORKER_DEFAULTS.drainTimeoutMs);
  assert.equal(DEFAULT_DRAIN_TIMEOUT.text, '10m');
});

test('durationText writes the shortest text parseDuration reads back', () => {
  for (const ms of [0, 250, 1000, 90_000, 600_000, 5_400_000, 86_400_000 + 1500]) assert.equal(parseDuration(durationText(ms)), ms, durationText(ms));
  assert.equal(durationText(600_000), '10m');
  assert.equal(durationText(5_400_000), '1h30m');
});
