// `hivemind service install | uninstall | status` against an in-memory host: which files with which
// bytes and modes, which commands, what is printed, and that a re-run changes nothing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Command } from 'commander';
import { registerServiceCommands } from '../../src/cli/commands/service-commands.js';
import { ServiceActions, ServiceError } from '../../src/service/service-actions.js';
import { installService, type InstallOptions, type ServiceRun } from '../../src/service/service-install.js';
import { formatServiceStatus, serviceStatus } from '../../src/service/service-status.js';
import { uninstallService } from '../../src/service/service-uninstall.js';
import { FakeServiceHost } from '../helpers/fake-service-host.js';

const RUN: ServiceRun = { program: 'install.sh', self: ['/opt/hivemind/hivemind'] };
const CONFIG = '/etc/hivemind/worker.json';
const EXE = '/usr/local/bin/hivemind';
const DATA = '/srv/hm';
const base: InstallOptions = { token: 'hm1.x', master: '127.0.0.1:7070', dataDir: DATA, executable: '/tmp/dl/hivemind', noStart: false, dryRun: false };

function host(): FakeServiceHost {
  const h = new FakeServiceHost('linux', { systemd: false });
  h.addFile('/tmp/dl/hivemind', 'release 1', 0o700);
  h.writesPidFile = `${DATA}/worker.pid`;
  return h;
}

const has = (h: FakeServiceHost, line: string) => assert.ok(h.stdout.includes(line), `${line}\n${h.stdout.join('\n')}`);

test('a background install: the executable, the config, the directories with their modes, and a started worker', async () => {
  const h = host();
  await installService(h, RUN, base);
  assert.equal(h.text(EXE), 'release 1');
  assert.equal(h.files.get(EXE)!.mode, 0o755);
  assert.deepEqual(JSON.parse(h.text(CONFIG)!), { worker: { master: '127.0.0.1:7070', token: 'hm1.x', drainTimeout: '10m', dataDir: DATA } });
  assert.equal(h.files.get(CONFIG)!.mode, 0o600);
  assert.equal(h.files.get(DATA)!.mode, 0o700);
  assert.equal(h.files.get('/var/log/hivemind')!.mode, 0o750);
  assert.deepEqual(h.started.map((s) => [s.argv.join(' '), s.env.HIVEMIND_HOME, s.outputFile]), [[`${EXE} --config ${CONFIG} worker start --log-file /var/log/hivemind/worker.log`, DATA, '/var/log/hivemind/worker.out']]);
  has(h, 'install.sh: installing the HiveMind worker (linux, service: background)');
  has(h, `install.sh: create ${EXE} (mode 0755)`);
  has(h, `+ nohup ${EXE} --config ${CONFIG} worker start --log-file /var/log/hivemind/worker.log >>/var/log/hivemind/worker.out 2>&1 &`);
  has(h, 'install.sh: worker running in the background, pid 4242');
  assert.match(h.stdout.at(-1)!, /^install\.sh: done: \d+ change\(s\)$/);
});

test('the same install again changes nothing, runs nothing and says so', async () => {
  const h = host();
  await installService(h, RUN, base);
  h.stdout.length = 0;
  await installService(h, RUN, base);
  has(h, `install.sh: unchanged: ${EXE}`);
  has(h, `install.sh: unchanged: ${CONFIG}`);
  has(h, 'install.sh: unchanged: the worker is running (pid 4242)');
  assert.equal(h.stdout.at(-1), 'install.sh: nothing changed');
  assert.equal(h.started.length, 1);
  assert.deepEqual(h.ran, []);
  assert.ok(!h.stdout.some((l) => l.startsWith('+ ')), h.stdout.join('\n'));
});

