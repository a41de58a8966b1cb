/**
 * Portable WGSL kernels of attention's backward ops (`ops/attention_grad.ts`),
 * shaped like the forward's (`ops/attention.ts`) for CPU rasterisers first:
 *
 * - `attention_lse` and `attention_dq`: each invocation owns QB query rows of one
 *   KV head (rows packed (t, g), so the G query heads sharing a K/V row reuse each
 *   load) and streams the keys its rows can see, keeping per-row state in
 *   registers: a running (max, sum) for the log-sum-exp; for dQ the row's q, dO
 *   and f32 accumulator, with P = exp2(s − lse) rebuilt per key.
 * - `attention_dkv`: each invocation owns KB keys of one KV head (their k, v and
 *   the f32 dK, dV accumulators in registers) and streams the query rows that can
 *   see them — all G query heads of the group, in order, which is the GQA sum.
 *
 * Scores are computed pre-scaled by scale·log2(e) so exp2 gives the natural
 * exponentials; lse arrives in natural log and is converted once per row. Every
 * output element is written by one invocation: no atomics, no scratch, and the
 * order of every sum is fixed, so results are bit-for-bit repeatable.
 *
 * @module
 */

import { numel } from "../core/shape.ts";
import type { AttentionAttrs } from "./attention.ts";
import type { KernelContext, KernelEmission, KernelOperand } from "./types.ts";
import { f32, flatKernel, KernelIo, lit } from "./wgsl/mod.ts";

const LOG2E = 1.4426950408889634;
/** Mirrors `LSE_NONE` of attention_grad.ts (not imported: that file imports this one). */
const LSE_NONE = 1e30;

const range = (n: number) => Array.from({ length: n }, (_, i) => i);

/**
 * Vec4 registers of per-row (per-key) state an invocation may keep. At D = 64 this
 * gives dQ 4 rows and dK/dV 4 keys an invocation: on lavapipe (T = 1024, H = 8,
 * loaded host) the backward took about 2.7× the forward against 3.7× with 2 and
 * 2, for about twice the first-run compile time (the forward's note on QB = 8:
 * lavapipe unrolls every row and its compile time grows with them).
 */
const REGS = 256;

/** Rows (or keys) an invocation owns: as many as REGS allows, 1 to 4. */
function blocking(regsPerRow: number, D: number): number {
  return Math.max(1, Math.min(4, Math.floor(REGS / (regsPerRow * Math.ceil(D / 4)))));
}

/** Sizes and WGSL helpers shared by the three emitters. */
function setup(ctx: KernelContext<AttentionAttrs>) {
  const [q, k] = ctx.inputs;
  const [T, Hq, D] = q.shape;
  const [S, Hkv] = k.shape;
  const io = new KernelIo();
  const arrayTypes: Record<string, string> = {};
  const D4 = Math.ceil(D / 4);
  // Loads of four consecutive head elements of row r as one vec4<f32>: raw vec4
  // reads where the operand is bound whole and D is a multiple of 4, else four
  // guarded scalar loads (behind a fused prologue, odd head sizes).
  const loader = (j: number, operand: KernelOperand) => {
    if (D % 4 === 0 && operand.direct) {
      arrayTypes[`in${j}`] = `vec4<${operand.dtype}>`;
      return `fn ld${j}(r: u32, c: u32) -> vec4<f32> { return vec4<f32>(${
        io.in(j)
      }[r * ${D4}u + c]); }`;
    }
    const comps = range(4).map((e) =>
      `select(0.0, f32(${
        io.load(j, `min(r * ${D}u + c * 4u + ${e}u, ${numel(operand.shape) - 1}u)`)
      }), c * 4u + ${e}u < ${D}u)`
    );
    return `fn ld${j}(r: u32, c: u32) -> vec4<f32> { return vec4<f32>(${comps.join(", ")}); }`;
  };
  const W = ctx.attrs.window > 0 ? ctx.attrs.window : 0;
  /** WGSL: whether absolute query position `at` sees key `j` (besides j < valid). */
  const sees = (at: string, j: string) =>
    [ctx.attrs.causal ? `${j} <= ${at}` : "", W ? `${at} - ${j} < ${W}u` : ""]
      .filter(Boolean).join(" && ") || "true";
  const dot = (a: string, b: string) =>
    range(D4).map((i) => `dot(${a}_${i}, ${b}${i})`).join(" + ");
  const C = range(D4);
  /** Stores the D elements of vec4 registers `${reg}_c` (times `mul`) at row `row` of output o. */
  const storeRow = (o: number, row: string, reg: string, mul: string, ty: string) =>
    C.flatMap((i) =>
      range(4).filter((e) => i * 4 + e < D).map((e) =>
        `    ${io.store(o, `${row} * ${D}u + ${i * 4 + e}u`, `${ty}(${reg}_${i}[${e}]${mul})`)};`
      )
    ).join("\n");
  const qScale = f32(ctx.attrs.scale * LOG2E, "attention: scale");
  const causal = ctx.attrs.causal;
  // attention_lse takes (q, k, pos); the gradient ops (q, k, v, pos, dO, lse, delta).
  const posIn = ctx.inputs.length === 3 ? 2 : 3;
  return {
    posIn,
    T,
    Hq,
    D,
    S,
    Hkv,
    G: Hq / Hkv,
    D4,
    C,
    W,
    causal,
    io,
    arrayTypes,
    loader,
    sees,
    dot,
    storeRow,
    qScale,
  };
}

