/**
 * The decode GEMV (1–4 activation rows) for every block format but Q4_K
 * (Q8_0, Q4_0/1, Q5_0/1, Q2_K, Q3_K, Q5_K, Q6_K, the IQ formats and ggml's
 * newer low-bit ones) weights, a block at a time, in the style of the Q4_K one (`./gemv_q4k.ts`):
 * each invocation owns many weight rows, loads a chunk of each activation row
 * once and multiplies it into every weight row's codes, decodes a row's scales
 * once a block and folds each group's affine map in once
 * (`acc += S·Σa·q − M·Σa`).
 *
 * A weight row's words are each loaded once, as `vec4<u32>`s where the weight
 * allows, however a block straddles them (`./block_words.ts`); codes are
 * masked in place inside their words and converted through i32
 * (`./block_codecs.ts`). On llvmpipe, where each invocation is a SIMD lane,
 * every per-lane load is a loop over the lanes: the count of load
 * instructions is what the GEMV's time (and compile time) follows.
 *
 * Measured on llvmpipe (2 cores, 14336×4096, one token, ms a call): f16 26.5;
 * Q8_0 13.1, Q6_K 16.4, Q5_K 11.1, Q4_0 9.3 (the group-wise kernel: 25.5,
 * 50.8, 36.3, 24.6). Rows an invocation and blocks an iteration
 * (`BlockCodec.columns`, `maxUnit`) keep each kernel's first compile near the
 * Q4_K GEMV's (2–4 s on one core for one activation row).
 *
 * @module
 */

import type { QuantFormat } from "../../core/quant/formats.ts";
import type { KernelSource } from "../types.ts";
import { flatIndex, grid, KernelIo } from "../wgsl/mod.ts";
import { BLOCK_CODECS, type BlockBytes, type CodecChunk, codecHelpers } from "./block_codecs.ts";
import { BlockWords, chooseWordMode, type WordMode } from "./block_words.ts";

/**
 * Shape of a block-at-a-time decode GEMV; see {@linkcode emitBlockGemv}.
 *
 * @example
 * ```ts
 * import type { BlockGemvSpec } from "./block_gemv.ts";
 * const s: BlockGemvSpec = { format: "q6_k", rows: 1, N: 4096, K: 4096, elem: "f32", aDirect: true, cDirect: true, maxWorkgroupsPerDim: 65535 };
 * ```
 */
export interface BlockGemvSpec {
  /** The weight's format: one of {@linkcode blockGemvFormats}. */
  format: QuantFormat;
  /** Activation rows (1–4). */
  rows: number;
  /** Weight rows (outputs per activation row). */
  N: number;
  /** Row length, a whole number of blocks. */
  K: number;
  /** Activation and output storage type. */
  elem: "f32" | "f16";
  /** `in0` may be read as `array<vec4<elem>>`. */
  aDirect: boolean;
  /** `out0` may be written directly. */
  cDirect: boolean;
  /** Device limit `maxComputeWorkgroupsPerDimension`. */
  maxWorkgroupsPerDim: number;
  /** Weight rows an invocation owns (default 16; see {@linkcode blockGemvColumns}). */
  columns?: number;
}

/**
 * Whether {@linkcode emitBlockGemv} reads `N` rows of `K` elements of `format`:
 * a codec for it, and (odd-sized blocks: MXFP4) rows of whole word-aligned units.
 *
 * @example
 * ```ts
 * import { blockGemvFormats } from "./block_gemv.ts";
 * blockGemvFormats("q6_k", 4096, 64); // true
 * blockGemvFormats("mxfp4", 96, 64); // false: 3 blocks of 17 bytes a row
 * ```
 */
export function blockGemvFormats(format: QuantFormat, K: number, N: number): boolean {
  const codec = BLOCK_CODECS[format];
  return codec !== undefined && K % codec.elems === 0 &&
    chooseWordMode(codec.bytes, K / codec.elems, N, 1) !== undefined;
}