test('a changed config restarts the worker: `worker stop` with the drain timeout plus the margin, then a start; a re-run without --data-dir keeps the installed one', async () => {
  const h = host();
  await installService(h, RUN, { ...base, drainTimeout: '2m' });
  h.stdout.length = 0;
  await installService(h, { ...RUN, priorChanges: 1 }, { ...base, dataDir: undefined, drainTimeout: '2m', maxTasks: 3 });
  has(h, `install.sh: data dir ${DATA}, from ${CONFIG} (--data-dir DIR to choose another)`);
  has(h, 'install.sh: stop the worker (pid 4242): it drains for up to 2m');
  assert.deepEqual(h.ran, [`${EXE} worker stop --data-dir ${DATA} --timeout 150s`]);
  assert.equal(h.started.length, 2);
  assert.equal((JSON.parse(h.text(CONFIG)!) as { worker: { maxTasks: number } }).worker.maxTasks, 3);
  // the caller's own changes (install.sh: dependencies) count too
  assert.equal(h.stdout.at(-1), 'install.sh: done: 4 change(s)');
  assert.deepEqual(h.killed, []);

  h.exitCodes.set(`${EXE} worker stop --data-dir ${DATA} --timeout 150s`, 1);
  await installService(h, RUN, { ...base, drainTimeout: '2m', maxTasks: 4 });
  assert.deepEqual(h.killed, [4243], 'a worker that does not stop is killed');
});

test('a worker that exits at start: its output on stderr and exit 1', async () => {
  const h = host();
  h.writesPidFile = undefined;
  h.addFile('/var/log/hivemind/worker.out', 'hivemind: invalid configuration\n');
  const started = h.commands.startBackground;
  h.commands.startBackground = (argv, env, out) => {
    const p = started(argv, env, out);
    h.alive.delete(p.pid);
    return p;
  };
  await assert.rejects(installService(h, RUN, base), (e: ServiceError) => e.exitCode === 1 && /the worker exited at start/.test(e.message));
  assert.deepEqual(h.stderr, ['hivemind: invalid configuration']);
});

test('--service systemd --dry-run prints the unit and the systemctl commands, and writes nothing', async () => {
  const h = host();
  await installService(h, RUN, { ...base, dataDir: undefined, service: 'systemd', drainTimeout: '2m', dryRun: true });
  has(h, 'install.sh: dry run: nothing will be changed');
  has(h, '[dry-run] unit /etc/systemd/system/hivemind-worker.service:');
  has(h, '    TimeoutStopSec=150');
  has(h, `    ExecStart=${EXE} --config ${CONFIG} worker start`);
  for (const cmd of ['systemctl daemon-reload', 'systemctl enable hivemind-worker.service', 'systemctl start hivemind-worker.service']) has(h, `[dry-run] would run: ${cmd}`);
  has(h, '[dry-run] would create /var/lib/hivemind/ (mode 0700)');
  assert.match(h.stdout.at(-1)!, /^install\.sh: dry run: \d+ change\(s\) would be made; nothing was changed$/);
  assert.deepEqual([...h.files.keys()].filter((k) => !k.startsWith('/tmp')), []);
  assert.deepEqual(h.ran, []);
});

test('systemd: a changed unit reloads and restarts a running service; an unchanged one is left alone', async () => {
  const h = new FakeServiceHost('linux', { systemd: true });
  h.succeeding.add('systemctl is-enabled --quiet hivemind-worker.service').add('systemctl is-active --quiet hivemind-worker.service');
  await installService(h, { program: 'hivemind service', self: ['/usr/bin/node', '/lib/hivemind.js'] }, { token: 'hmj1.x', noStart: false, dryRun: false });
  assert.deepEqual(h.ran, ['systemctl daemon-reload', 'systemctl restart hivemind-worker.service']);
  assert.match(h.text('/etc/systemd/system/hivemind-worker.service')!, /^ExecStart=\/usr\/bin\/node \/lib\/hivemind\.js --config \/etc\/hivemind\/worker\.json worker start$/m);
  assert.equal(h.files.has(EXE), false, 'no executable given: no copy installed');
  h.ran.length = 0;
  h.stdout.length = 0;
  await installService(h, { program: 'hivemind service', self: ['/usr/bin/node', '/lib/hivemind.js'] }, { token: 'hmj1.x', noStart: false, dryRun: false });
  assert.deepEqual(h.ran, []);
  has(h, 'hivemind service: unchanged: hivemind-worker.service is enabled and running');
});

