/**
 * Reading an exact byte range of an open file, for the checkpoint readers
 * (safetensors, GGUF): in chunks, so a huge tensor never asks the OS for one
 * giant read, and with a clear error when the file is shorter than its header
 * promised.
 *
 * @module
 */

/** Bytes asked of the OS per read. */
const CHUNK_BYTES = 16 * 1024 * 1024;

/**
 * Fills `dst` from `file` at `offset`, in chunks; a short file is a RangeError
 * naming `path`, the byte where it ends and `what` was being read. `onBytes`
 * hears each chunk (progress).
 *
 * @example
 * ```ts ignore
 * import { readFully } from "./read_fully.ts";
 * using f = await Deno.open("model.gguf");
 * const head = new Uint8Array(8);
 * await readFully(f, "model.gguf", 0, head, "the magic");
 * ```
 */
export async function readFully(
  file: Deno.FsFile,
  path: string,
  offset: number,
  dst: Uint8Array,
  what: string,
  onBytes?: (bytes: number) => void,
): Promise<void> {
  await file.seek(offset, Deno.SeekMode.Start);
  let done = 0;
  while (done < dst.length) {
    const n = await file.read(dst.subarray(done, Math.min(done + CHUNK_BYTES, dst.length)));
    if (n === null || n === 0) {
      throw new RangeError(
        `${path}: file ends at byte ${offset + done} while reading ${what} ` +
          `(bytes ${offset}..${offset + dst.length}); was it truncated?`,
      );
    }
    done += n;
    onBytes?.(n);
  }
}
