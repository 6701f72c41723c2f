// The data mounts of a task spec (shared by CLI, master and node) and the CLI's --data flag: every
// refusal names the field and the rule; the paths a user means are accepted.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError, InvalidTaskError } from '../../src/common/errors.js';
import { DataKind, TaskSpec, type DataMount } from '../../src/protocol/gen/hivemind/v1/common.js';
import { DATA_MOUNT_LIMITS, checkDataMounts } from '../../src/protocol/data-mount-rules.js';
import { checkTaskSpec } from '../../src/protocol/task-spec-rules.js';
import { parseDataFlag } from '../../src/cli/data-mount-flag.js';
import { resolveTaskData } from '../../src/master/task-data-mounts.js';
import { InvalidArgumentError } from '../../src/master/master-errors.js';
import { recordHostile } from '../helpers/fault-ledger.js';

const HEX = 'ab'.repeat(32);
const DIGEST = `sha256:${HEX}`;
const mount = (p: Partial<DataMount> = {}): DataMount => ({ sha256: DIGEST, path: '/models', size: 0, kind: DataKind.DATA_KIND_UNSPECIFIED, url: '', ...p });
const spec = (data: DataMount[]): TaskSpec => ({ image: 'hivemind/busybox:1', command: [], env: new Map(), limits: undefined, network: 0, maxOutputBytes: 0, data });

/** Counts the cases that got through (for the ledger) before asserting each refusal. */
function refuseAll<T>(name: string, cases: [T, RegExp][], check: (v: T) => void, errorClass: new (...a: never[]) => Error): void {
  let escaped = 0;
  for (const [v] of cases) {
    try {
      check(v);
      escaped++;
    } catch {
      // asserted below
    }
  }
  recordHostile(name, escaped, cases.length);
  for (const [v, re] of cases) assert.throws(() => check(v), (e) => e instanceof errorClass && re.test(e.message), `${String(re)} for ${JSON.stringify(v)}`);
}

test('data mounts at ordinary paths, external ones with a hash, are accepted', () => {
  for (const data of [
    [],
    [mount()],
    [mount({ path: '/data/llama-3' }), mount({ path: '/data/llama-2', sha256: `sha256:${'c'.repeat(64)}` })],
    [mount({ path: '/var/lib/model' }), mount({ path: '/home/user/x' }), mount({ path: '/inputs' }), mount({ path: '/tmpdata' })],
    [mount({ url: 'https://example.com/m.bin', size: 0 }), mount({ path: '/w', url: 'http://10.0.0.1:8080/w?x=1' })],
    [mount({ path: '/' + 'a'.repeat(255) })],
    Array.from({ length: DATA_MOUNT_LIMITS.maxMounts }, (_, i) => mount({ path: `/d${i}` })),
  ]) {
    assert.doesNotThrow(() => checkTaskSpec(spec(data)), JSON.stringify(data.map((m) => m.path)));
  }
});