test('Windows dry run on Linux: icacls, the task XML, schtasks as typed in Git Bash; nothing runs', async () => {
  const h = new FakeServiceHost('linux');
  h.addFile('/tmp/hivemind-win-x64.exe', '');
  await installService(h, RUN, { token: 'hmj1.x', os: 'windows', executable: '/tmp/hivemind-win-x64.exe', noStart: false, dryRun: true });
  for (const line of [
    'install.sh: installing the HiveMind worker (windows, service: task)',
    '[dry-run] would create C:/Program Files/HiveMind/hivemind.exe (mode 0755)',
    '[dry-run] would run: icacls C:\\ProgramData\\HiveMind //inheritance:r //grant:r *S-1-5-18:(OI)(CI)F *S-1-5-32-544:(OI)(CI)F',
    '[dry-run] task HiveMindWorker (C:/ProgramData/HiveMind/HiveMindWorker.xml):',
    '          <Command>C:\\Program Files\\HiveMind\\hivemind.exe</Command>',
    '[dry-run] would run: schtasks //Create //TN HiveMindWorker //XML \\tmp\\scratch\\task-utf16.xml //F',
    '[dry-run] would run: schtasks //Run //TN HiveMindWorker',
  ]) {
    has(h, line);
  }
  assert.deepEqual(h.ran, []);
});

test('preconditions: another OS needs --dry-run (exit 2), a real install needs root (exit 1), a bad drain timeout is a usage error', async () => {
  await assert.rejects(installService(new FakeServiceHost('linux'), RUN, { ...base, executable: undefined, os: 'windows' }), (e: ServiceError) => e.exitCode === 2 && /--os windows on a linux machine works only with --dry-run/.test(e.message));
  await assert.rejects(installService(new FakeServiceHost('linux', { admin: false }), RUN, { ...base, executable: undefined }), (e: ServiceError) => e.exitCode === 1 && /^run as root \(sudo bash install\.sh \.\.\.\)/.test(e.message));
  await assert.rejects(installService(host(), RUN, { ...base, drainTimeout: '10minutes' }), (e: ServiceError) => e.exitCode === 2 && /--drain-timeout: "10minutes" is not a duration/.test(e.message));
  await assert.rejects(installService(host(), RUN, { ...base, service: 'task' }), (e: ServiceError) => e.exitCode === 2);
  await assert.rejects(installService(host(), RUN, { ...base, executable: '/nope' }), (e: ServiceError) => e.exitCode === 2 && /--executable: no such file/.test(e.message));
});

test('uninstall: drains with the installed drain timeout, removes the executable, keeps config and data; --purge removes them and the empty config dir', async () => {
  const h = host();
  await installService(h, RUN, { ...base, drainTimeout: '3m' });
  h.stdout.length = 0;
  await uninstallService(h, RUN, { purge: false, dryRun: false });
  has(h, 'install.sh: uninstalling the HiveMind worker (linux)');
  has(h, 'install.sh: stop the worker (pid 4242): it drains for up to 3m');
  assert.deepEqual(h.ran, [`${EXE} worker stop --data-dir ${DATA} --timeout 210s`]);
  has(h, `install.sh: remove ${EXE}`);
  assert.ok(h.files.has(CONFIG) && h.files.has(DATA));
  h.alive.clear();
  h.stdout.length = 0;
  await uninstallService(h, RUN, { purge: true, dryRun: false });
  for (const p of [CONFIG, DATA, '/var/log/hivemind', '/etc/hivemind']) {
    has(h, `install.sh: remove ${p}`);
    assert.equal(h.files.has(p), false, p);
  }
});

test('uninstall --os windows --purge --dry-run names the task and every path, and changes nothing', async () => {
  const h = new FakeServiceHost('linux');
  const env = { ProgramW6432: '/w/Program Files', ProgramData: '/w/ProgramData' };
  h.env = env;
  h.addFile('/w/Program Files/HiveMind/hivemind.exe', '');
  h.addFile('/w/ProgramData/HiveMind/worker.json', '{"worker": {"dataDir": "/w/ProgramData/HiveMind/node-data", "drainTimeout": "3m"}}');
  h.addDir('/w/ProgramData/HiveMind/node-data');
  const before = [...h.files.keys()];
  await uninstallService(h, RUN, { os: 'windows', purge: true, dryRun: true });
  for (const line of [
    'install.sh: data dir /w/ProgramData/HiveMind/node-data, from /w/ProgramData/HiveMind/worker.json (--data-dir DIR to choose another)',
    '[dry-run] would stop and delete the startup task HiveMindWorker (the worker drains first, up to 3m)',
    '[dry-run] would run: /w/Program Files/HiveMind/hivemind.exe worker stop --data-dir /w/ProgramData/HiveMind/node-data --timeout 210s',
    '[dry-run] would run: schtasks //End //TN HiveMindWorker',
    '[dry-run] would run: schtasks //Delete //TN HiveMindWorker //F',
    '[dry-run] would remove /w/Program Files/HiveMind/hivemind.exe',
    '[dry-run] would remove /w/ProgramData/HiveMind/node-data',
  ]) {
    has(h, line);
  }
  assert.deepEqual([...h.files.keys()], before);
});

