// The `docker run` flags that let a worker in a container bound its tasks' /output: the host's
// loop devices. A container sees only the device nodes it is given, not ones the host adds later,
// so every /dev/loopN that exists now is passed (dockerd mounts the same device on the host side).
import { readdirSync } from 'node:fs';

export function loopDeviceArgs(dev = '/dev'): string[] {
  let names: string[];
  try {
    names = readdirSync(dev);
  } catch {
    return [];
  }
  const loops = names.filter((n) => /^loop\d+$/.test(n)).sort((a, b) => Number(a.slice(4)) - Number(b.slice(4)));
  if (!names.includes('loop-control')) return [];
  return ['loop-control', ...loops].flatMap((n) => ['--device', `${dev}/${n}`]);
}
