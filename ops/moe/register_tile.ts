/**
 * The pieces every expert GEMM and GEMV is built from: the register-tiled K
 * loop, row stores, f16 weight widening, the slot-table indirection (the
 * activation and biases of the epilogues are `activation.ts`'s).
 *
 * Why register tiles (lavapipe runs WGSL on the CPU): fat invocations with
 * `rows × cols` accumulators and vec4 loads along K (every weight is stored
 * `[N, K]`) beat workgroup-memory tiling there, and need no barriers at all.
 *
 * @module
 */

import { u32, unpackHalves } from "../wgsl/mod.ts";
import type { QuantFormat } from "../../core/quant/formats.ts";
import { QUANT_GROUP, quantReaders, quantRowBytes, quantWords } from "../quant/mod.ts";
import { Q4K_HELPERS, q4kLoop } from "../quant/q4k_loop.ts";
import { blockLoop, type BlockLoopMatrix } from "../quant/block_gemv.ts";
import { BLOCK_CODECS, BLOCK_HELPERS } from "../quant/block_codecs.ts";
import { chooseWordMode } from "../quant/block_words.ts";
import type { ResolvedMoeConfig } from "./config.ts";
import type { MoeBuffer, MoeEmitContext, MoeIo, SlabRange } from "./operands.ts";

/**
 * `[0, 1, …, n − 1]`.
 *
 * @example
 * ```ts
 * import { range } from "./register_tile.ts";
 * range(3); // [0, 1, 2]
 * ```
 */
export function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

/** A weight load converted to f32 (f16 weights are widened after the load). */
function wLoad(c: ResolvedMoeConfig, read: (i: string) => string, idx: string, V: number): string {
  if (c.weightDtype === "f32") return read(idx);
  return V === 4 ? `vec4<f32>(${read(idx)})` : `f32(${read(idx)})`;
}

/**
 * One weight matrix of a K loop: how to read one of its vectors and the vec
 * index of weight row j's start.
 *
 * @example
 * ```ts
 * import type { KLoopMatrix } from "./register_tile.ts";
 * const w: KLoopMatrix = { read: (i) => `in2[${i}]`, bIdx: (j) => `(es * 8u + col0 + ${j}u) * 4u` };
 * ```
 */
export interface KLoopMatrix {
  /**
   * WGSL expression of vector `i` (vec4 when the loop's V is 4): a raw array
   * index, or a segment accessor call (see `MoeIo.weight`).
   */
  readonly read: (i: string) => string;
  /** WGSL vec index of row j's start. */
  readonly bIdx: (j: number) => string;
  /**
   * A block-quantized weight (see `expertMatrix`): the byte offset of row j
   * and the prefix of its readers (`<prefix>_qg`, `<prefix>_qc`); `read` then
   * reads u32 words and `bIdx` is unused.
   */
  /**
   * f16 weights viewed as `vec4<u32>` words of eight halves (`read` returns
   * words, `bIdx` counts words): on llvmpipe a load costs per lane and
   * component, so packed halves take half the loads of `vec4<f16>`.
   */
  readonly packedHalf?: boolean;
  readonly quant?: {
    readonly rowByte: (j: number) => string;
    readonly prefix: string;
    readonly format: QuantFormat;
    /** Q4_K: the vec4 index of row j (`read` then returns `vec4<u32>`). */
    readonly rowVec4?: (j: number) => string;
    /**
     * The other block formats, read a block at a time as the dense decode GEMV
     * does (`ops/quant/block_gemv.ts`): the bytes' array and row j's index.
     */
    readonly block?: BlockLoopMatrix & { readonly rows: number };
  };
}

/**
 * The K-loop matrix of expert weight `b`: `rows` rows of `cols` per slab,
 * slab expression `es`, output rows from `col0`. Dense weights are read as
 * `V`-wide vectors; quantized ones (`c.weightFormat`) as u32 words through
 * the format's readers, which are added to the kernel. A decode GEMV
 * (`gemv`) reads weights bound whole faster where it can: f16 rows of whole
 * 8-value words packed (`KLoopMatrix.packedHalf`), Q8_0/Q4_0/Q5_K/Q6_K a block
 * at a time (`block`) when slabs need no padding.
 *
 * @example
 * ```ts ignore
 * kLoop(c, R, N, KV, V, a, aIdx, [expertMatrix(c, io, "w1", V, slabs, "es", ff, d, "col0")]);
 * ```
 */
