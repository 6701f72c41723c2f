// Hostile and malformed tasks through a real master and worker (processes, Docker): each is
// refused or contained with a precise outcome, and the same node goes on serving afterwards.
// The runner's integration tests go deeper into each case; this proves the whole path.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { requireDockerImage } from '../helpers/requirements.js';
import { ProcessCluster } from '../helpers/process-cluster.js';
import { recordHostile } from '../helpers/fault-ledger.js';

const IMAGE = 'hivemind/busybox:1';

interface TaskJson {
  state: string;
  nodeId: string;
  outcome?: { kind: string; message: string; exitCode: number };
}

test('hostile tasks through a real master and worker are refused or contained with a precise outcome, and the node serves on', { timeout: 300_000 }, async (t) => {
  if (!requireDockerImage(t, IMAGE)) return;
  const cluster = await ProcessCluster.start({ reportInterval: '2s' });
  try {
    const submit = (args: string[]) => cluster.cli(['submit', '--image', IMAGE, ...args]);

    await t.test('malformed specs are refused at submission, naming the field', async () => {
      const cases: { what: string; args: string[]; message: RegExp }[] = [
        { what: 'an invalid environment variable name', args: ['--env', '1BAD=x', '--', 'true'], message: /"1BAD" is not a valid variable name/ },
        { what: 'a reserved environment variable', args: ['--env', 'HIVEMIND_TASK_ID=x', '--', 'true'], message: /HIVEMIND_TASK_ID is reserved/ },
        { what: 'an empty program', args: ['--', ''], message: /command\[0\] is empty: name the program to run/ },
        { what: 'a negative CPU limit', args: ['--cpus', '-1', '--', 'true'], message: /cpus/i },
        { what: 'an absurd memory limit', args: ['--memory', '100t', '--', 'true'], message: /memory/i },
        // Each of these used to be accepted and then failed on every node (START_FAILED).
        { what: 'a CPU limit of 1e-9', args: ['--cpus', '1e-9', '--', 'true'], message: /spec\.limits\.cpus is 1e-9, under the minimum of 0\.01/ },
        { what: 'a CPU limit of 0.001', args: ['--cpus', '0.001', '--', 'true'], message: /spec\.limits\.cpus is 0\.001, under the minimum of 0\.01/ },
        { what: 'an image name with uppercase', args: ['--image', 'Hivemind/BusyBox:1', '--', 'true'], message: /spec\.image "Hivemind\/BusyBox:1" is not a valid image reference \(the repository path must be lowercase\)/ },
        { what: 'a 300 KiB spec', args: ['--', 'sh', 'x'.repeat(100 * 1024), 'y'.repeat(100 * 1024), 'z'.repeat(100 * 1024)], message: /the task spec is 300\.\d KiB encoded, over the maximum of 256\.0 KiB/ },
      ];
      for (const c of cases) {
        const r = await (c.args[0] === '--image' ? cluster.cli(['submit', ...c.args]) : submit(c.args));
        recordHostile(`task spec end to end: ${c.what}`, r.code === 0);
        assert.notEqual(r.code, 0, `${c.what}: accepted\n${r.stdout}`);
        assert.match(r.stderr, c.message, c.what);
        assert.doesNotMatch(r.stderr, /\n\s+at /, `${c.what}: no stack trace`);
      }
      const tasks = JSON.parse((await cluster.cli(['tasks', '--json'])).stdout) as unknown[];
      assert.equal(tasks.length, 0, 'nothing was queued');
    });

    const run = async (args: string[]): Promise<{ id: string; info: TaskJson }> => {
      const s = await submit(args);
      assert.equal(s.code, 0, s.stderr);
      const id = s.stdout.trim();
      await cluster.cli(['wait', id], 120_000);
      return { id, info: JSON.parse((await cluster.cli(['get', id, '--json'])).stdout) as TaskJson };
    };
    const kindOf = (i: TaskJson) => i.outcome?.kind;

    await t.test('an env variable named __proto__ (a valid name) reaches the container and every JSON view of the task', async () => {
      const r = await run(['--env', 'OK_VAR=1', '--env', '__proto__=kept-proto', '--env', 'constructor=kept-ctor', '--', 'sh', '-c', 'env | sort']);
      assert.equal(r.info.state, 'succeeded', JSON.stringify(r.info));
      const seen = (await cluster.cli(['logs', r.id])).stdout;
      const shown = (r.info as TaskJson & { spec?: { env?: Record<string, string> } }).spec?.env ?? {};
      const kept = /^__proto__=kept-proto$/m.test(seen) && /^constructor=kept-ctor$/m.test(seen) && /^OK_VAR=1$/m.test(seen) && Object.hasOwn(shown, '__proto__');
      recordHostile('task spec end to end: env named __proto__ kept', !kept);
      assert.ok(kept, `container env:\n${seen}\nget --json env: ${JSON.stringify(shown)}`);
      assert.deepEqual(Object.entries(shown), [['OK_VAR', '1'], ['__proto__', 'kept-proto'], ['constructor', 'kept-ctor']]);
    });

    await t.test('running tasks: a memory hog, a fork bomb, a log flood, an output symlink to a host path, a disk filler, a look around', async () => {
      const oom = await run(['--memory', '32m', '--', 'sh', '-c', 'x=aaaaaaaa; while true; do x=$x$x; done']);
      recordHostile('task end to end: memory hog', oom.info.outcome?.kind !== 'oom_killed');
      assert.equal(kindOf(oom.info), 'oom_killed', JSON.stringify(oom.info));

      // The task's own shell forks once, before the bomb exists (`b &`), then becomes `sleep`: a
      // shell that ran `b | b &` itself forked twice, and when the bomb had taken every pid before
      // the second fork it exited 2 ("can't fork"), 1 run in 12 here: FAILED, not TIMED_OUT
      const bomb = await run(['--pids', '32', '--timeout', '4s', '--', 'sh', '-c', 'b() { b | b & }; b & exec sleep 60']);
      recordHostile('task end to end: recursive fork bomb', bomb.info.outcome?.kind !== 'timed_out');
      assert.equal(kindOf(bomb.info), 'timed_out', JSON.stringify(bomb.info));

      // 24 MiB of output, three times the master's log cap: the end is kept, the size bounded
      const flood = await run(['--', 'sh', '-c', 'head -c 25165824 /dev/zero | tr "\\0" x | fold -w 127; echo THE-END']);
      assert.equal(flood.info.state, 'succeeded', JSON.stringify(flood.info));
      const logs = await cluster.cli(['logs', flood.id], 120_000);
      const bounded = logs.stdout.length <= 8 * 1024 ** 2 + 64 * 1024 && logs.stdout.trimEnd().endsWith('THE-END');
      recordHostile('task end to end: log flood (bounded, tail kept)', !bounded);
      assert.ok(bounded, `logs: ${logs.stdout.length} bytes, ending ${JSON.stringify(logs.stdout.slice(-40))}`);

      const link = await run(['--', 'sh', '-c', 'ln -s /etc/passwd /output/pw']);
      recordHostile('output end to end: a symlink to a host path', link.info.outcome?.kind !== 'output_rejected');
      assert.equal(kindOf(link.info), 'output_rejected', JSON.stringify(link.info));
      assert.match(link.info.outcome!.message, /entry "output\/pw" is a symlink to the absolute path "\/etc\/passwd"/);

      // 64 MiB into a 1 MiB output cap: the kernel stops the writer at the /output filesystem's end
      const fill = await run(['--max-output', '1m', '--', 'sh', '-c', 'dd if=/dev/zero of=/output/big bs=1M count=64; du -k /output/big']);
      const filled = Number(/^(\d+)\s+\/output\/big$/m.exec((await cluster.cli(['logs', fill.id])).stdout)?.[1] ?? NaN);
      recordHostile('output end to end: fill the disk through /output (64 MiB into a 1 MiB cap)', !(filled <= 4 * 1024) || fill.info.outcome?.kind !== 'output_rejected');
      assert.ok(filled <= 4 * 1024, `the task wrote ${filled} KiB`);
      assert.equal(kindOf(fill.info), 'output_rejected', JSON.stringify(fill.info));
      assert.match(fill.info.outcome!.message, /^task wrote more than the 1\.0 MiB output cap \(the task's max_output_bytes\)/);

      // what a task can see and touch: loopback only, a read-only root, no Docker socket, no worker files
      const look = await run(['--', 'sh', '-c', 'ls /sys/class/net; touch /etc/x 2>&1; ls /var/run/docker.sock 2>&1; ls / | tr "\\n" " " > /output/root.txt']);
      assert.equal(look.info.state, 'succeeded', JSON.stringify(look.info));
      const seen = (await cluster.cli(['logs', look.id])).stdout;
      const dir = join(cluster.home, `look-${look.id}`);
      assert.equal((await cluster.cli(['result', look.id, '-o', `${dir}.tar.gz`, '--extract', dir])).code, 0);
      const root = readFileSync(join(dir, 'root.txt'), 'utf8');
      const escaped = !/^lo$/m.test(seen) || /^eth/m.test(seen) || !/Read-only file system/.test(seen) || !/No such file/.test(seen) || /worker\.db|identity/.test(root);
      recordHostile('task end to end: network, writes outside /output, the Docker socket, worker files', escaped);
      assert.ok(!escaped, `${seen}\n/: ${root}`);
    });

    await t.test('the same worker process and node serve a plain task afterwards', async () => {
      assert.equal(cluster.worker!.child.exitCode, null, cluster.worker!.output);
      const ok = await run(['--', 'sh', '-c', 'echo fine > /output/ok.txt']);
      assert.equal(ok.info.state, 'succeeded', JSON.stringify(ok.info));
      const nodes = JSON.parse((await cluster.cli(['nodes', '--json'])).stdout) as { nodeId: string; online: boolean }[];
      assert.deepEqual(nodes.map((n) => [n.nodeId, n.online]), [[ok.info.nodeId, true]]);
    });
  } finally {
    await cluster.close();
  }
});
