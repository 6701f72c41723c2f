// install.sh, for real: shellcheck-clean, precise about bad arguments, and in a fresh Debian
// container without systemd (no Node, no docker CLI, the host's Docker socket mounted) it installs
// the standalone executable, config and data dir, starts the worker in the background against a
// master run by the same executable, changes nothing on a re-run, upgrades keeping the node's
// identity, and uninstalls (then purges). The systemd unit and the Windows startup task are
// checked through --dry-run.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, createReadStream, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { waitFor, type CliResult } from '../helpers/cli-process.js';
import { EXE_IN_CONTAINER, ExeContainer, type ExeMaster } from '../helpers/exe-container.js';
import { executablePath, requireDockerImage, requireExecutable, requireShellcheck } from '../helpers/requirements.js';

const BASE_IMAGE = 'hivemind/debian-base:12';
const TASK_IMAGE = 'hivemind/busybox:1';
const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const INSTALL_SH = join(root, 'install.sh');
const SCRIPT_IN_CONTAINER = '/opt/hivemind/install.sh';
const INSTALLED = '/usr/local/bin/hivemind';
const CONFIG = '/etc/hivemind/worker.json';
const LOG_DIR = '/var/log/hivemind';
const MASTER_ADDRESS = '127.0.0.1:7171';

const execFileAsync = promisify(execFile);