export function expertMatrix(
  c: ResolvedMoeConfig,
  io: MoeIo,
  b: MoeBuffer,
  V: number,
  slabs: SlabRange | undefined,
  es: string,
  rows: number,
  cols: number,
  col0: string,
  gemv = false,
): KLoopMatrix {
  const f = b === "w2" ? c.w2Format : c.weightFormat;
  if (
    f === undefined && gemv && c.weightDtype === "f16" && V === 4 && cols % 8 === 0 &&
    io.whole(b)
  ) {
    const KW = cols / 8; // vec4<u32> words a row
    return {
      read: io.weight(b, "u32", 4),
      bIdx: (j) => `(${es} * ${u32(rows)} + ${col0} + ${u32(j)}) * ${u32(KW)}`,
      packedHalf: true,
    };
  }
  if (f === undefined) {
    const KV = cols / V;
    return {
      read: io.weight(b, c.weightDtype, V, slabs && { ...slabs, slabElems: rows * cols }),
      bIdx: (j) => `(${es} * ${u32(rows)} + ${col0} + ${u32(j)}) * ${u32(KV)}`,
    };
  }
  const rowBytes = quantRowBytes(f, cols);
  const slabWords = quantWords(f, rows, cols);
  // Byte offset of row j of slab es (slabs are whole u32 words).
  const rowByte = (j: number) =>
    `${es} * ${u32(slabWords * 4)} + (${col0} + ${u32(j)}) * ${u32(rowBytes)}`;
  if (f === "q4_k") {
    // Whole super-blocks as vec4<u32> loads (see ops/quant/q4k_loop.ts): slabs
    // and rows start on 16 bytes (144-byte blocks, 36-word rows of blocks).
    io.helper(Q4K_HELPERS);
    const read = io.weight(b, "u32", 4, slabs && { ...slabs, slabElems: slabWords });
    return {
      read,
      bIdx: () => "0u",
      quant: {
        prefix: "",
        format: f,
        rowByte,
        rowVec4: (j) =>
          `${es} * ${u32(slabWords / 4)} + (${col0} + ${u32(j)}) * ${u32(rowBytes / 16)}`,
      },
    };
  }
  const codec = BLOCK_CODECS[f];
  // Bound whole only: through segment readers (a call with a branch a segment
  // at every word) LLVM took 110 s to compile a Q6_K decode GEMV.
  const mode = codec && chooseWordMode(codec.bytes, cols / codec.elems, rows, codec.maxUnit);
  if (gemv && mode && io.whole(b) && (rows * rowBytes) % 4 === 0) {
    // Slabs follow each other without padding, so row es·rows + j addresses any slab's rows.
    const words = io.vec(b, "u32", mode.vec4 ? 4 : 1);
    // Separately: two weights of different formats share one copy of BLOCK_HELPERS.
    io.helper(BLOCK_HELPERS);
    if (codec.helpers) io.helper(codec.helpers((t) => io.table(t)));
    return {
      read: (i) => `${words}[${i}]`,
      bIdx: () => "0u",
      quant: {
        prefix: "",
        format: f,
        rowByte,
        block: { words, row: (j) => `(${es} * ${u32(rows)} + ${col0} + ${u32(j)})`, rows },
      },
    };
  }
  const read = io.weight(b, "u32", 1, slabs && { ...slabs, slabElems: slabWords });
  const prefix = `moe_q${b}`;
  io.helper(quantReaders(f, read, prefix, (t) => io.table(t)));
  return {
    read,
    bIdx: () => "0u",
    quant: {
      prefix,
      format: f,
      rowByte,
    },
  };
}

/**
 * The quantized K loop: per group of the format (one affine map), `Σ a·q` and
 * `Σ a` in registers, then `acc += scale·Σ a·q − min·Σ a` (see `ops/quant`).
 * Declares the same scalar accumulators `acc_<m>_<r>_<j>` as {@linkcode kLoop}.
 */
