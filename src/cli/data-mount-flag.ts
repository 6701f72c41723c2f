// `--data REF:/container/path` of submit: a data set at the master by name or digest, or an
// external source URL@sha256:HEX, and where it appears in the container. Pure parsing; the names
// are resolved to digests by the caller (GetDataInfo), so the spec carries digests only.
import { ConfigError } from '../common/errors.js';
import { echoValue } from '../common/echo-value.js';
import { DataKind, type DataMount } from '../protocol/gen/hivemind/v1/common.js';
import { DIGEST_PREFIX, formatDigest, parseDataRef, parseDigest } from '../protocol/data-rules.js';

export const DATA_FLAG_FORM = 'NAME:/path, sha256:HEX:/path or URL@sha256:HEX:/path';

/** One --data flag: either a mount ready for the spec, or a name the master must resolve. */
export type DataFlag = { mount: DataMount } | { name: string; path: string };

const EXTERNAL = /^https?:\/\//i;

/** Parses one --data value; throws ConfigError naming the flag and the expected form. */
export function parseDataFlag(value: string): DataFlag {
  const flag = `--data "${echoValue(value)}"`;
  // The path is after the LAST ":/": a url's "://" and a digest's "sha256:" come before it.
  const cut = value.lastIndexOf(':/');
  if (cut <= 0) throw new ConfigError(`${flag} names no container path: expected ${DATA_FLAG_FORM}`);
  const ref = value.slice(0, cut);
  const path = value.slice(cut + 1);
  if (EXTERNAL.test(ref)) {
    const at = ref.lastIndexOf('@' + DIGEST_PREFIX);
    if (at < 0) throw new ConfigError(`${flag}: an external data set needs its sha256: URL@sha256:HEX:/path`);
    const url = ref.slice(0, at);
    const hex = digestOf(ref.slice(at + 1), flag);
    return { mount: { sha256: formatDigest(hex), path, size: 0, kind: DataKind.DATA_KIND_FILE, url } };
  }
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(value)) {
    throw new ConfigError(`${flag}: only http:// and https:// sources are fetched`);
  }
  let parsed;
  try {
    parsed = parseDataRef(ref, '--data');
  } catch (err) {
    throw new ConfigError(`${(err as Error).message} (expected ${DATA_FLAG_FORM})`);
  }
  if ('digest' in parsed) return { mount: { sha256: formatDigest(parsed.digest), path, size: 0, kind: DataKind.DATA_KIND_UNSPECIFIED, url: '' } };
  return { name: parsed.name, path };
}

function digestOf(value: string, flag: string): string {
  try {
    return parseDigest(value, 'the sha256');
  } catch (err) {
    throw new ConfigError(`${flag}: ${(err as Error).message}`);
  }
}