/** Runs install.sh on the host: argument checks and dry runs only, which change nothing. */
async function installOnHost(args: string[], script = INSTALL_SH, env: NodeJS.ProcessEnv = {}): Promise<CliResult> {
  try {
    const { stdout, stderr } = await execFileAsync('bash', [script, ...args], { env: { ...process.env, ...env } });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

/** Single-quotes a word for sh. */
function q(word: string): string {
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}

interface NodeRow {
  nodeId: string;
  name: string;
  online: boolean;
  facts?: { maxTasks: number };
}

test('install.sh is shellcheck-clean and rejects bad arguments with exit 2', async (t) => {
  await t.test('shellcheck install.sh reports nothing', (t2: TestContext) => {
    if (!requireShellcheck(t2)) return;
    const out = execFileSync('shellcheck', ['--format=gcc', INSTALL_SH], { encoding: 'utf8', stdio: 'pipe' });
    assert.equal(out, '');
  });

  const token = ['--token', 'hm1.example', '--master', '127.0.0.1:7070'];
  const sha = ['--sha256', 'a'.repeat(64)];
  const cases: { what: string; args: string[]; message: RegExp }[] = [
    { what: 'no token', args: ['--binary', INSTALL_SH, '--master', '127.0.0.1:7070'], message: /--token is required: a join token from `hivemind token create` on the master/ },
    { what: 'an enrollment token without --master', args: ['--binary', INSTALL_SH, '--token', 'hm1.example'], message: /--master HOST:PORT is required with an enrollment token/ },
    { what: 'two sources', args: [...token, '--binary', INSTALL_SH, '--url', 'file:///x', ...sha], message: /give exactly one of --binary PATH, --url URL --sha256 HEX, --from-checkout/ },
    { what: 'no source', args: token, message: /give exactly one of --binary PATH/ },
    { what: '--url without --sha256', args: [...token, '--url', 'file:///x'], message: /--url needs --sha256 HEX/ },
    { what: '--master without a port', args: ['--binary', INSTALL_SH, '--token', 'hm1.example', '--master', '10.0.0.5'], message: /--master: expected HOST:PORT \(e\.g\. 10\.0\.0\.5:7070\), got "10\.0\.0\.5"/ },
    { what: '--master with port 70000', args: ['--binary', INSTALL_SH, '--token', 'hm1.example', '--master', 'master.lan:70000'], message: /--master: expected HOST:PORT \(e\.g\. 10\.0\.0\.5:7070\), got "master\.lan:70000"/ },
    { what: 'a bad --drain-timeout', args: [...token, '--binary', INSTALL_SH, '--drain-timeout', '10minutes'], message: /--drain-timeout: "10minutes" is not a duration \(examples: 30s, 10m, 1h30m\)/ },
    { what: '--purge without --uninstall', args: [...token, '--binary', INSTALL_SH, '--purge'], message: /--purge only goes with --uninstall/ },
    { what: 'a short --sha256', args: [...token, '--url', 'file:///x', '--sha256', 'abc'], message: /--sha256: expected 64 hex digits, got "abc"/ },
    { what: 'an unknown option', args: [...token, '--binary', INSTALL_SH, '--frobnicate'], message: /unknown argument: --frobnicate/ },
    { what: 'a missing --binary file', args: [...token, '--binary', '/nonexistent/hivemind'], message: /--binary: no such file: \/nonexistent\/hivemind/ },
  ];
  await t.test('each bad argument exits 2 naming it, before doing anything', async () => {
    const results = await Promise.all(cases.map((c) => installOnHost(c.args)));
    cases.forEach((c, i) => {
      const r = results[i]!;
      assert.equal(r.code, 2, `${c.what}: exit ${r.code}\n${r.stdout}\n${r.stderr}`);
      assert.match(r.stderr, c.message, c.what);
      assert.match(r.stderr, /install\.sh: see install\.sh --help/, c.what);
      assert.equal(r.stdout, '', `${c.what}: nothing on stdout`);
    });
  });
});

test('install.sh --os windows --uninstall --purge --dry-run names the task and every installed path, and changes nothing', async (t) => {
  // A Windows layout under a temp dir: install.sh takes Program Files and ProgramData from the environment.
  const dir = mkdtempSync(join(tmpdir(), 'hm-win-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const pf = join(dir, 'Program Files');
  const pd = join(dir, 'ProgramData');
  const paths = {
    exe: join(pf, 'HiveMind', 'hivemind.exe'),
    config: join(pd, 'HiveMind', 'worker.json'),
    task: join(pd, 'HiveMind', 'HiveMindWorker.xml'),
    data: join(pd, 'HiveMind', 'node-data'),
    logs: join(pd, 'HiveMind', 'logs'),
  };
  for (const d of [dirname(paths.exe), paths.data, paths.logs]) mkdirSync(d, { recursive: true });
  writeFileSync(paths.exe, '');
  writeFileSync(paths.task, '<Task/>\n');
  writeFileSync(paths.config, `{\n  "worker": {\n    "dataDir": "${paths.data}",\n    "drainTimeout": "3m"\n  }\n}\n`);
  const r = await installOnHost(['--os', 'windows', '--uninstall', '--purge', '--dry-run'], INSTALL_SH, { ProgramW6432: pf, ProgramData: pd });
  assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
  for (const line of [
    'install.sh: uninstalling the HiveMind worker (windows)',
    `install.sh: data dir ${paths.data}, from ${paths.config} (--data-dir DIR to choose another)`,
    '[dry-run] would stop and delete the startup task HiveMindWorker (the worker drains first, up to 3m)',
    `[dry-run] would run: ${paths.exe} worker stop --data-dir ${paths.data} --timeout 210s`,
    '[dry-run] would run: schtasks //End //TN HiveMindWorker',
    '[dry-run] would run: schtasks //Delete //TN HiveMindWorker //F',
    ...[paths.task, paths.exe, paths.config, paths.data, paths.logs].map((p) => `[dry-run] would remove ${p}`),
  ]) {
    assert.ok(r.stdout.includes(`${line}\n`), `${line}\n${r.stdout}\n${r.stderr}`);
  }
  for (const p of Object.values(paths)) assert.ok(existsSync(p), `${p} is still there`);
});

test('install.sh --os windows writes allowUnboundedOutput into the config, and says why (Docker Desktop has no loop devices)', async (t) => {
  // A Windows layout under a temp dir, with a config of exactly the expected content: the dry run
  // then finds it unchanged, which checks every byte install.sh would write.
  const dir = mkdtempSync(join(tmpdir(), 'hm-win-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const pf = join(dir, 'Program Files');
  const pd = join(dir, 'ProgramData');
  const config = join(pd, 'HiveMind', 'worker.json');
  const binary = join(dir, 'hivemind-win-x64.exe');
  mkdirSync(dirname(config), { recursive: true });
  writeFileSync(binary, '');
  const expected = ['{', '  "worker": {', '    "token": "hmj1.example",', '    "drainTimeout": "10m",', '    "allowUnboundedOutput": true,', `    "dataDir": "${join(pd, 'HiveMind', 'worker')}"`, '  }', '}', ''].join('\n');
  writeFileSync(config, expected);
  const r = await installOnHost(['--os', 'windows', '--binary', binary, '--token', 'hmj1.example', '--dry-run', '--skip-deps'], INSTALL_SH, { ProgramW6432: pf, ProgramData: pd });
  assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
  assert.ok(r.stdout.includes(`install.sh: unchanged: ${config}\n`), `the generated config differs from:\n${expected}\n${r.stdout}\n${r.stderr}`);
  assert.ok(
    r.stdout.includes("install.sh: config: allowUnboundedOutput, because Docker Desktop has no loop devices to bound a task's /output with: its output is checked against its cap after it exits, and the Docker Desktop VM's disk bounds the rest\n"),
    r.stdout,
  );
  assert.equal((JSON.parse(readFileSync(config, 'utf8')) as { worker: { allowUnboundedOutput: boolean } }).worker.allowUnboundedOutput, true);
});

test('install.sh --from-checkout builds only this machine\'s executable', async (t) => {
  const targets: Record<string, string> = { x64: 'linux-x64', arm64: 'linux-arm64' };
  const target = targets[process.arch];
  if (!target) return;
  // A dry run from a stand-in checkout: a real build there would run `npm ci`, which must never
  // touch this checkout's node_modules.
  const checkout = mkdtempSync(join(tmpdir(), 'hm-checkout-'));
  t.after(() => rmSync(checkout, { recursive: true, force: true }));
  copyFileSync(INSTALL_SH, join(checkout, 'install.sh'));
  writeFileSync(join(checkout, 'package.json'), '{}\n');
  const r = await installOnHost(['--from-checkout', '--token', 'hm1.example', '--master', '127.0.0.1:7070', '--service', 'none', '--skip-deps', '--dry-run'], join(checkout, 'install.sh'));
  assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
  assert.ok(r.stdout.includes(`[dry-run] would run: (cd ${checkout} && npm ci && HM_EXE_TARGETS=${target} npm run build:exe) to build ${checkout}/dist-exe/hivemind-${target}\n`), r.stdout);
});

test('install.sh in a Debian container without systemd: install, re-run, upgrade, uninstall, purge', { timeout: 300_000 }, async (t) => {
  if (!requireExecutable(t) || !requireDockerImage(t, BASE_IMAGE) || !requireDockerImage(t, TASK_IMAGE)) return;
  // --init: the background worker's parent (install.sh) exits, so something must reap it once stopped
  const c = await ExeContainer.start(executablePath(), BASE_IMAGE, { init: true });
  let master: ExeMaster | undefined;
  t.after(async () => {
    await master?.daemon.stop().catch(() => undefined);
    await c.close();
  });
  await c.copyIn(INSTALL_SH, SCRIPT_IN_CONTAINER);
  const dataDir = `${c.shared}/data`; // shared with the host: task bind mounts are host paths

  /**
   * install.sh in the container. HIVEMIND_REPORT_INTERVAL reaches the background worker: the
   * config file has no report interval, and the worker's default (30 s) would outlast the test
   * master's offline limit (3 missed 1 s reports).
   */
  const install = (args: string[]) => c.sh(`HIVEMIND_REPORT_INTERVAL=1s bash ${SCRIPT_IN_CONTAINER} ${args.map(q).join(' ')}`, 180_000);
  const installed = (args: string[]) => c.sh(`${INSTALLED} ${args.map(q).join(' ')}`, 120_000);
  const out = (r: CliResult) => `exit ${r.code}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`;
  const workerLog = async () => (await c.sh(`tail -n 40 ${LOG_DIR}/worker.log`)).stdout;
  const exists = async (path: string) => (await c.sh(`test -e ${q(path)}`)).code === 0;
  const mode = async (path: string) => (await c.sh(`stat -c %a ${q(path)}`)).stdout.trim();
  const alive = async (pid: string) => (await c.sh(`kill -0 ${pid}`)).code === 0;
  const workerPid = async () => (await c.sh(`cat ${q(dataDir)}/worker.pid`)).stdout.trim();
  /** Every installed file's mode, inode, mtime and hash, and the running worker's pid. */
  const snapshot = async () =>
    (await c.sh(`stat -c '%n %a %i %Y' ${INSTALLED} ${CONFIG} ${q(dataDir)} ${q(dataDir)}/identity.json ${LOG_DIR}; ` +
      `sha256sum ${INSTALLED} ${CONFIG} ${q(dataDir)}/identity.json; cat ${q(dataDir)}/worker.pid`)).stdout;
  const nodes = async () => JSON.parse((await installed(['nodes', '--json', ...master!.admin])).stdout || '[]') as NodeRow[];
  /** A task through the master to the installed worker and its result back. */
  const roundTrip = async (text: string) => {
    const sub = await installed(['submit', '--image', TASK_IMAGE, '--wait', ...master!.admin, '--', 'sh', '-c', `echo ${text} > /output/out.txt`]);
    assert.equal(sub.code, 0, `${out(sub)}\n${await workerLog()}`);
    assert.match(sub.stdout, /succeeded/);
    const taskId = sub.stdout.trim().split(/\s+/)[0]!;
    const res = await installed(['result', taskId, ...master!.admin, '-o', `${c.shared}/${taskId}.tar.gz`, '--extract', `${c.shared}/${taskId}`]);
    assert.equal(res.code, 0, out(res));
    assert.equal(readFileSync(`${c.shared}/${taskId}/out.txt`, 'utf8'), `${text}\n`);
  };

  await t.test('the container has no systemd and no docker CLI, only the Docker socket', async () => {
    const r = await c.sh('test ! -d /run/systemd/system && ! command -v docker && test -S /var/run/docker.sock && echo ok');
    assert.equal(r.stdout.trim(), 'ok', out(r));
  });

  await t.test('--service systemd --dry-run prints the unit and the systemctl commands, and changes nothing', async () => {
    const binDir = `${c.shared}/bin`;
    const r = await install(['--binary', EXE_IN_CONTAINER, '--token', 'hm1.example', '--master', MASTER_ADDRESS, '--service', 'systemd', '--drain-timeout', '2m', '--bin-dir', binDir, '--dry-run']);
    assert.equal(r.code, 0, out(r));
    const lines = r.stdout.split('\n');
    const start = lines.indexOf('[dry-run] unit /etc/systemd/system/hivemind-worker.service:');
    assert.ok(start >= 0, out(r));
    const body: string[] = [];
    for (const line of lines.slice(start + 1)) {
      if (!line.startsWith('    ')) break;
      body.push(line.slice(4));
    }
    const unit = body.join('\n') + '\n';
    assert.ok(unit.includes(`\nExecStart=${binDir}/hivemind --config ${CONFIG} worker start\n`), unit);
    const lifecycle = ['Restart=on-failure', 'RestartPreventExitStatus=2', 'KillSignal=SIGTERM', 'KillMode=mixed', 'TimeoutStopSec=150', 'StateDirectory=hivemind', 'StateDirectoryMode=0700', 'LogsDirectory=hivemind', 'LogsDirectoryMode=0750', 'Environment=HIVEMIND_HOME=/var/lib/hivemind', 'WantedBy=multi-user.target'];
    // the sandbox: the worker keeps CAP_NET_ADMIN for the tunnel and the Docker socket, little else
    const hardening = ['ProtectSystem=strict', 'ProtectHome=true', 'PrivateTmp=true', 'NoNewPrivileges=true', 'ProtectKernelModules=true', 'ProtectKernelLogs=true', 'ProtectControlGroups=true', 'RestrictSUIDSGID=true', 'RestrictNamespaces=true', 'UMask=0077',
      'RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK', 'CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW CAP_CHOWN CAP_DAC_OVERRIDE CAP_FOWNER CAP_KILL'];
    for (const line of [...lifecycle, ...hardening]) {
      assert.ok(unit.includes(`\n${line}\n`), `the unit has ${line}:\n${unit}`);
    }
    for (const line of [
      `[dry-run] would create ${binDir}/hivemind (mode 0755)`,
      `[dry-run] would create ${CONFIG} (mode 0600)`,
      '[dry-run] would create /var/lib/hivemind/ (mode 0700)',
      '[dry-run] would create /etc/systemd/system/hivemind-worker.service (mode 0644)',
      '[dry-run] would run: systemctl daemon-reload',
      '[dry-run] would run: systemctl enable hivemind-worker.service',
      '[dry-run] would run: systemctl start hivemind-worker.service',
    ]) {
      assert.ok(lines.includes(line), `${line}\n${out(r)}`);
    }
    assert.match(r.stdout, /install\.sh: dry run: \d+ change\(s\) would be made; nothing was changed/);
    for (const path of [binDir, '/etc/hivemind', '/var/lib/hivemind', LOG_DIR, '/etc/systemd/system/hivemind-worker.service']) assert.equal(await exists(path), false, path);

    // systemd's own check of the unit, where the host has it (its ExecStart must exist here)
    let analyze = true;
    try {
      execFileSync('systemd-analyze', ['--version'], { stdio: 'pipe' });
    } catch {
      analyze = false;
    }
    if (!analyze) {
      t.diagnostic('systemd-analyze is not installed on this host: the unit was checked line by line only');
      return;
    }
    mkdirSync(binDir);
    symlinkSync(executablePath(), `${binDir}/hivemind`);
    mkdirSync(`${c.shared}/unit`);
    writeFileSync(`${c.shared}/unit/hivemind-worker.service`, unit);
    const v = await execFileAsync('systemd-analyze', ['verify', `${c.shared}/unit/hivemind-worker.service`]).then(
      (x) => ({ code: 0, stderr: x.stderr }),
      (e: { code?: number; stderr?: string }) => ({ code: e.code ?? -1, stderr: e.stderr ?? '' }),
    );
    assert.equal(v.code, 0, v.stderr);
    assert.doesNotMatch(v.stderr, /hivemind-worker\.service:/, v.stderr);
  });

  await t.test('a tunnel token without WireGuard: install.sh installs it with apt-get or dnf, or names exactly what to install', async () => {
    const base = ['--binary', EXE_IN_CONTAINER, '--token', 'hmj1.example', '--service', 'none', '--dry-run'];
    const missing = 'install.sh: missing: wireguard-tools wireguard-go\n';
    const apt = await install(base);
    assert.equal(apt.code, 0, out(apt));
    for (const line of [missing, '[dry-run] would install wireguard-tools wireguard-go with apt-get\n', '[dry-run] would run: apt-get update -q\n',
      '[dry-run] would run: env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends wireguard-tools wireguard-go\n']) {
      assert.ok(apt.stdout.includes(line), `${line}${out(apt)}`);
    }
    // the same machine as a dnf distribution, then as one with neither (this container is thrown away)
    try {
      await c.sh('mv /usr/bin/apt-get /usr/bin/apt-get.hidden && printf "#!/bin/sh\\nexit 0\\n" > /usr/local/bin/dnf && chmod 755 /usr/local/bin/dnf');
      const dnf = await install(base);
      assert.equal(dnf.code, 0, out(dnf));
      for (const line of [missing, '[dry-run] would install wireguard-tools wireguard-go with dnf\n', '[dry-run] would run: dnf install -y wireguard-tools wireguard-go\n']) {
        assert.ok(dnf.stdout.includes(line), `${line}${out(dnf)}`);
      }
      await c.sh('rm /usr/local/bin/dnf');
      const none = await install(base);
      assert.equal(none.code, 1, out(none));
      assert.ok(none.stdout.includes(missing), out(none));
      assert.match(none.stderr, /^install\.sh: install wireguard-tools wireguard-go with your distribution's package manager \(Docker Engine: \S+; WireGuard: wireguard-tools, and wireguard-go when the kernel has no WireGuard\), then run again, or pass --skip-deps$/m);
      for (const path of ['/etc/hivemind', '/var/lib/hivemind', LOG_DIR]) assert.equal(await exists(path), false, path);
    } finally {
      await c.sh('rm -f /usr/local/bin/dnf; test -e /usr/bin/apt-get || mv /usr/bin/apt-get.hidden /usr/bin/apt-get');
    }
  });

  await t.test('--os windows --dry-run prints the startup task, the icacls lock-down and the Windows paths', async () => {
    // a dry run for another OS never runs the executable: an empty stand-in is enough
    await c.sh(': > /tmp/hivemind-win-x64.exe');
    const r = await install(['--os', 'windows', '--binary', '/tmp/hivemind-win-x64.exe', '--token', 'hmj1.example', '--dry-run']);
    assert.equal(r.code, 0, out(r));
    for (const text of [
      'install.sh: installing the HiveMind worker (windows, service: task)',
      'install.sh: missing: WireGuard for Windows',
      'install.sh: missing: Docker Desktop',
      '[dry-run] would create C:/Program Files/HiveMind/hivemind.exe (mode 0755)',
      "install.sh: config: allowUnboundedOutput, because Docker Desktop has no loop devices to bound a task's /output with",
      '[dry-run] would create C:/ProgramData/HiveMind/worker.json (mode 0600)',
      '[dry-run] would run: icacls C:\\ProgramData\\HiveMind //inheritance:r //grant:r *S-1-5-18:(OI)(CI)F *S-1-5-32-544:(OI)(CI)F',
      '[dry-run] would run: icacls C:\\ProgramData\\HiveMind\\worker //inheritance:r //grant:r *S-1-5-18:(OI)(CI)F *S-1-5-32-544:(OI)(CI)F',
      '[dry-run] task HiveMindWorker (C:/ProgramData/HiveMind/HiveMindWorker.xml):',
      '<BootTrigger>',
      '<UserId>S-1-5-18</UserId>',
      '<ExecutionTimeLimit>PT0S</ExecutionTimeLimit>',
      '<RestartOnFailure>',
      '<Command>C:\\Program Files\\HiveMind\\hivemind.exe</Command>',
      '<Arguments>--config "C:\\ProgramData\\HiveMind\\worker.json" worker start --log-file "C:\\ProgramData\\HiveMind\\logs\\worker.log"</Arguments>',
      '<WorkingDirectory>C:\\ProgramData\\HiveMind\\worker</WorkingDirectory>',
      '[dry-run] would run: schtasks //Run //TN HiveMindWorker',
    ]) {
      assert.ok(r.stdout.includes(text), `${text}\n${out(r)}`);
    }
    assert.match(r.stdout, /^\[dry-run\] would run: schtasks \/\/Create \/\/TN HiveMindWorker \/\/XML \S+task-utf16\.xml \/\/F$/m);
    assert.equal(await exists('C:'), false, 'nothing was written');
  });

  await t.test('--url with a wrong --sha256 exits 1 and installs nothing', async () => {
    const wrong = '0'.repeat(64);
    const r = await install(['--url', `file://${EXE_IN_CONTAINER}`, '--sha256', wrong, '--token', 'hm1.example', '--master', MASTER_ADDRESS]);
    assert.equal(r.code, 1, out(r));
    assert.match(r.stderr, new RegExp(`sha256 mismatch for file://${EXE_IN_CONTAINER}: expected ${wrong}, got [0-9a-f]{64}; nothing was installed`));
    for (const path of [INSTALLED, '/etc/hivemind', '/var/lib/hivemind', LOG_DIR]) assert.equal(await exists(path), false, path);
  });

  master = await c.master(MASTER_ADDRESS, `${c.shared}/master`);
  const token = await master.enrollmentToken();
  assert.match(token, /^hm1\./);
  const sha256 = await sha256File(executablePath());
  const installArgs = ['--url', `file://${EXE_IN_CONTAINER}`, '--sha256', sha256, '--token', token, '--master', MASTER_ADDRESS, '--data-dir', dataDir, '--name', 'installed-node'];
  let nodeId = '';
  let firstPid = '';

  await t.test('a real install: executable, config, data dir, a background worker online at the master, a task round trip', async () => {
    const r = await install(installArgs);
    assert.equal(r.code, 0, out(r));
    assert.match(r.stdout, /install\.sh: installing the HiveMind worker \(linux, service: background\)/);
    assert.match(r.stdout, /install\.sh: found: Docker/, 'the mounted socket counts as Docker');
    assert.match(r.stdout, new RegExp(`downloaded file://${EXE_IN_CONTAINER} \\(sha256 ${sha256}, as expected\\)`));
    assert.match(r.stdout, /install\.sh: worker running in the background, pid \d+/);

    assert.equal(await mode(INSTALLED), '755');
    const v = await installed(['--version']);
    assert.equal(v.code, 0, out(v));
    assert.match(v.stdout, /^hivemind \S+ \(commit \S+, node v24\.\d+\.\d+, standalone\)$/m);
    assert.equal(await mode(CONFIG), '600');
    const config = JSON.parse((await c.sh(`cat ${CONFIG}`)).stdout) as { worker: Record<string, unknown> };
    assert.deepEqual(config.worker, { master: MASTER_ADDRESS, token, name: 'installed-node', drainTimeout: '10m', dataDir });
    assert.equal(await mode(dataDir), '700');
    assert.equal(await mode(LOG_DIR), '750');

    firstPid = await workerPid();
    assert.match(firstPid, /^\d+$/);
    assert.equal((await c.sh(`readlink /proc/${firstPid}/exe`)).stdout.trim(), INSTALLED);
    const node = await waitFor('the installed worker to be online at the master', async () => (await nodes()).find((n) => n.name === 'installed-node' && n.online), 60_000, 300);
    nodeId = node.nodeId;
    await roundTrip('installed');
    // the worker writes its own log (JSON lines, rotated), not the shell's redirection
    assert.ok(r.stdout.includes(`+ nohup ${INSTALLED} --config ${CONFIG} worker start --log-file ${LOG_DIR}/worker.log >>${LOG_DIR}/worker.out 2>&1 &\n`), out(r));
    const logLines = (await c.sh(`cat ${LOG_DIR}/worker.log`)).stdout.split('\n').filter(Boolean);
    assert.ok(logLines.length > 0 && logLines.every((l) => typeof (JSON.parse(l) as { msg?: unknown }).msg === 'string'), logLines.join('\n'));
    assert.equal((await c.sh(`stat -c %a ${LOG_DIR}/worker.log`)).stdout.trim(), '640');
  });

  await t.test('the same install again says "nothing changed" and changes nothing', async () => {
    const before = await snapshot();
    const r = await install(installArgs);
    assert.equal(r.code, 0, out(r));
    assert.match(r.stdout, /install\.sh: unchanged: the worker is running \(pid \d+\)/);
    assert.match(r.stdout, /install\.sh: nothing changed\n$/);
    assert.doesNotMatch(r.stdout, /^\+ /m, 'no command run');
    assert.equal(await snapshot(), before);
    assert.ok(await alive(firstPid));
  });

  await t.test('--uninstall --purge --service systemd --dry-run names the unit, executable, config, data and logs, and changes nothing', async () => {
    const before = await snapshot();
    const r = await install(['--uninstall', '--purge', '--service', 'systemd', '--dry-run']);
    assert.equal(r.code, 0, out(r));
    for (const line of [
      `install.sh: data dir ${dataDir}, from ${CONFIG} (--data-dir DIR to choose another)`,
      '[dry-run] would stop and disable hivemind-worker.service (it drains first, up to 10m)',
      '[dry-run] would run: systemctl disable --now hivemind-worker.service',
      '[dry-run] would run: systemctl daemon-reload',
      `[dry-run] would remove ${INSTALLED}`,
      `[dry-run] would remove ${CONFIG}`,
      `[dry-run] would remove ${dataDir}`,
      `[dry-run] would remove ${LOG_DIR}`,
    ]) {
      assert.ok(r.stdout.includes(`${line}\n`), `${line}\n${out(r)}`);
    }
    assert.equal(await snapshot(), before);
    assert.ok(await alive(firstPid));
  });

  await t.test('an upgrade to another executable, without repeating --data-dir, restarts the worker and keeps the node', async () => {
    // The second "release": a launcher in front of the same build, so different bytes that still
    // run this hivemind (a SEA cannot be altered and stay valid).
    const release2 = '/opt/hivemind/release-2/hivemind';
    await c.sh(`mkdir -p ${dirname(release2)} && printf '#!/bin/sh\\n# release 2\\nexec ${EXE_IN_CONTAINER} "$@"\\n' > ${release2} && chmod 755 ${release2}`);
    const identity = (await c.sh(`sha256sum ${q(dataDir)}/identity.json`)).stdout;
    const r = await install(['--binary', release2, '--token', token, '--master', MASTER_ADDRESS, '--name', 'installed-node', '--max-tasks', '3']);
    assert.equal(r.code, 0, out(r));
    assert.ok(r.stdout.includes(`install.sh: data dir ${dataDir}, from ${CONFIG}`), out(r));
    assert.ok(r.stdout.includes(`install.sh: replace ${INSTALLED} (mode 0755)`), out(r));
    assert.ok(r.stdout.includes(`install.sh: stop the worker (pid ${firstPid})`), out(r));
    assert.ok(r.stdout.includes(`worker ${firstPid} stopped`), out(r));
    assert.equal((await c.sh(`cmp ${release2} ${INSTALLED} && echo same`)).stdout.trim(), 'same');
    assert.equal(await alive(firstPid), false, 'the old worker exited');
    assert.match(await workerLog(), /shutting down: draining running tasks/);
    const pid = await workerPid();
    assert.notEqual(pid, firstPid);
    assert.ok(await alive(pid), await workerLog());

    const config = JSON.parse((await c.sh(`cat ${CONFIG}`)).stdout) as { worker: Record<string, unknown> };
    assert.equal(config.worker.dataDir, dataDir);
    assert.equal(config.worker.maxTasks, 3);
    assert.equal((await c.sh(`sha256sum ${q(dataDir)}/identity.json`)).stdout, identity, 'identity file unchanged');
    await waitFor('the upgraded node online with 3 task slots', async () => {
      const all = await nodes();
      return all.length === 1 && all[0]!.nodeId === nodeId && all[0]!.online && all[0]!.facts?.maxTasks === 3;
    }, 60_000, 300).catch(async (err: Error) => assert.fail(`${err.message}\n${JSON.stringify(await nodes())}\n${await workerLog()}`));
    await roundTrip('upgraded');
  });

  await t.test('--uninstall drains and stops the worker, removes the executable, keeps config, data and logs', async () => {
    const pid = await workerPid();
    const r = await install(['--uninstall']);
    assert.equal(r.code, 0, out(r));
    assert.ok(r.stdout.includes(`install.sh: stop the worker (pid ${pid}): it drains for up to 10m`), out(r));
    assert.ok(r.stdout.includes(`worker ${pid} stopped`), out(r));
    assert.ok(r.stdout.includes(`install.sh: remove ${INSTALLED}`), out(r));
    assert.match(r.stdout, /install\.sh: kept: config/);
    assert.equal(await alive(pid), false);
    assert.equal(await exists(INSTALLED), false);
    assert.equal(await mode(CONFIG), '600');
    assert.ok(await exists(`${dataDir}/identity.json`));
    assert.ok(await exists(`${dataDir}/worker.db`));
    assert.equal(await exists(`${dataDir}/worker.pid`), false, 'the worker removed its pid file on exit');
    assert.ok(await exists(`${LOG_DIR}/worker.log`));
  });

  await t.test('--uninstall --purge removes config, data and logs', async () => {
    const r = await install(['--uninstall', '--purge']);
    assert.equal(r.code, 0, out(r));
    for (const path of [CONFIG, dataDir, LOG_DIR, '/etc/hivemind']) {
      assert.ok(r.stdout.includes(`install.sh: remove ${path}\n`), `${path}\n${out(r)}`);
      assert.equal(await exists(path), false, path);
    }
  });
});
