// The receiving side of an upload with a checksum trailer (transfer/checksum-upload.ts sends
// one): after the header, chunks and then one trailer with the whole file's size and sha256.
// Used by SubmitTask (the client's input) and UploadResult (a node's result).
import { InvalidArgumentError } from './master-errors.js';

export interface UploadTrailer {
  size: number;
  sha256: string;
}

/** A message of a client-streaming upload call (SubmitTaskRequest, UploadResultRequest). */
export interface TrailedUploadMessage {
  part?: { $case: 'header'; value: unknown } | { $case: 'chunk'; value: Uint8Array } | { $case: 'trailer'; value: UploadTrailer };
}

export interface TrailedUploadRules {
  /** Bytes the receiver already holds (a resumed upload); they count against `limit`. Default 0. */
  from?: number;
  /** The most bytes the upload may reach; the chunk that passes it is refused before it is yielded. */
  limit: number;
  /** The error for passing `limit`, given the bytes counted with the refused chunk. */
  overLimit(received: number): Error;
  /** What a chunk is called in the error for one after the trailer ("input chunk"). */
  chunkName: string;
  /** What the call is called in the error for a message that is neither ("a submission"). */
  callName: string;
}

export interface TrailedUpload {
  /** The chunks' bytes in order; ends when the sender ends the call. */
  chunks: AsyncGenerator<Uint8Array>;
  /** The trailer, once `chunks` has ended; undefined when the sender sent none. */
  trailer(): UploadTrailer | undefined;
}

/** Reads the rest of an upload call whose header has been taken already. */
export function receiveTrailedUpload(msgs: AsyncIterable<TrailedUploadMessage>, rules: TrailedUploadRules): TrailedUpload {
  let trailer: UploadTrailer | undefined;
  let received = rules.from ?? 0;
  const chunks = async function* (): AsyncGenerator<Uint8Array> {
    for await (const m of msgs) {
      if (m.part?.$case === 'chunk') {
        if (trailer) throw new InvalidArgumentError(`${rules.chunkName} after the trailer`);
        received += m.part.value.length;
        if (received > rules.limit) throw rules.overLimit(received);
        yield m.part.value;
      } else if (m.part?.$case === 'trailer') {
        trailer = m.part.value;
      } else {
        throw new InvalidArgumentError(`unexpected message in ${rules.callName} (a second header?)`);
      }
    }
  };
  return { chunks: chunks(), trailer: () => trailer };
}
