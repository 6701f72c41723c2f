import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatDoctor, runDoctor, type DoctorProbes } from '../../src/doctor/doctor.js';
import type { EngineReport } from '../../src/runtime/engine-identity.js';
import { parseEngineSocket } from '../../src/runtime/engine-socket.js';

const docker: EngineReport = { version: '20.10.24', apiVersion: '1.41', components: ['Engine', 'containerd'], cgroupVersion: '1', cgroupDriver: 'cgroupfs', securityOptions: ['name=seccomp,profile=default'], memoryLimit: true, cpuCfsQuota: true, pidsLimit: true };
/** What Podman 4.3 answers on this project's cgroup v1 host, rootful and rootless (/libpod/info's rootless and controllers). */
const podman: EngineReport = { ...docker, version: '4.3.1', components: ['Podman Engine', 'Conmon', 'OCI Runtime (crun)'], podman: { rootless: false, cgroupControllers: ['cpuset', 'cpu', 'cpuacct', 'memory', 'pids'] } };
const rootless: EngineReport = { ...podman, podman: { rootless: true, cgroupControllers: [] } };
const engineSocket = parseEngineSocket('/var/run/docker.sock');

const healthy: DoctorProbes = {
  engine: async () => docker,
  commandVersion: async (cmd) => (cmd === 'nvidia-smi' ? undefined : `${cmd} 1.0`),
  portFree: async () => true,
  dirWritable: async () => undefined,
  outputFs: async () => undefined,
  services: async () => undefined,
  egress: async () => undefined,
  gvisor: async () => ({ usable: true, detail: 'runtime "runsc" registered and a container starts under it' }),
  nodeVersion: () => 'v24.9.0',
};

test('doctor: a healthy node has no failures', async () => {
  const r = await runDoctor({ dataDir: '/d', masterPort: 7070, monitorPort: 5001, engineSocket }, healthy);
  assert.deepEqual(r.filter((c) => c.status !== 'ok'), []);
  assert.match(formatDoctor(r), /no nvidia-smi: this node offers no GPUs/);
});