/**
 * Weight rows an invocation of {@linkcode emitBlockGemv} should own for `rows`
 * activation rows and `N` weight rows: on a CPU adapter the format's measured
 * choice (fewer where `N` is small, so at least 16 invocations spread over
 * the cores), on a GPU 4 (more invocations in flight).
 *
 * @example
 * ```ts
 * import { blockGemvColumns } from "./block_gemv.ts";
 * blockGemvColumns("q8_0", 1, 14336, true); // 16
 * blockGemvColumns("q8_0", 1, 14336, false); // 4
 * ```
 */
export function blockGemvColumns(
  format: QuantFormat,
  rows: number,
  N: number,
  cpu: boolean,
): number {
  const codec = BLOCK_CODECS[format];
  if (!codec || !cpu) return 4;
  const want = codec.columns[Math.min(rows, codec.columns.length) - 1];
  return Math.max(4, Math.min(want, 2 ** Math.floor(Math.log2(N / 16))));
}

/**
 * One chunk (`id` names it) for every weight row: the chunk's activations
 * loaded once (`act(r, i)`: row r's vec4 i inside the block), then per weight
 * row its codes multiplied in, one accumulator a group and layout, folded into
 * `acc_<r>_<c>` as `dot(Σ S·t, sv) − Σ S·off·Σa` (or `M·Σa`), the activation
 * sums shared between weight rows.
 */
function emitChunk(
  L: string[],
  chunk: CodecChunk,
  id: string,
  rs: readonly number[],
  cs: readonly number[],
  act: (r: number, i: number) => string,
  row: (c: number) => { rd: BlockBytes; hid: string },
  accName: (r: number, c: number) => string,
): void {
  const x = (r: number, i: number) => `x${id}_${r}_${i}`;
  for (const r of rs) {
    for (const i of new Set(chunk.groups.flat())) L.push(`    let ${x(r, i)} = ${act(r, i)};`);
  }
  // Σ activations of each (row, group, layout), times an offset, emitted when first needed.
  const sums = new Map<string, string>();
  const sum = (r: number, key: string, idx: number[], bias?: string, off = 1) => {
    const k = `${r}_${key}`, ko = `${k}_${off}_${bias}`;
    let n = sums.get(ko);
    if (!n) {
      let v = sums.get(k);
      if (!v) {
        v = `xs${id}_${k}`;
        L.push(`    let ${v} = ${idx.map((i) => x(r, i)).join(" + ")};`);
        sums.set(k, v);
      }
      n = `xo${id}_${k}_${sums.size}`;
      const d = `dot(${v}, ${bias ?? "vec4<f32>(1.0)"})`;
      L.push(`    let ${n} = ${off === 1 ? d : `${off}.0 * ${d}`};`);
      sums.set(ko, n);
    }
    return n;
  };
  for (const c of cs) {
    const cid = `_${id}_${c}`;
    const { rd, hid } = row(c);
    const accs = new Map<string, { g: number; sv: string; bias?: string; idx: number[] }>();
    const t = (r: number, key: string) => `t${cid}_${r}_${key}`;
    for (const st of chunk.steps(cid, rd, hid)) {
      L.push(...st.lines.map((l) => `    ${l}`));
      for (const { g, a: i, q, pat, sv, bias } of st.uses) {
        const key = `${g}_${pat}`;
        const acc = accs.get(key);
        if (acc) acc.idx.push(i);
        else accs.set(key, { g, sv, bias, idx: [i] });
        for (const r of rs) {
          L.push(
            acc
              ? `    ${t(r, key)} = fma(${x(r, i)}, ${q}, ${t(r, key)});`
              : `    var ${t(r, key)} = ${x(r, i)} * ${q};`,
          );
        }
      }
    }
    // Groups of one layout fold their scales into one vector before its dot.
    const byPat = new Map<string, string[]>();
    for (const [key, { sv }] of accs) byPat.set(sv, [...(byPat.get(sv) ?? []), key]);
    for (const r of rs) {
      for (const [sv, keys] of byPat) {
        const T = `T${cid}_${r}_${keys[0]}`;
        const minus = keys.map((key, n) => {
          const { g, bias, idx } = accs.get(key)!;
          const f = chunk.affine(hid, cid, g);
          L.push(
            n === 0
              ? `    var ${T} = ${f.S} * ${t(r, key)};`
              : `    ${T} = fma(vec4<f32>(${f.S}), ${t(r, key)}, ${T});`,
          );
          return "M" in f
            ? `${f.M} * ${sum(r, key, idx, bias)}`
            : `${f.S} * ${sum(r, key, idx, bias, f.off)}`;
        });
        L.push(`    ${accName(r, c)} += dot(${T}, ${sv}) - (${minus.join(" + ")});`);
      }
    }
  }
}

