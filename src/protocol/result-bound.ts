// How large a task's result archive (the tar.gz of /output), and its input archive, may be, one rule for the node that
// packs it and the master that stores it: the task's output cap plus a small allowance for tar
// headers and gzip framing. The node refuses to upload a larger archive (OUTPUT_REJECTED), and the
// master refuses, while streaming, any upload past it (docs/protocol.md, "Limits").

/** The output cap when a task leaves max_output_bytes at 0: a node's default --max-output. */
export const DEFAULT_MAX_OUTPUT_BYTES = 1024 ** 3;

/** The most a node unpacks of a task's input (its --input directory): a node's input cap. */
export const DEFAULT_MAX_INPUT_BYTES = 1024 ** 3;

/** The fixed part of the allowance: tar headers and padding of a few thousand files, compressed. */
export const RESULT_ALLOWANCE_BYTES = 1024 ** 2;

/**
 * The largest result archive for a task whose max_output_bytes is `maxOutputBytes` (0: the
 * default cap): the cap, 1/128 of it (gzip stores incompressible data with ~0.01 % framing; tar
 * pads each file to 512 bytes), and 1 MiB. A task whose output is within its cap but packs larger
 * (tens of thousands of tiny files) is refused by its node with a message saying so.
 */
export function resultArchiveBound(maxOutputBytes: number): number {
  const cap = maxOutputBytes > 0 ? maxOutputBytes : DEFAULT_MAX_OUTPUT_BYTES;
  return cap + Math.ceil(cap / 128) + RESULT_ALLOWANCE_BYTES;
}

/**
 * The largest input archive the master stores for a submission: what a node's input cap unpacks
 * from, with the same allowance. A larger one could never run, so it is refused while it streams.
 */
export function inputArchiveBound(maxInputBytes: number = DEFAULT_MAX_INPUT_BYTES): number {
  return resultArchiveBound(maxInputBytes);
}