/** Without keys no row sees any: output 0 is filled with `value` (LSE_NONE, or zero gradients). */
function fill(
  label: string,
  n: number,
  value: string,
  ctx: KernelContext<AttentionAttrs>,
): KernelEmission {
  const io = new KernelIo();
  return { kernels: [flatKernel(label, n, ctx.caps, `  ${io.store(0, "i", value)};`, "", io)] };
}

/** Query rows per invocation and invocations per workgroup of the row-owning kernels. */
function rowShape(D: number, rowsPerKv: number, regsPerRow: number) {
  const QB = Math.max(1, Math.min(rowsPerKv, blocking(regsPerRow, D)));
  const lanes = Math.ceil(rowsPerKv / QB);
  const RL = Math.min(16, 2 ** Math.ceil(Math.log2(lanes)));
  return { QB, RL };
}

function checkGrid(
  op: string,
  x: number,
  y: number,
  wg: number,
  ctx: KernelContext<AttentionAttrs>,
) {
  if (
    x > ctx.caps.maxWorkgroupsPerDim || y > ctx.caps.maxWorkgroupsPerDim ||
    wg > ctx.caps.maxInvocations
  ) {
    throw new RangeError(`${op}: ${x}×${y} workgroups of ${wg} exceed the device's grid`);
  }
}

/**
 * The prologue of a row-owning kernel: QB rows `rr{r}` of KV head `kvh`, their
 * flat row `row{r}`, position `at{r}`, and the key range [j_beg, j_end) the
 * invocation's rows can see.
 */
function rowPrologue(s: ReturnType<typeof setup>, QB: number, RL: number, WG: number): string {
  const { T, Hq, G, S, W, io } = s;
  const rowsPerKv = T * G;
  const rows = range(QB).map((r) =>
    `  let rr${r} = rbase + ${r}u;
  let live${r} = rr${r} < ${rowsPerKv}u;
  let t${r} = min(rr${r} / ${G}u, ${T - 1}u);
  let row${r} = t${r} * ${Hq}u + kvh * ${G}u + rr${r} % ${G}u;
  let at${r} = p + t${r};`
  ).join("\n");
  return `@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let kvh = wid.y;
  let rbase = (wid.x * ${RL}u + lid) * ${QB}u;
  if (rbase >= ${rowsPerKv}u) { return; }
  let p = ${io.load(s.posIn, "0u")};
  let valid = min(${S}u, p + ${T}u);
${rows}
  // Rows are ordered by t: the first sees the earliest keys, the last the latest.
  let j_end = ${s.causal ? `min(valid, at${QB - 1} + 1u)` : "valid"};
  let j_beg = ${W ? `select(0u, at0 + 1u - ${W}u, at0 + 1u > ${W}u)` : "0u"};`;
}

/**
 * `attention_lse`: per query row, the log-sum-exp of its visible scores (natural log).
 *
 * @example
 * ```ts ignore
 * const { kernels } = emitAttentionLse(ctx); // one kernel, "attention_lse"
 * ```
 */
