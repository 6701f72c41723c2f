// Upgrading a tunnel-mode node across a worker schema change, with real wireguard-go in network
// namespaces: the master already runs this build (masters are upgraded first); a worker that
// enrolled with an earlier build (worker schema 3) is drained and started again with this build
// on the same data dir, without a token. It must come back as the same node on the same tunnel
// address with the same keys, its history migrated, its old results still downloadable.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { requireCommit, requireDockerImage, requireNetns, requireWireGuard } from '../helpers/requirements.js';
import { NetLab } from '../helpers/netns.js';
import { waitFor } from '../helpers/cli-process.js';
import { runInNs as run, startInNs as start, stopInNs as stop, type NsProc } from '../helpers/netns-cli.js';
import { OldBuild, SCHEMA3_COMMIT, workerDbFacts } from '../helpers/old-build.js';
import { MIGRATIONS } from '../../src/worker/store/migrations.js';

const IMAGE = 'hivemind/busybox:1';
const OLD_COMMIT = SCHEMA3_COMMIT;
/**
 * The master's report interval. The old worker does not follow the master's interval, so it is
 * given the same one; 2 s (offline after 6 s) leaves room on a busy machine.
 */
const REPORT_INTERVAL = '2s';

interface NodeRow {
  nodeId: string;
  online: boolean;
  lastSeenMs: number | string;
}


/** Bytes and mode of a secret file, to compare before and after the upgrade. */
function secretFile(file: string): { mode: string; bytes: string } {
  return { mode: (statSync(file).mode & 0o777).toString(8), bytes: readFileSync(file).toString('base64') };
}