test('data mounts that would hide the task or the system, or are not normalised, are refused', () => {
  const one = (p: Partial<DataMount>): DataMount[] => [mount(p)];
  refuseAll('data mounts: bad paths, digests, urls and counts refused', [
    [one({ path: 'models' }), /^spec\.data\[0\]\.path "models" is not an absolute path/],
    [one({ path: '' }), /is not an absolute path/],
    [one({ path: '/' }), /^spec\.data\[0\]\.path is "\/": a data set cannot replace the container's root/],
    [one({ path: '/models/' }), /ends with "\/": write it without \(e\.g\. "\/models"\)/],
    [one({ path: '/a//b' }), /holds "\/\/"/],
    [one({ path: '/a/../etc' }), /holds a "\." or "\.\." segment/],
    [one({ path: '/a/./b' }), /holds a "\." or "\.\." segment/],
    [one({ path: '/input' }), /"\/input" is \/input, which the task itself uses/],
    [one({ path: '/output/x' }), /"\/output\/x" is inside \/output, which the task itself uses/],
    [one({ path: '/tmp/cache' }), /is inside \/tmp/],
    [one({ path: '/etc' }), /"\/etc" is the system path \/etc/],
    [one({ path: '/usr/share/m' }), /is inside the system path \/usr/],
    [one({ path: '/proc/1' }), /system path \/proc/],
    [one({ path: '/var/run/x' }), /system path \/var\/run/],
    [one({ path: '/lib64' }), /system path \/lib64/],
    [one({ path: '/a\nb' }), /holds a control character, ":" or ","/],
    [one({ path: '/a:b' }), /holds a control character, ":" or ","/],
    [one({ path: '/a,ro' }), /holds a control character, ":" or ","/],
    [one({ path: '/' + 'a'.repeat(256) }), /^spec\.data\[0\]\.path is 257 characters, over the maximum of 256/],
    [one({ sha256: 'sha256:XYZ' }), /^spec\.data\[0\]\.sha256 "sha256:XYZ" is not a digest/],
    [one({ sha256: HEX }), /is not a digest: expected "sha256:" and 64 lowercase hex digits/],
    [one({ sha256: '', url: 'https://e.com/x' }), /an external data set needs its sha256: URL@sha256:HEX:\/path/],
    [one({ url: 'ftp://e.com/x' }), /^spec\.data\[0\]\.url "ftp:\/\/e\.com\/x" is a ftp url: only http:\/\/ and https:\/\/ are fetched/],
    [one({ url: 'file:///etc/passwd' }), /is a file url/],
    [one({ url: 'https://user:pw@e.com/x' }), /holds a user name or password \(user:password@\)/],
    [one({ url: 'https://tok@e.com/x' }), /holds a user name or password/],
    [one({ url: 'https://e.com/a b' }), /holds whitespace or a control character/],
    [one({ url: 'not a url' }), /holds whitespace/],
    [one({ url: 'https//e.com' }), /is not a url/],
    [one({ url: `https://e.com/${'a'.repeat(2048)}` }), /^spec\.data\[0\]\.url is 2062 characters, over the maximum of 2048/],
    [one({ size: DATA_MOUNT_LIMITS.maxSizeBytes + 1 }), /^spec\.data\[0\]\.size is 16\.0 TiB, over the maximum of 16\.0 TiB for a data set/],
    [one({ size: -1 }), /size must be a whole number ≥ 0, got -1/],
    [one({ kind: 7 as DataKind }), /^spec\.data\[0\]\.kind 7 is not a data kind/],
    [Array.from({ length: 17 }, (_, i) => mount({ path: `/d${i}` })), /^spec\.data has 17 data sets, over the maximum of 16 per task/],
    [[mount({ path: '/m' }), mount({ path: '/m' })], /^spec\.data\[0\] and spec\.data\[1\] are both mounted at "\/m"/],
    [[mount({ path: '/m' }), mount({ path: '/m/sub' })], /^spec\.data: "\/m\/sub" is inside "\/m", where another data set is mounted: mounts may not nest/],
    [[mount({ path: '/m/sub' }), mount({ path: '/x' }), mount({ path: '/m' })], /"\/m\/sub" is inside "\/m"/],
  ], (data) => checkTaskSpec(spec(data)), InvalidTaskError);
  // A path that merely starts like a reserved one is not inside it.
  assert.doesNotThrow(() => checkDataMounts([mount({ path: '/inputs' }), mount({ path: '/m' }), mount({ path: '/mm' })]));
  // The master's own --max-data is a lower bound for its submissions.
  assert.throws(() => checkDataMounts([mount({ size: 2048 })], 1024), /size is 2\.0 KiB, over the maximum of 1\.0 KiB/);
});

test('--data takes a name, a digest or an url with its hash, the path after the last ":/"', () => {
  assert.deepEqual(parseDataFlag('llama:/models/llama'), { name: 'llama', path: '/models/llama' });
  assert.deepEqual(parseDataFlag(`${DIGEST}:/m`), { mount: mount({ path: '/m' }) });
  assert.deepEqual(parseDataFlag(`https://h.example/a/b.bin@${DIGEST}:/w`), {
    mount: mount({ path: '/w', url: 'https://h.example/a/b.bin', kind: DataKind.DATA_KIND_FILE }),
  });
  // An url holding "@" and ":/" of its own: the hash is after the last "@sha256:", the path after the last ":/".
  assert.deepEqual(parseDataFlag(`http://h:8080/x@y/f?q=a:/b@${DIGEST}:/data`), {
    mount: mount({ path: '/data', url: 'http://h:8080/x@y/f?q=a:/b', kind: DataKind.DATA_KIND_FILE }),
  });
  refuseAll('--data: malformed flags refused', [
    ['llama', /^--data "llama" names no container path: expected NAME:\/path, sha256:HEX:\/path or URL@sha256:HEX:\/path/],
    [':/m', /names no container path/],
    ['https://h/x.bin:/m', /^--data "https:\/\/h\/x\.bin:\/m": an external data set needs its sha256: URL@sha256:HEX:\/path/],
    ['https://h/x.bin@sha256:12:/m', /the sha256 "sha256:12" is not a digest/],
    [`ftp://h/x@${DIGEST}:/m`, /only http:\/\/ and https:\/\/ sources are fetched/],
    ['bad name!:/m', /--data "bad name!" is not a data set name.*\(expected NAME:\/path/],
    ['sha256:zz:/m', /--data "sha256:zz" is not a digest/],
  ], parseDataFlag, ConfigError);
});

test('at submission the master fills size and kind of the data sets it holds and refuses others', () => {
  const held = new Map([[HEX, { size: 4096, kind: DataKind.DATA_KIND_DIR }]]);
  const lookup = { get: (hex: string) => held.get(hex) };
  assert.deepEqual(resolveTaskData([mount({ size: 1, kind: DataKind.DATA_KIND_FILE })], lookup, 1e9), [mount({ size: 4096, kind: DataKind.DATA_KIND_DIR })]);
  // An external data set is a file of the declared (or unknown) size; the master need not hold it.
  const other = `sha256:${'c'.repeat(64)}`;
  assert.deepEqual(resolveTaskData([mount({ sha256: other, url: 'https://e.com/x' })], lookup, 1e9), [mount({ sha256: other, url: 'https://e.com/x', kind: DataKind.DATA_KIND_FILE })]);
  const refused = (re: RegExp) => (e: unknown) => e instanceof InvalidArgumentError && re.test(e.message);
  assert.throws(() => resolveTaskData([mount(), mount({ sha256: other, path: '/b' })], lookup, 1e9),
    refused(new RegExp(`^spec\\.data\\[1\\]: no data set ${other} at this master; put it with \`hivemind data put\``)));
  assert.throws(() => resolveTaskData([mount({ sha256: other, url: 'https://e.com/x', size: 2048 })], lookup, 1024),
    refused(/^spec\.data\[0\]\.size is 2\.0 KiB, over this master's maximum of 1\.0 KiB for a data set/));
});