export function emitAttentionLse(ctx: KernelContext<AttentionAttrs>): KernelEmission {
  const s = setup(ctx);
  const { T, Hq, D, Hkv, G, C, io } = s;
  if (T * Hq === 0) return { kernels: [] };
  if (s.S === 0) return fill("attention_lse", T * Hq, f32(LSE_NONE), ctx);
  const { QB, RL } = rowShape(D, T * G, 1);
  const R = range(QB);
  const xGroups = Math.ceil((T * G) / (RL * QB));
  checkGrid("attention_lse", xGroups, Hkv, RL, ctx);
  const fns = [s.loader(0, ctx.inputs[0]), s.loader(1, ctx.inputs[1])];
  const code = `
${fns.join("\n")}
${rowPrologue(s, QB, RL, RL)}
${
    R.map((r) =>
      `${C.map((i) => `  let q${r}_${i} = ld0(row${r}, ${i}u) * ${s.qScale};`).join("\n")}
  var m${r} = -1.0e30;
  var l${r} = 0.0;`
    ).join("\n")
  }
  for (var j = j_beg; j < j_end; j++) {
    let kr = j * ${Hkv}u + kvh;
${C.map((i) => `    let k${i} = ld1(kr, ${i}u);`).join("\n")}
${
    R.map((r) =>
      `    let s${r} = ${s.dot(`q${r}`, "k")};
    if (${s.sees(`at${r}`, "j")}) {
      if (s${r} > m${r}) {
        l${r} = l${r} * exp2(m${r} - s${r});
        m${r} = s${r};
      }
      l${r} = l${r} + exp2(s${r} - m${r});
    }`
    ).join("\n")
  }
  }
${
    R.map((r) =>
      `  if (live${r}) {
    ${
        io.store(
          0,
          `row${r}`,
          `select(${f32(LSE_NONE)}, (m${r} + log2(l${r})) * ${f32(Math.LN2)}, l${r} > 0.0)`,
        )
      };
  }`
    ).join("\n")
  }
}`;
  return {
    kernels: [{
      label: "attention_lse",
      code,
      workgroups: [xGroups, Hkv, 1],
      arrayTypes: s.arrayTypes,
      uses: io.uses,
    }],
  };
}

/**
 * `attention_dq`: per query row, dQ = scale·Σ_j P·(dO·v_j − delta)·k_j.
 *
 * @example
 * ```ts ignore
 * const { kernels } = emitAttentionDq(ctx); // one kernel, "attention_dq"
 * ```
 */
export function emitAttentionDq(ctx: KernelContext<AttentionAttrs>): KernelEmission {
  const s = setup(ctx);
  const { T, Hq, D, Hkv, G, C, io } = s;
  if (T * Hq * D === 0) return { kernels: [] };
  if (s.S === 0) return fill("attention_dq", T * Hq * D, lit(0, ctx.outputs[0].dtype), ctx);
  const { QB, RL } = rowShape(D, T * G, 3);
  const R = range(QB);
  const xGroups = Math.ceil((T * G) / (RL * QB));
  checkGrid("attention_dq", xGroups, Hkv, RL, ctx);
  const ins = ctx.inputs;
  const fns = [s.loader(0, ins[0]), s.loader(1, ins[1]), s.loader(2, ins[2]), s.loader(4, ins[4])];
  const ty = ctx.outputs[0].dtype;
  const code = `
${fns.join("\n")}
${rowPrologue(s, QB, RL, RL)}
${
    R.map((r) =>
      `${C.map((i) => `  let q${r}_${i} = ld0(row${r}, ${i}u) * ${s.qScale};`).join("\n")}
${C.map((i) => `  let g${r}_${i} = ld4(row${r}, ${i}u);`).join("\n")}
${C.map((i) => `  var a${r}_${i} = vec4<f32>(0.0);`).join("\n")}
  let lse${r} = ${io.load(5, `row${r}`)} * ${f32(LOG2E)};
  let dl${r} = ${io.load(6, `row${r}`)};`
    ).join("\n")
  }
  for (var j = j_beg; j < j_end; j++) {
    let kr = j * ${Hkv}u + kvh;
${C.map((i) => `    let k${i} = ld1(kr, ${i}u);`).join("\n")}
${C.map((i) => `    let v${i} = ld2(kr, ${i}u);`).join("\n")}
${
    R.map((r) =>
      `    let p${r} = select(0.0, exp2(${s.dot(`q${r}`, "k")} - lse${r}), ${
        s.sees(`at${r}`, "j")
      });
    let ds${r} = vec4<f32>(p${r} * (${s.dot(`g${r}`, "v")} - dl${r}));
${C.map((i) => `    a${r}_${i} = fma(ds${r}, k${i}, a${r}_${i});`).join("\n")}`
    ).join("\n")
  }
  }
${
    R.map((r) =>
      `  if (live${r}) {
${s.storeRow(0, `row${r}`, `a${r}`, ` * ${f32(ctx.attrs.scale, "attention: scale")}`, ty)}
  }`
    ).join("\n")
  }
}`;
  return {
    kernels: [{
      label: "attention_dq",
      code,
      workgroups: [xGroups, Hkv, 1],
      arrayTypes: s.arrayTypes,
      uses: io.uses,
    }],
  };
}

