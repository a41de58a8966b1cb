/**
 * Writing GGUF files: to disk, one tensor at a time (the file is never built in
 * memory), or to a `Uint8Array` for small files and tests.
 *
 * @module
 */

import { checkData, type GgufTensorSpec, type GgufWriteSpec, layoutGguf } from "./layout.ts";

/**
 * Writes a GGUF file at `path`: the header (version 3 unless asked otherwise),
 * then each tensor's data, aligned and zero-padded to `alignment` as the spec
 * requires. Everything but the tensors' data is checked before the file is
 * created; the data is checked as each tensor is written. The file appears
 * under its name only once complete (it is written beside it and renamed).
 *
 * @example
 * ```ts ignore
 * import { writeGguf } from "./writer.ts";
 * await writeGguf("tiny.gguf", {
 *   metadata: { "general.architecture": { type: "string", value: "llama" } },
 *   tensors: [{ name: "output_norm.weight", shape: [64], type: "f32", data: new Uint8Array(256) }],
 * });
 * ```
 */
export async function writeGguf(path: string, spec: GgufWriteSpec): Promise<void> {
  const plan = layoutGguf(path, spec);
  const tmp = `${path}.partial`;
  let file: Deno.FsFile;
  try {
    file = await Deno.open(tmp, { write: true, create: true, truncate: true });
  } catch (e) {
    throw writeError(e, path, tmp);
  }
  try {
    await writeAll(file, plan.header);
    const zeros = new Uint8Array(plan.alignment);
    for (const { spec: t, bytes } of plan.tensors) {
      const data = await tensorData(t);
      checkData(path, t, data, bytes);
      await writeAll(file, data);
      await writeAll(
        file,
        zeros.subarray(0, (plan.alignment - (bytes % plan.alignment)) % plan.alignment),
      );
    }
    file.close();
    await Deno.rename(tmp, path);
  } catch (e) {
    try {
      file.close();
    } catch { /* already closed */ }
    await Deno.remove(tmp).catch(() => {});
    throw writeError(e, path, tmp);
  }
}

/**
 * The bytes of a whole GGUF file, built in memory (for small files and tests);
 * every tensor's `data` must be a `Uint8Array`.
 *
 * @example
 * ```ts
 * import { encodeGguf } from "./writer.ts";
 * const bytes = encodeGguf({
 *   metadata: [["general.alignment", { type: "u32", value: 64 }]],
 *   tensors: [{ name: "w", shape: [2, 2], type: "f16", data: new Uint8Array(8) }],
 * });
 * bytes.length; // 128: the header padded to 64, then 8 bytes padded to 64
 * ```
 */
export function encodeGguf(spec: GgufWriteSpec, path = "encodeGguf"): Uint8Array {
  const plan = layoutGguf(path, spec);
  const out = new Uint8Array(plan.size);
  out.set(plan.header);
  for (const { spec: t, offset, bytes } of plan.tensors) {
    const data = typeof t.data === "function" ? t.data() : t.data;
    checkData(path, t, data, bytes);
    out.set(data as Uint8Array, plan.header.length + offset);
  }
  return out;
}

async function tensorData(t: GgufTensorSpec): Promise<Uint8Array> {
  return typeof t.data === "function" ? await t.data() : t.data;
}

async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  let done = 0;
  while (done < bytes.length) done += await file.write(bytes.subarray(done));
}

/** A missing `--allow-write` names the flag; other errors (the OS's own) pass through. */
function writeError(e: unknown, path: string, tmp: string): unknown {
  if (e instanceof Deno.errors.NotCapable) {
    const dir = path.includes("/") ? path.slice(0, path.lastIndexOf("/")) || "/" : ".";
    return new Deno.errors.NotCapable(
      `${path}: no permission to write it (and ${tmp} beside it); run with ` +
        `--allow-write=${dir} (or a folder above it)`,
    );
  }
  return e;
}