/**
 * One weight matrix of {@linkcode blockLoop}: its bytes (`vec4<u32>` elements
 * when the loop's mode says `vec4`, else `u32` words) and the WGSL row index
 * of output column j (rows are contiguous, `rowBytes` apart).
 *
 * @example
 * ```ts
 * import type { BlockLoopMatrix } from "./block_gemv.ts";
 * const m: BlockLoopMatrix = { words: "in1", row: (j) => `n0 + ${j}u` };
 * ```
 */
export interface BlockLoopMatrix {
  /** The array's name. */
  readonly words: string;
  /** WGSL expression of the row index of column j. */
  readonly row: (j: number) => string;
}

/**
 * The block-at-a-time K loop of {@linkcode emitBlockGemv}, for `mats` weight
 * matrices of one format sharing each activation load: `R` activation rows
 * (`a(r, i)`: row r's vec4 i as `vec4<f32>`), `C` columns of each matrix, rows
 * `K` long, `totalRows` rows in each bound array (the word mode depends on it).
 * Declares the accumulators `acc(r, m, j)` (f32). Returns the lines and the
 * word mode (whose `vec4` says how the arrays are bound).
 *
 * @example
 * ```ts
 * import { blockLoop } from "./block_gemv.ts";
 * const { mode } = blockLoop("q8_0", 1, 4, 64, 8, (_r, i) => `x[${i}]`, [{ words: "w", row: (j) => `${j}u` }], (r, m, j) => `acc_${m}_${r}_${j}`);
 * mode.kind; // "word"
 * ```
 */
export function blockLoop(
  format: QuantFormat,
  R: number,
  C: number,
  K: number,
  totalRows: number,
  a: (r: number, i: string) => string,
  mats: readonly BlockLoopMatrix[],
  acc: (r: number, m: number, j: number) => string,
): { lines: string[]; mode: WordMode } {
  const codec = BLOCK_CODECS[format];
  if (!codec || K % codec.elems !== 0) {
    throw new RangeError(`blockLoop: ${format} rows of ${K} are not whole blocks`);
  }
  const B = codec.bytes, BPR = K / codec.elems, rowBytes = BPR * B;
  const mode = chooseWordMode(B, BPR, totalRows, R > 1 ? 1 : codec.maxUnit);
  if (mode === undefined) {
    throw new RangeError(`blockLoop: ${format} rows of ${BPR} blocks make no word-aligned unit`);
  }
  const U = mode.blocks, E4 = codec.elems / 4;
  const rs = Array.from({ length: R }, (_, r) => r);
  // Columns of every matrix, numbered m·C + j.
  const cs = Array.from({ length: C * mats.length }, (_, c) => c);
  const mat = (c: number) => mats[Math.floor(c / C)];
  const L: string[] = [];
  const words = cs.map((c) => new BlockWords(L, mat(c).words, mode, B, c, codec.prefetch));
  for (const c of cs) L.push(words[c].base(mat(c).row(c % C), rowBytes));
  const accName = (r: number, c: number) => acc(r, Math.floor(c / C), c % C);
  for (const c of cs) for (const r of rs) L.push(`  var ${accName(r, c)} = 0.0;`);
  L.push(`  for (var b = 0u; b < ${BPR / U}u; b++) {`);
  for (const c of cs) words[c].begin();
  const reader = (u: number, c: number) => words[c].reader(u);
  for (let u = 0; u < U; u++) {
    const hid = (c: number) => `_${u}_${c}`;
    for (const c of cs) L.push(...codec.header(hid(c), reader(u, c)).map((l) => `    ${l}`));
    codec.chunks.forEach((chunk, ci) =>
      emitChunk(
        L,
        chunk,
        `${u}_${ci}`,
        rs,
        cs,
        (r, i) => a(r, `b * ${U * E4}u + ${u * E4 + i}u`),
        (c) => ({ rd: reader(u, c), hid: hid(c) }),
        accName,
      )
    );
  }
  L.push(`  }`);
  return { lines: L, mode };
}