/**
 * `attention_dkv`: per key, dV = Σ_rows P·dO and dK = scale·Σ_rows P·(dO·v − delta)·q
 * over the query rows of its KV head's group that see it.
 *
 * @example
 * ```ts ignore
 * const { kernels } = emitAttentionDkv(ctx); // one kernel writing dK and dV
 * ```
 */
export function emitAttentionDkv(ctx: KernelContext<AttentionAttrs>): KernelEmission {
  const s = setup(ctx);
  const { T, Hq, D, S, Hkv, G, C, W, io } = s;
  if (S * Hkv * D === 0) return { kernels: [] };
  const KB = Math.max(1, Math.min(S, blocking(4, D)));
  const lanes = Math.ceil(S / KB);
  const RL = Math.min(16, 2 ** Math.ceil(Math.log2(lanes)));
  const K = range(KB);
  const xGroups = Math.ceil(S / (RL * KB));
  checkGrid("attention_dkv", xGroups, Hkv, RL, ctx);
  const ins = ctx.inputs;
  const fns = [s.loader(0, ins[0]), s.loader(1, ins[1]), s.loader(2, ins[2]), s.loader(4, ins[4])];
  const ty = ctx.outputs[0].dtype;
  const causal = s.causal;
  const scale = f32(ctx.attrs.scale, "attention: scale");
  const code = `
${fns.join("\n")}
@compute @workgroup_size(${RL})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let kvh = wid.y;
  let jbase = (wid.x * ${RL}u + lid) * ${KB}u;
  if (jbase >= ${S}u) { return; }
  let p = ${io.load(s.posIn, "0u")};
  let valid = min(${S}u, p + ${T}u);
${
    K.map((r) =>
      `  let j${r} = min(jbase + ${r}u, ${S - 1}u);
  let live${r} = jbase + ${r}u < valid;
  let kr${r} = j${r} * ${Hkv}u + kvh;
${C.map((i) => `  let k${r}_${i} = ld1(kr${r}, ${i}u) * ${s.qScale};`).join("\n")}
${C.map((i) => `  let v${r}_${i} = ld2(kr${r}, ${i}u);`).join("\n")}
${C.map((i) => `  var dk${r}_${i} = vec4<f32>(0.0);`).join("\n")}
${C.map((i) => `  var dv${r}_${i} = vec4<f32>(0.0);`).join("\n")}`
    ).join("\n")
  }
  // The query rows that can see one of these keys: causal needs p + t ≥ j (from
  // the first key), a window p + t < j + W (from the last visible one).
  let j_last = min(jbase + ${KB - 1}u, max(valid, 1u) - 1u);
  let t_beg = ${causal ? "select(0u, jbase - p, jbase > p)" : "0u"};
  var t_end = select(0u, ${T}u, jbase < valid);
  ${W ? `t_end = min(t_end, select(0u, j_last + ${W}u - p, j_last + ${W}u > p));` : ""}
  for (var t = t_beg; t < t_end; t++) {
    let at = p + t;
    for (var g = 0u; g < ${G}u; g++) {
      let row = t * ${Hq}u + kvh * ${G}u + g;
${C.map((i) => `      let q${i} = ld0(row, ${i}u);`).join("\n")}
${C.map((i) => `      let g${i} = ld4(row, ${i}u);`).join("\n")}
      let lse = ${io.load(5, "row")} * ${f32(LOG2E)};
      let dl = ${io.load(6, "row")};
${
    K.map((r) =>
      `      let p${r} = select(0.0, exp2(${
        C.map((i) => `dot(q${i}, k${r}_${i})`).join(" + ")
      } - lse), live${r} && ${s.sees("at", `j${r}`)});
      let pv${r} = vec4<f32>(p${r});
      let ds${r} = vec4<f32>(p${r} * (${C.map((i) => `dot(g${i}, v${r}_${i})`).join(" + ")} - dl));
${C.map((i) => `      dv${r}_${i} = fma(pv${r}, g${i}, dv${r}_${i});`).join("\n")}
${C.map((i) => `      dk${r}_${i} = fma(ds${r}, q${i}, dk${r}_${i});`).join("\n")}`
    ).join("\n")
  }
    }
  }
${
    K.map((r) =>
      `  if (jbase + ${r}u < ${S}u) {
${s.storeRow(0, `kr${r}`, `dk${r}`, ` * ${scale}`, ty)}
${s.storeRow(1, `kr${r}`, `dv${r}`, "", ty)}
  }`
    ).join("\n")
  }
}`;
  return {
    kernels: [{
      label: "attention_dkv",
      code,
      workgroups: [xGroups, Hkv, 1],
      arrayTypes: s.arrayTypes,
      uses: io.uses,
    }],
  };
}
