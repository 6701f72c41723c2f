// What a built executable must look like before it ships, checked without running it (the
// Windows and arm64 ones cannot run here): an image for its platform and architecture (ELF for
// Linux, PE32+ for Windows), Node's single-executable fuse flipped (postject flips it only when
// it has injected the SEA blob), and the hivemind bundle inside (not a bare Node binary).
// Used by scripts/build-exe.ts (a bad output fails the build) and test/ship/executable.test.ts.

export type ExePlatform = 'linux' | 'win';
export type ExeArch = 'x64' | 'arm64';

/** Node's SEA sentinel; ":0" in a plain node binary, ":1" once a blob is injected. */
const SEA_FUSE = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2';
/** A name the bundle always holds (the monitor port's environment variable) and Node never does. */
const BUNDLE_MARKER = 'HIVEMIND_MONITOR_PORT';
const ELF_MACHINE: Record<ExeArch, number> = { x64: 0x3e, arm64: 0xb7 };
const PE_MACHINE: Record<ExeArch, number> = { x64: 0x8664, arm64: 0xaa64 };

/** The header's own description of what the image is for, or why it is not an image at all. */
function imageProblem(image: Buffer, platform: ExePlatform, arch: ExeArch): string | undefined {
  if (platform === 'linux') {
    if (image.length < 20 || image.readUInt32BE(0) !== 0x7f454c46) return 'not an ELF image';
    if (image[4] !== 2) return 'not a 64-bit ELF image';
    const machine = image.readUInt16LE(18);
    return machine === ELF_MACHINE[arch] ? undefined : `an ELF image for machine 0x${machine.toString(16)}, not ${arch} (0x${ELF_MACHINE[arch].toString(16)})`;
  }
  if (image.length < 0x40 || image.toString('latin1', 0, 2) !== 'MZ') return 'not a PE image (no MZ header)';
  const pe = image.readUInt32LE(0x3c);
  if (pe + 6 > image.length || image.toString('latin1', pe, pe + 4) !== 'PE\0\0') return 'not a PE image (no PE signature)';
  const machine = image.readUInt16LE(pe + 4);
  return machine === PE_MACHINE[arch] ? undefined : `a PE image for machine 0x${machine.toString(16)}, not ${arch} (0x${PE_MACHINE[arch].toString(16)})`;
}

/** What is wrong with `image` as the hivemind executable for platform/arch; empty when nothing is. */
export function exeProblems(image: Buffer, platform: ExePlatform, arch: ExeArch): string[] {
  const problems: string[] = [];
  const header = imageProblem(image, platform, arch);
  if (header) problems.push(header);
  if (!image.includes(`${SEA_FUSE}:1`)) problems.push('no SEA blob injected (the SEA fuse is not flipped)');
  if (!image.includes(BUNDLE_MARKER)) problems.push(`the hivemind bundle is not inside (no "${BUNDLE_MARKER}")`);
  return problems;
}