test('a broken installed config stops an uninstall that needs it, naming the file and the options that do without it', async () => {
  const h = host();
  h.addFile(CONFIG, '{"worker": {"drainTimeout": "soon"}}');
  await assert.rejects(uninstallService(h, RUN, { purge: false, dryRun: true }), (e: ServiceError) => e.exitCode === 1 && e.message.includes(CONFIG) && /--data-dir DIR \(and --drain-timeout DUR\)/.test(e.message));
  await uninstallService(h, RUN, { purge: false, dryRun: true, dataDir: DATA, drainTimeout: '1m' });
});

test('status: installed or not, the mode, config, data dir, the running pid', async () => {
  const h = host();
  const before = serviceStatus(h, RUN, {});
  assert.deepEqual(before, { os: 'linux', installed: false, service: 'none', configFile: CONFIG, dataDir: '/var/lib/hivemind', executable: null, pid: null, serviceState: null });
  await installService(h, RUN, base);
  const after = serviceStatus(h, RUN, {});
  assert.deepEqual(after, { os: 'linux', installed: true, service: 'background', configFile: CONFIG, dataDir: DATA, executable: EXE, pid: 4242, serviceState: null });
  assert.match(formatServiceStatus(after), /^installed: +yes\nservice: +background\n[\s\S]*worker: +running, pid 4242\n$/);
});

test('files: same bytes with another mode get their mode set; other bytes replace the file', () => {
  const h = new FakeServiceHost('linux');
  h.addFile('/etc/hivemind/worker.json', 'same', 0o644);
  const a = new ServiceActions(h, 'hivemind service', false, 'linux');
  assert.equal(a.putFile('/etc/hivemind/worker.json', Buffer.from('same'), 0o600), true);
  assert.equal(h.files.get('/etc/hivemind/worker.json')!.mode, 0o600);
  assert.equal(a.putFile('/etc/hivemind/worker.json', Buffer.from('other'), 0o600), true);
  assert.equal(a.putFile('/etc/hivemind/worker.json', Buffer.from('other'), 0o600), false);
  assert.deepEqual(h.stdout, ['hivemind service: set mode 0600 on /etc/hivemind/worker.json', 'hivemind service: replace /etc/hivemind/worker.json (mode 0600)', 'hivemind service: unchanged: /etc/hivemind/worker.json']);
  // Windows has no modes to compare
  const w = new ServiceActions(h, 'x', false, 'windows');
  assert.equal(w.putFile('/etc/hivemind/worker.json', Buffer.from('other'), 0o644), false);
  assert.equal(a.changes, 2);
});

test('the CLI speaks under the caller\'s name: a usage error is exit 2 with "see <caller> --help", before anything is done', async () => {
  const run = async (args: string[]) => {
    const out: string[] = [];
    const err: string[] = [];
    let code = 0;
    const program = new Command().exitOverride();
    registerServiceCommands(program, (c) => (code = c), () => ({ stdout: { write: (s: string) => out.push(s) } as unknown as NodeJS.WritableStream, stderr: { write: (s: string) => err.push(s) } as unknown as NodeJS.WritableStream, env: {} }));
    await program.parseAsync(['node', 'hivemind', 'service', ...args]);
    return { code, out: out.join(''), err: err.join('') };
  };
  const bad = await run(['install', '--token', 'hm1.x', '--drain-timeout', 'soon', '--dry-run', '--caller', 'install.sh']);
  assert.equal(bad.code, 2);
  assert.equal(bad.err, 'install.sh: --drain-timeout: "soon" is not a duration (examples: 30s, 10m, 1h30m)\ninstall.sh: see install.sh --help\n');
  assert.equal(bad.out, '');
  const direct = await run(['install', '--token', 'hm1.x', '--os', 'windows', '--service', 'systemd', '--dry-run']);
  assert.equal(direct.code, 2);
  assert.equal(direct.err, 'hivemind service: --service systemd is for Linux; Windows uses a startup task\nhivemind service: see hivemind service --help\n');
});
