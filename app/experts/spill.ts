/**
 * A scratch file of converted disk-tier experts. An expert the checkpoint
 * stores in another form than the slot pool holds (f32 or bf16 values, or
 * another block format, for a pool of quantized experts) would be quantized
 * again on every read from disk — a Mixtral-8x7B expert is ~176M values, about
 * a minute of one core's encoding, on the decode path. So the disk tier's
 * converted experts are encoded once, while the model loads, into this file,
 * and read back from it as stored blocks; the file is removed when the model is
 * disposed.
 *
 * @module
 */

import { readFully } from "../read_fully.ts";

/**
 * An append-only temporary file of expert slabs, read back by offset. Reads
 * and writes are serialised (each is a seek and a transfer on one handle).
 *
 * @example
 * ```ts ignore
 * import { ExpertSpill } from "./spill.ts";
 * const spill = await ExpertSpill.create();
 * const at = await spill.append(new Uint8Array([1, 2, 3, 4]));
 * const back = new Uint8Array(4);
 * await spill.read(at, back);
 * spill.close(); // and removes the file
 * ```
 */
export class ExpertSpill {
  /** The file's path (in the system's temporary folder). */
  readonly path: string;
  /** Bytes written so far. */
  size = 0;
  #file: Deno.FsFile | undefined;
  #queue: Promise<unknown> = Promise.resolve();
  /** Removes the file if the process ends before `close` (a model never disposed). */
  #onUnload = () => this.close();

  private constructor(path: string, file: Deno.FsFile) {
    this.path = path;
    this.#file = file;
    globalThis.addEventListener("unload", this.#onUnload);
  }

  /** A new empty spill file in `dir` (default: the system's temporary folder). */
  static async create(dir?: string): Promise<ExpertSpill> {
    const path = await Deno.makeTempFile({ dir, prefix: "kiln_experts_", suffix: ".blocks" });
    const file = await Deno.open(path, { read: true, write: true });
    return new ExpertSpill(path, file);
  }

  /** Appends `bytes`; returns the offset they start at. */
  append(bytes: Uint8Array): Promise<number> {
    return this.#serial(async (file) => {
      const at = this.size;
      await file.seek(at, Deno.SeekMode.Start);
      let done = 0;
      while (done < bytes.length) done += await file.write(bytes.subarray(done));
      this.size += bytes.length;
      return at;
    });
  }

  /** Fills `dst` from the bytes at `offset`. */
  read(offset: number, dst: Uint8Array): Promise<void> {
    return this.#serial((file) => readFully(file, this.path, offset, dst, "a spilled expert"));
  }

  /** Closes and removes the file (also done when the process exits normally without it). */
  close(): void {
    if (!this.#file) return;
    globalThis.removeEventListener("unload", this.#onUnload);
    this.#file.close();
    this.#file = undefined;
    try {
      Deno.removeSync(this.path);
    } catch { /* already gone */ }
  }

  #serial<T>(op: (file: Deno.FsFile) => Promise<T>): Promise<T> {
    const run = this.#queue.then(() => {
      if (!this.#file) throw new Error(`${this.path}: the expert spill file is closed`);
      return op(this.#file);
    });
    this.#queue = run.catch(() => {});
    return run;
  }
}