test('a tunnel-mode worker upgraded across a schema change keeps its identity, tunnel and history, and works on', async (t) => {
  if (!requireNetns(t) || !requireWireGuard(t) || !requireDockerImage(t, IMAGE) || !requireCommit(t, OLD_COMMIT)) return;
  const old = OldBuild.build(OLD_COMMIT);
  let lab: NetLab | undefined;
  const home = mkdtempSync(join(tmpdir(), 'hm-upgrade-tunnel-'));
  const procs: NsProc[] = [];
  try {
    lab = NetLab.create(['m', 'a']);
    const id = lab.id;
    const m = lab.host('m');
    const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: home, HIVEMIND_HOME: home };
    const dataDir = join(home, 'wa');
    const wgIf = `hm${id}a`;

    const master = start(lab, 'm', ['master', 'start', '--data-dir', join(home, 'master'), '--report-interval', REPORT_INTERVAL, '--wg-endpoint', `${m.ip}:51820`, '--wg-interface', `hm${id}m`, '--enroll-listen', `${m.ip}:7443`], env);
    procs.push(master);
    await waitFor('the master', () => /tunnel mode/.test(master.output) || (master.child.exitCode !== null ? (() => { throw new Error(master.output); })() : undefined), 30_000);
    const admin = { ...env, HIVEMIND_MASTER: '127.0.0.1:7070', HIVEMIND_ADMIN_TOKEN: readFileSync(join(home, 'master', 'admin.token'), 'utf8').trim() };
    const nodes = async () => {
      const r = await run(lab!, 'm', ['nodes', '--json'], admin);
      return r.code === 0 ? (JSON.parse(r.out) as NodeRow[]) : [];
    };
    const tok = await run(lab, 'm', ['token', 'create'], admin);
    assert.equal(tok.code, 0, tok.out);

    // The old build enrolls with the join token and runs a task through the tunnel.
    const oldVersion = await run(lab, 'a', ['--version'], env, old.cli);
    process.stderr.write(`old build: ${oldVersion.out.trim()}\n`);
    const wa = start(lab, 'a', ['worker', 'start', '--token', tok.out.trim(), '--data-dir', dataDir, '--wg-interface', wgIf, '--report-interval', REPORT_INTERVAL], env, old.cli);
    procs.push(wa);
    await waitFor('the old worker online', async () => {
      if (wa.child.exitCode !== null) throw new Error(`the old worker exited: ${wa.output}`);
      return (await nodes()).some((n) => n.online) || undefined;
    }, 90_000, 500);
    const before = await run(lab, 'm', ['submit', '--image', IMAGE, '--wait', '--', 'sh', '-c', 'echo from-the-old-build; echo kept > /output/r.txt'], admin);
    assert.equal(before.code, 0, `${before.out}\nold worker:\n${wa.output}\nmaster:\n${master.output}`);
    const oldTaskId = (JSON.parse((await run(lab, 'm', ['tasks', '--json'], admin)).out) as { taskId: string }[])[0]!.taskId;
    const nodesBefore = await nodes();
    assert.equal(nodesBefore.length, 1);
    const nodeId = nodesBefore[0]!.nodeId;
    const addressBefore = (JSON.parse(readFileSync(join(dataDir, 'tunnel.json'), 'utf8')) as { config: { address: string } }).config.address;
    assert.match(lab.exec('a', ['ip', '-4', 'address', 'show', wgIf]), new RegExp(`inet ${addressBefore.replace(/\./g, '\\.')}`));

    // SIGTERM drains the old worker: it exits 0 and takes its interface down.
    wa.child.kill('SIGTERM');
    const code = wa.child.exitCode ?? (await new Promise<number | null>((r) => wa.child.once('exit', r)));
    assert.equal(code, 0, wa.output);
    assert.doesNotMatch(lab.exec('a', ['ip', 'link', 'show']), new RegExp(wgIf));
    const oldDb = workerDbFacts(join(dataDir, 'worker.db'));
    assert.equal(oldDb.version, 3, 'the old build wrote schema 3');
    assert.ok(!oldDb.columns.includes('logs_sent_until'));
    assert.deepEqual(oldDb.tasks.map((r) => r.task_id), [oldTaskId]);
    const keyFile = join(dataDir, 'wg', 'private.key');
    const identityFile = join(dataDir, 'identity.json');
    const secretsBefore = [secretFile(keyFile), secretFile(identityFile)];
    for (const s of secretsBefore) assert.equal(s.mode, '600');

    // The upgrade: this build, same data dir, no token. It reports at the master's interval.
    const restartedAt = Date.now();
    const wa2 = start(lab, 'a', ['worker', 'start', '--data-dir', dataDir, '--wg-interface', wgIf], env);
    procs.push(wa2);
    await waitFor('the upgraded worker reporting', async () => {
      if (wa2.child.exitCode !== null) throw new Error(`the upgraded worker exited: ${wa2.output}`);
      return (await nodes()).some((n) => n.online && Number(n.lastSeenMs) > restartedAt) || undefined;
    }, 90_000, 500);
    const nodesAfter = await nodes();
    assert.deepEqual(nodesAfter.map((n) => [n.nodeId, n.online]), [[nodeId, true]], 'the same node, not a second enrollment');
    assert.equal(master.output.split('\n').filter((l) => l.includes('"node enrolled"')).length, 1, `one enrollment at the master:\n${master.output}`);
    assert.doesNotMatch(wa2.output, /enrolled with the master/, 'the upgraded worker did not enroll again');
    const addressAfter = (JSON.parse(readFileSync(join(dataDir, 'tunnel.json'), 'utf8')) as { config: { address: string } }).config.address;
    assert.equal(addressAfter, addressBefore, 'tunnel.json keeps the address');
    assert.match(lab.exec('a', ['ip', '-4', 'address', 'show', wgIf]), new RegExp(`inet ${addressBefore.replace(/\./g, '\\.')}`), 'the interface has the same address');
    assert.deepEqual([secretFile(keyFile), secretFile(identityFile)], secretsBefore, 'the WireGuard key and identity.json are unchanged, byte for byte, and 0600');

    const newDb = workerDbFacts(join(dataDir, 'worker.db'));
    assert.equal(newDb.version, MIGRATIONS.length, "the migrations ran up to this build's schema");
    assert.ok(newDb.columns.includes('logs_sent_until'));
    assert.deepEqual(newDb.tasks, oldDb.tasks, 'the task history is kept as it was');

    // The old task's result and logs are still at the master; a new task runs through the tunnel.
    const out = join(home, 'old');
    const res = await run(lab, 'm', ['result', oldTaskId, '-o', `${out}.tar.gz`, '--extract', out], admin);
    assert.equal(res.code, 0, res.out);
    assert.equal(readFileSync(join(out, 'r.txt'), 'utf8'), 'kept\n');
    const logs = await run(lab, 'm', ['logs', oldTaskId], admin);
    assert.equal(logs.code, 0, logs.out);
    assert.match(logs.out, /from-the-old-build/);
    const after = await run(lab, 'm', ['submit', '--image', IMAGE, '--wait', '--', 'sh', '-c', 'echo from-the-new-build'], admin);
    assert.equal(after.code, 0, `${after.out}\nupgraded worker:\n${wa2.output}\nmaster:\n${master.output}`);
    const history = workerDbFacts(join(dataDir, 'worker.db')).tasks;
    assert.deepEqual(history.map((r) => r.task_id).slice(0, 1), [oldTaskId]);
    assert.equal(history.length, 2, 'the new task joined the old one in the history');
  } finally {
    for (const p of procs.reverse()) await stop(p);
    lab?.destroy();
    old.remove();
    rmSync(home, { recursive: true, force: true });
  }
});