test('doctor: each problem comes with its fix', async () => {
  const broken: DoctorProbes = {
    ...healthy,
    engine: async () => {
      throw new Error('connect ENOENT /var/run/docker.sock');
    },
    commandVersion: async () => undefined,
    portFree: async (_h, port) => port !== 5001,
    dirWritable: async () => 'EACCES: permission denied',
    egress: async () => 'the DOCKER-USER chain is missing or unreadable (exit 1)',
    nodeVersion: () => 'v20.20.2',
  };
  const r = await runDoctor({ dataDir: '/root/x', masterPort: 7070, monitorPort: 5001, engineSocket }, broken);
  const by = new Map(r.map((c) => [c.name, c]));
  assert.equal(by.get('engine')?.status, 'fail');
  assert.match(by.get('engine')?.fix ?? '', /apt-get install docker.io/);
  assert.match(by.get('engine')?.fix ?? '', /apt-get install podman/);
  assert.match(by.get('engine')?.fix ?? '', /--engine-socket or DOCKER_HOST/);
  assert.equal(by.get('node')?.status, 'fail');
  assert.match(by.get('wireguard-tools')?.fix ?? '', /apt-get install wireguard-tools/);
  assert.match(by.get('busybox')?.fix ?? '', /busybox-static/);
  assert.equal(by.get('monitor port')?.status, 'warn');
  assert.equal(by.get('data dir')?.status, 'fail');
  assert.equal(by.get('egress')?.status, 'warn');
  assert.match(by.get('egress')?.detail ?? '', /cannot offer the egress network \(the DOCKER-USER chain is missing/);
  assert.match(by.get('egress')?.fix ?? '', /--egress-dns/);
  assert.match(formatDoctor(r), /\[FAIL\] engine: no container engine answers at unix:\/\/\/var\/run\/docker.sock: connect ENOENT/);
});

test('doctor: says whether a task\'s /output is bounded, and what a node without loop devices does', async () => {
  const ok = await runDoctor({ dataDir: '/d', masterPort: 7070, monitorPort: 5001, engineSocket }, healthy);
  assert.match(ok.find((c) => c.name === 'task output')?.detail ?? '', /loop filesystem in \/d\/output-fs: writes stop at its cap plus a small slack/);
  const r = await runDoctor({ dataDir: '/d', masterPort: 7070, monitorPort: 5001, engineSocket }, { ...healthy, outputFs: async () => 'losetup failed: cannot find an unused loop device' });
  const c = r.find((x) => x.name === 'task output');
  assert.equal(c?.status, 'fail');
  assert.match(c?.detail ?? '', /cannot find an unused loop device.*`worker start` refuses to start, `dev` runs with \/output checked only after a task exits/);
  assert.match(c?.fix ?? '', /as root on Linux with loop devices/);
});

test('doctor: a node whose operator allowed unbounded output is a warning that says what a task can do, not a failure', async () => {
  const noLoop = { ...healthy, outputFs: async () => 'losetup is not installed (package e2fsprogs / mount)' };
  const refused = (await runDoctor({ dataDir: '/d', masterPort: 7070, monitorPort: 5001, engineSocket }, noLoop)).find((x) => x.name === 'task output');
  assert.match(refused?.fix ?? '', /--allow-unbounded-output \(env HIVEMIND_ALLOW_UNBOUNDED_OUTPUT=true, config "allowUnboundedOutput": true\)/, 'the refusal names the opt-in');
  const r = await runDoctor({ dataDir: '/d', masterPort: 7070, monitorPort: 5001, allowUnboundedOutput: true, engineSocket }, noLoop);
  const c = r.find((x) => x.name === 'task output');
  assert.equal(c?.status, 'warn');
  assert.match(c?.detail ?? '', /losetup is not installed.*allowUnboundedOutput is set, so `worker start` runs unbounded: each task's \/output is a plain Docker volume, checked against its cap only after the task exits, so a running task can fill this disk/);
  // a host that can bound /output is bounded, whatever the opt-in says
  const ok = await runDoctor({ dataDir: '/d', masterPort: 7070, monitorPort: 5001, allowUnboundedOutput: true, engineSocket }, healthy);
  assert.equal(ok.find((x) => x.name === 'task output')?.status, 'ok');
});

test('doctor: says whether the node can host service replicas, and how to make it', async () => {
  const ok = await runDoctor({ dataDir: '/d', masterPort: 7070, monitorPort: 5001, engineSocket }, healthy);
  assert.equal(ok.find((c) => c.name === 'services')?.status, 'ok');
  const r = await runDoctor({ dataDir: '/d', masterPort: 7070, monitorPort: 5001, engineSocket }, { ...healthy, services: async () => 'nsenter is not installed (util-linux): services need it to reach a replica\'s port' });
  const s = r.find((c) => c.name === 'services');
  assert.equal(s?.status, 'warn');
  assert.match(s?.detail ?? '', /cannot host service replicas \(nsenter is not installed/);
  assert.match(s?.fix ?? '', /as root with nsenter installed/);
});

test('doctor: says whether gVisor is usable, and how to install and register runsc when it is not', async () => {
  const ok = (await runDoctor({ dataDir: '/d', masterPort: 7070, monitorPort: 5001, engineSocket }, healthy)).find((x) => x.name === 'gvisor');
  assert.equal(ok?.status, 'ok');
  assert.match(ok?.detail ?? '', /offers gVisor isolation/);
  const r = await runDoctor({ dataDir: '/d', masterPort: 7070, monitorPort: 5001, engineSocket }, { ...healthy, gvisor: async () => ({ usable: false, reason: 'Docker has no "runsc" runtime registered (it lists runc)' }) });
  const g = r.find((x) => x.name === 'gvisor');
  assert.equal(g?.status, 'warn');
  assert.match(g?.detail ?? '', /no "runsc" runtime registered.*offers runc only.*--isolation gvisor` refuses to start/);
  assert.match(g?.fix ?? '', /apt-get install runsc/);
  assert.match(g?.fix ?? '', /"runtimeArgs": \["--network=none"\]/);
  assert.match(g?.fix ?? '', /kill -HUP/);
});

test('doctor: names the engine it found, rootful or rootless, and which limits hold', async () => {
  const opts = { dataDir: '/d', masterPort: 7070, monitorPort: 5001, engineSocket };
  const onDocker = new Map((await runDoctor(opts, healthy)).map((c) => [c.name, c]));
  assert.match(onDocker.get('engine')?.detail ?? '', /^rootful Docker 20\.10\.24 \(cgroup v1, cgroupfs\) at unix:\/\/\/var\/run\/docker\.sock/);
  assert.equal(onDocker.get('limits')?.status, 'ok');

  const rootful = new Map((await runDoctor({ ...opts, engineSocket: parseEngineSocket('unix:///run/hivemind-podman/podman.sock') }, { ...healthy, engine: async () => podman })).map((c) => [c.name, c]));
  assert.match(rootful.get('engine')?.detail ?? '', /^rootful Podman 4\.3\.1 \(cgroup v1, cgroupfs\) at unix:\/\/\/run\/hivemind-podman\/podman\.sock \(NodeFacts engine "podman"\)/);
  assert.equal(rootful.get('limits')?.status, 'ok');
  // gVisor and egress are Docker's: a Podman node says so instead of probing Docker
  assert.match(rootful.get('gvisor')?.detail ?? '', /rootful Podman, and gVisor is offered on Docker only/);
  assert.match(rootful.get('egress')?.detail ?? '', /egress network is offered on Docker only/);

  const r = new Map((await runDoctor(opts, { ...healthy, engine: async () => rootless })).map((c) => [c.name, c]));
  assert.equal(r.get('engine')?.status, 'ok');
  assert.match(r.get('engine')?.detail ?? '', /^rootless Podman 4\.3\.1 .*"podman-rootless"\): no root daemon runs the tasks/);
  const limits = r.get('limits');
  assert.equal(limits?.status, 'warn');
  assert.match(limits?.detail ?? '', /cannot enforce cpus \(--cpus\), memory \(--memory\) and pids \(--pids\) limits \(the engine runs rootless on cgroup v1/);
  assert.equal(limits?.fix, 'rootless Podman on cgroup v1 cannot enforce memory, CPU or pids limits: use cgroup v2 with the cpu, memory and pids controllers delegated to the user (systemd), or rootful Podman or Docker');
  assert.match(formatDoctor([...r.values()]), /\[WARN\] limits: .*\n       fix: rootless Podman on cgroup v1/);
});