function kLoopQuant(
  R: number,
  N: number,
  KV: number,
  aName: string,
  aIdx: (r: number) => string,
  mats: readonly KLoopMatrix[],
): string[] {
  const G4 = QUANT_GROUP[mats[0].quant!.format] / 4;
  if (mats.some((m) => m.quant?.format !== mats[0].quant!.format)) {
    throw new Error("internal: one quantized K loop reads one block format");
  }
  const L: string[] = [];
  const each = (f: (m: number, q: string, r: number, j: number) => void) => {
    for (const [m, mat] of mats.entries()) {
      for (const r of range(R)) for (const j of range(N)) f(m, mat.quant!.prefix, r, j);
    }
  };
  each((m, _q, r, j) => L.push(`  var acc_${m}_${r}_${j} = 0.0;`));
  for (const r of range(R)) L.push(`  let pa${r} = ${aIdx(r)};`);
  for (const [m, mat] of mats.entries()) {
    for (const j of range(N)) L.push(`  let qb${m}_${j} = ${mat.quant!.rowByte(j)};`);
  }
  L.push(`  for (var g = 0u; g < ${u32(KV / G4)}; g++) {`);
  for (const r of range(R)) L.push(`    var sa${r} = vec4<f32>(0.0);`);
  each((m, _q, r, j) => L.push(`    var qa_${m}_${r}_${j} = vec4<f32>(0.0);`));
  L.push(`    for (var i = 0u; i < ${u32(G4)}; i++) {`);
  L.push(`      let kk = g * ${u32(G4)} + i;`);
  for (const r of range(R)) {
    L.push(`      let a${r} = ${aName}[pa${r} + kk];`, `      sa${r} += a${r};`);
  }
  for (const [m, mat] of mats.entries()) {
    for (const j of range(N)) {
      L.push(`      let b${m}_${j} = ${mat.quant!.prefix}_qc(qb${m}_${j}, g, i);`);
      for (const r of range(R)) {
        L.push(`      qa_${m}_${r}_${j} = fma(a${r}, b${m}_${j}, qa_${m}_${r}_${j});`);
      }
    }
  }
  L.push("    }");
  for (const r of range(R)) L.push(`    let s${r} = dot(sa${r}, vec4<f32>(1.0));`);
  for (const [m, mat] of mats.entries()) {
    for (const j of range(N)) {
      L.push(`    let sm${m}_${j} = ${mat.quant!.prefix}_qg(qb${m}_${j}, g);`);
      for (const r of range(R)) {
        L.push(
          `    acc_${m}_${r}_${j} += sm${m}_${j}.x * dot(qa_${m}_${r}_${j}, vec4<f32>(1.0)) - sm${m}_${j}.y * s${r};`,
        );
      }
    }
  }
  L.push("  }");
  return L;
}

/**
 * Register-tiled K loop shared by every expert GEMM: `R` A rows (`aIdx(r)` is
 * the vec index of row r's start) times `N` output columns of each weight matrix
 * in `mats`. Declares accumulators `acc_<m>_<r>_<j>`.
 *
 * @example
 * ```ts
 * import { kLoop } from "./register_tile.ts";
 * import { resolveMoeConfig } from "./config.ts";
 * const c = resolveMoeConfig({ T: 4, d: 8, ff: 8, E: 2, k: 1, router: "switch" });
 * const lines = kLoop(c, 1, 2, 2, 4, "in0", () => "0u", [{ read: (i) => `in2[${i}]`, bIdx: (j) => `${j * 2}u` }]);
 * ```
 */