/**
 * Emits the block-at-a-time GEMV: `out[r, n] = Σ_k in0[r, k]·W[n, k]` with `W`
 * the `[N, K]` weight's bytes bound whole as `in1` (`array<u32>`, or
 * `array<vec4<u32>>` where `arrayTypes.in1` says so).
 *
 * @example
 * ```ts
 * import { emitBlockGemv } from "./block_gemv.ts";
 * const k = emitBlockGemv({ format: "q8_0", rows: 1, N: 64, K: 256, elem: "f32", aDirect: true, cDirect: true, maxWorkgroupsPerDim: 65535 });
 * k.label; // "qgemv_q8_0_blocks_r1x16"
 * ```
 */
export function emitBlockGemv(spec: BlockGemvSpec): KernelSource {
  const { format, rows: R, N, K, elem } = spec;
  const codec = BLOCK_CODECS[format];
  if (!codec || R < 1 || R > 4 || K < 1 || K % codec.elems !== 0 || N < 1) {
    throw new RangeError(`emitBlockGemv: ${format}, rows ${R} (1–4), K ${K}, N ${N}`);
  }
  const io = new KernelIo();
  const C = spec.columns ?? 16;
  const invocations = Math.ceil(N / C);
  const WG = Math.ceil(invocations / 16) < 4 ? 8 : 16;
  const workgroups = grid(Math.ceil(invocations / WG), spec.maxWorkgroupsPerDim);
  const K4 = K / 4;
  const a = (r: number, i: string) =>
    spec.aDirect
      ? `vec4<f32>(${io.in(0)}[${r * K4}u + ${i}])`
      : `vec4<f32>(${
        [0, 1, 2, 3].map((e) => `f32(${io.load(0, `(${r * K4}u + ${i}) * 4u + ${e}u`)})`).join(", ")
      })`;
  const rs = Array.from({ length: R }, (_, r) => r);
  const cs = Array.from({ length: C }, (_, c) => c);
  const loop = blockLoop(format, R, C, K, N, a, [{
    words: io.in(1),
    row: (c) => `min(n0 + ${c}u, ${N - 1}u)`,
  }], (r, _m, c) => `acc_${r}_${c}`);
  const L = loop.lines;
  const mode = loop.mode;
  const U = mode.blocks;
  for (const r of rs) {
    for (const c of cs) {
      const i = `${r * N}u + n0 + ${c}u`;
      const v = `${elem}(acc_${r}_${c})`;
      L.push(
        `  if (n0 + ${c}u < ${N}u) { ${
          spec.cDirect ? `${io.out(0)}[${i}] = ${v};` : `${io.store(0, i, v)};`
        } }`,
      );
    }
  }
  const code = `${codecHelpers(format, (t) => io.table(t))}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let inv = ${flatIndex(workgroups, WG)};
  if (inv >= ${invocations}u) { return; }
  let n0 = inv * ${C}u;
${L.join("\n")}
}`;
  const arrayTypes: Record<string, string> = {};
  if (mode.vec4) arrayTypes.in1 = "vec4<u32>";
  if (spec.aDirect) arrayTypes.in0 = `vec4<${elem}>`;
  const how = `${U} block${U > 1 ? "s" : ""} an iteration, ${
    mode.vec4 ? "vec4<u32>" : "u32"
  } loads${
    mode.kind === "aligned"
      ? ""
      : mode.kind === "word"
      ? ", word offset at run time"
      : ", offset at run time"
  }`;
  return {
    label: `qgemv_${format}_blocks_r${R}x${C}`,
    code,
    workgroups,
    uses: io.uses,
    arrayTypes,
    choice: {
      algorithm: `qgemv_blocks_r${R}x${C}`,
      reason: `${format} decode: a block at a time, ${how}, each weight word loaded once`,
    },
  };
}
