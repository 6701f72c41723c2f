import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { GpuProbeError, NVIDIA_SMI_ARGS, parseNvidiaSmiCsv, probeGpus } from '../../src/worker/resources/gpu-probe.js';
import { createFakeNvidiaSmi } from '../helpers/fake-nvidia-smi.js';

const MiB = 1024 * 1024;

test('probes two GPUs through a fake nvidia-smi on PATH, with the documented query', async (t) => {
  const fake = await createFakeNvidiaSmi();
  t.after(() => fake.cleanup());
  const gpus = await probeGpus({ env: { PATH: `${fake.dir}:/usr/bin:/bin` } });
  assert.deepEqual(gpus, [
    {
      index: 0,
      uuid: 'GPU-11111111-2222-3333-4444-555555555555',
      name: 'NVIDIA GeForce RTX 4090',
      memoryTotalBytes: 24564 * MiB,
      memoryUsedBytes: 1024 * MiB,
      utilizationPercent: 37,
      temperatureC: 45,
      powerW: 120.5,
    },
    {
      index: 1,
      uuid: 'GPU-66666666-7777-8888-9999-000000000000',
      name: 'NVIDIA A100-SXM4-80GB',
      memoryTotalBytes: 81920 * MiB,
      memoryUsedBytes: 0,
      utilizationPercent: 0,
      temperatureC: 31,
      // power.draw was [N/A]: absent, not 0 and not NaN
    },
  ]);
  assert.equal((await readFile(fake.argsFile, 'utf8')).trim(), NVIDIA_SMI_ARGS.join(' '));
});

test('no nvidia-smi on PATH means no GPUs, not an error', async (t) => {
  const empty = await mkdtemp(path.join(os.tmpdir(), 'hm-nopath-'));
  t.after(() => rm(empty, { recursive: true, force: true }));
  assert.deepEqual(await probeGpus({ env: { PATH: empty } }), []);
});

test('a failing nvidia-smi is an error that carries its stderr', async (t) => {
  const fake = await createFakeNvidiaSmi({ exitCode: 9, stderr: 'NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver' });
  t.after(() => fake.cleanup());
  await assert.rejects(probeGpus({ env: { PATH: `${fake.dir}:/usr/bin:/bin` } }), (err: unknown) => {
    assert.ok(err instanceof GpuProbeError);
    assert.match(err.message, /could not communicate with the NVIDIA driver/);
    return true;
  });
});

test('the parser survives N/A fields, junk lines, commas in names and blank output', () => {
  const gpus = parseNvidiaSmiCsv(
    [
      '',
      'garbage line',
      '1, GPU-b, Tesla, Weird, Name, [N/A], [N/A], [Not Supported], N/A, ',
      '[N/A], GPU-x, Broken, 1, 1, 1, 1, 1',
      '0, GPU-a, T4, 15360, 5, 3, 50, 27.9',
    ].join('\r\n'),
  );
  assert.deepEqual(gpus, [
    { index: 0, uuid: 'GPU-a', name: 'T4', memoryTotalBytes: 15360 * MiB, memoryUsedBytes: 5 * MiB, utilizationPercent: 3, temperatureC: 50, powerW: 27.9 },
    { index: 1, uuid: 'GPU-b', name: 'Tesla,Weird,Name', memoryTotalBytes: 0 },
  ]);
  assert.deepEqual(parseNvidiaSmiCsv(''), []);
});