export function kLoop(
  c: ResolvedMoeConfig,
  R: number,
  N: number,
  KV: number,
  V: number,
  aName: string,
  aIdx: (r: number) => string,
  mats: readonly KLoopMatrix[],
): string[] {
  if (mats.some((m) => m.quant)) {
    if (V !== 4) {
      throw new Error("internal: quantized expert weights are read four columns at a time");
    }
    if (mats.every((m) => m.quant?.block)) {
      const L: string[] = [];
      for (const r of range(R)) L.push(`  let pa${r} = ${aIdx(r)};`);
      const { format, block } = mats[0].quant!;
      if (mats.some((m) => m.quant!.format !== format)) {
        throw new Error("internal: one block K loop reads one block format");
      }
      const loop = blockLoop(
        format,
        R,
        N,
        KV * 4,
        block!.rows,
        (r, i) => `${aName}[pa${r} + ${i}]`,
        mats.map((m) => m.quant!.block!),
        (r, m, j) => `acc_${m}_${r}_${j}`,
      );
      return L.concat(loop.lines);
    }
    if (mats.every((m) => m.quant?.rowVec4)) {
      const L: string[] = [];
      for (const r of range(R)) L.push(`  let pa${r} = ${aIdx(r)};`);
      const q4k = mats.map((m) => ({ read: m.read, row: m.quant!.rowVec4! }));
      return L.concat(q4kLoop(R, N, KV / 64, (r, i) => `${aName}[pa${r} + ${i}]`, q4k));
    }
    return kLoopQuant(R, N, KV, aName, aIdx, mats);
  }
  // Packed f16 (see `KLoopMatrix.packedHalf`): each vec4<u32> word holds eight
  // halves, matched with two vec4s of A.
  const packed = mats.some((m) => m.packedHalf);
  if (packed && (!mats.every((m) => m.packedHalf) || KV % 2 !== 0)) {
    throw new Error("internal: one K loop reads every matrix packed or none");
  }
  const L: string[] = [];
  // vec4 accumulators: one FMA per lane-element instead of dot's mul + horizontal add.
  const va = !packed && V === 4 && c.tile.vecAccum;
  for (const [m] of mats.entries()) {
    for (const r of range(R)) {
      for (const j of range(N)) {
        L.push(`  var ${va ? "v" : ""}acc_${m}_${r}_${j} = ${va ? "vec4<f32>(0.0)" : "0.0"};`);
      }
    }
  }
  for (const r of range(R)) L.push(`  let pa${r} = ${aIdx(r)};`);
  for (const [m, mat] of mats.entries()) {
    for (const j of range(N)) L.push(`  let pb${m}_${j} = ${mat.bIdx(j)};`);
  }
  if (packed) {
    L.push(`  for (var kw = 0u; kw < ${u32(KV / 2)}; kw++) {`);
    for (const r of range(R)) {
      L.push(`    let a${r}l = ${aName}[pa${r} + 2u * kw];`);
      L.push(`    let a${r}h = ${aName}[pa${r} + 2u * kw + 1u];`);
    }
    for (const [m, mat] of mats.entries()) {
      for (const j of range(N)) {
        L.push(`    let q${m}_${j} = ${mat.read(`pb${m}_${j} + kw`)};`);
        L.push(`    let bl${m}_${j} = ${unpackHalves(`q${m}_${j}`, 0)};`);
        L.push(`    let bh${m}_${j} = ${unpackHalves(`q${m}_${j}`, 1)};`);
        for (const r of range(R)) {
          L.push(
            `    acc_${m}_${r}_${j} += dot(a${r}l, bl${m}_${j}) + dot(a${r}h, bh${m}_${j});`,
          );
        }
      }
    }
    L.push("  }");
    return L;
  }
  L.push(`  for (var kk = 0u; kk < ${u32(KV)}; kk++) {`);
  for (const r of range(R)) L.push(`    let a${r} = ${aName}[pa${r} + kk];`);
  for (const [m, mat] of mats.entries()) {
    for (const j of range(N)) {
      L.push(`    let b${m}_${j} = ${wLoad(c, mat.read, `pb${m}_${j} + kk`, V)};`);
    }
    for (const r of range(R)) {
      for (const j of range(N)) {
        L.push(
          va
            ? `    vacc_${m}_${r}_${j} = fma(a${r}, b${m}_${j}, vacc_${m}_${r}_${j});`
            : V === 4
            ? `    acc_${m}_${r}_${j} += dot(a${r}, b${m}_${j});`
            : `    acc_${m}_${r}_${j} = fma(a${r}, b${m}_${j}, acc_${m}_${r}_${j});`,
        );
      }
    }
  }
  L.push("  }");
  if (va) {
    for (const [m] of mats.entries()) {
      for (const r of range(R)) {
        for (const j of range(N)) {
          L.push(`  let acc_${m}_${r}_${j} = dot(vacc_${m}_${r}_${j}, vec4<f32>(1.0));`);
        }
      }
    }
  }
  return L;
}

/** True when a row of `N` columns of a `width`-wide buffer is stored as vec4s. */
function vecRows(N: number, width: number): boolean {
  return N % 4 === 0 && width % 4 === 0;
}

/**
 * Stores `vals` as consecutive columns from `col0` of row `rowExpr` of buffer
 * `b` (`width` wide): vec4 stores when N and width are multiples of 4, one scalar
 * `out{j}_store` call per column when `viaStore` (a fused epilogue or a split
 * binding), scalar stores otherwise.
 *
 * @example
 * ```ts
 * import { MoeIo } from "./operands.ts";
 * import { storeRow } from "./register_tile.ts";
 * const io = new MoeIo({ h: { kind: "scratch", j: 7 } });
 * storeRow(io, "h", 8, "row0", "col0", ["a", "b", "c", "d"], false);
 * ```
 */
export function storeRow(
  io: MoeIo,
  b: MoeBuffer,
  width: number,
  rowExpr: string,
  col0: string,
  vals: readonly string[],
  viaStore: boolean,
): string[] {
  const N = vals.length;
  const L: string[] = [];
  if (viaStore) {
    for (const j of range(N)) {
      L.push(`    ${io.store(b, `(${rowExpr}) * ${u32(width)} + ${col0} + ${u32(j)}`, vals[j])};`);
    }
  } else if (vecRows(N, width)) {
    const out = io.vec(b, "f32", 4);
    for (let q = 0; q < N / 4; q++) {
      L.push(
        `    ${out}[(${rowExpr}) * ${u32(width / 4)} + ${col0} / 4u + ${u32(q)}] = vec4<f32>(${
          vals.slice(q * 4, q * 4 + 4).join(", ")
        });`,
      );
    }
  } else {
    const out = io.arr(b);
    for (const j of range(N)) {
      L.push(`    ${out}[(${rowExpr}) * ${u32(width)} + ${col0} + ${u32(j)}] = ${vals[j]};`);
    }
  }
  return L;
}

/**
 * WGSL expression of the weight slab of expert expression `e` (through the
 * slot table, if any).
 *
 * @example
 * ```ts ignore
 * slabOf(io, ctx, "e"); // "e", or "in5[e]" with a slot table
 * ```
 */
export function slabOf(io: MoeIo, ctx: MoeEmitContext, e: string): string {
  return ctx.slotTable === undefined ? e : `${io.arr("table")}[${e}]`;
}

/**
 * WGSL condition: slab expression `es` names no slot on this device (the
 * expert is skipped); undefined without a slot table.
 *
 * @example
 * ```ts ignore
 * absent(ctx, "es"); // "es >= 6u" with 6 slots
 * ```
 */
export function absent(ctx: MoeEmitContext, es: string): string | undefined {
  const S = ctx.slotTable;
  return S === undefined ? undefined : `${es} >= ${u32(S)}`;
}

/**
 * WGSL statement making a launch that covers only slabs `r` (a kernel split
 * because its weight segments need more bindings than the device has) skip
 * every other slab `es`; empty without a range.
 *
 * @example
 * ```ts
 * import { outsideSlabs } from "./register_tile.ts";
 * outsideSlabs({ from: 2, to: 5 }, "es"); // "  if (es < 2u || es >= 5u) { return; }"
 * ```
 */
export function outsideSlabs(r: SlabRange | undefined, es: string): string[] {
  if (r === undefined) return [];
  const lo = r.from > 0 ? `${es} < ${u32(r.from)} || ` : "";
  return [`  if (${lo}${es} >= ${u32(r.to)}) { return; }`];
}

/**
 * Label suffix of a launch over slabs `r` (empty without a range).
 *
 * @example
 * ```ts
 * import { slabSuffix } from "./register_tile.ts";
 * slabSuffix({ from: 2, to: 5 }); // "_slabs2-4"
 * ```
 */
export function slabSuffix(r: SlabRange | undefined): string {
  return r === undefined ? "" : `_slabs${r.from}-${r.to - 1}`;
}

/**
 * The expert weights' storage in kernel labels: `f32`, `f16` or the block format.
 *
 * @example
 * ```ts
 * import { weightName } from "./register_tile.ts";
 * import { resolveMoeConfig } from "./config.ts";
 * weightName(resolveMoeConfig({ T: 1, d: 32, ff: 32, E: 2, k: 1, router: "switch", weightFormat: "q8_0" })); // "q8_0"
 * ```
 */
export function weightName(c: ResolvedMoeConfig): string {
  return c.weightFormat ?? c.weightDtype;
}
