/**
 * The kernels of the fused LM-head cross-entropy, forward and backward. None
 * of them holds a `[T, V]` buffer: logits exist a tile at a time, in registers
 * and (for the gradients) in a `R × block` workgroup array.
 *
 * - forward: a workgroup per `R` tokens streams the vocabulary in blocks with
 *   an online log-sum-exp per invocation (running max, sum rescaled when the
 *   max grows), merges its invocations' partial sums in a fixed order, and
 *   computes the target's logit as one more dot product.
 * - `dh`: the same tokens stream the vocabulary again, recomputing each logit
 *   tile and its coefficient `p·a − [v = target]·b` from the saved
 *   log-sum-exp into workgroup memory, then every invocation adds
 *   `coefficient · W_v` into its own slice of `d` for the workgroup's tokens.
 * - `dW`: a workgroup per `R` vocabulary rows streams the tokens the same way
 *   and adds `coefficient · h_t` into its rows' slices.
 *
 * Each output element is written by one invocation that sums in a fixed
 * order, so both gradients are deterministic without atomics.
 *
 * @module
 */

import { numel } from "../../core/shape.ts";
import type { KernelContext, KernelEmission, KernelSource } from "../types.ts";
import { flatKernel, grid, groupIndex, KernelIo } from "../wgsl/mod.ts";
import type { LmHeadXentAttrs } from "./attrs.ts";
import { countedExpr, logitTile, planTiles, range, rowLoader, type XentTiles } from "./tiles.ts";

/** Below every logit: the running max before any row was seen. */
const LOW = "-1.0e30";

interface Dims {
  /** Tokens. */
  N: number;
  /** Hidden size. */
  d: number;
  /** vec4 columns of the hidden size. */
  D4: number;
  /** Vocabulary rows. */
  V: number;
}

function dimsOf(ctx: KernelContext<LmHeadXentAttrs>): Dims {
  const [V, d] = ctx.inputs[1].shape;
  return { N: numel(ctx.inputs[2].shape), d, D4: Math.ceil(d / 4), V };
}

function checkStorage(ctx: KernelContext<LmHeadXentAttrs>, floats: number): void {
  if (floats * 4 > ctx.caps.maxWorkgroupStorage) {
    throw new RangeError(
      `lm_head_xent: a block of ${floats} coefficients exceeds the device's workgroup storage`,
    );
  }
}

function entry(NI: number, groups: [number, number, number], total: number): string {
  return `@compute @workgroup_size(${NI})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let wg = ${groupIndex(groups)};
  if (wg >= ${total}u) { return; }`;
}

/**
 * Emits the forward kernel: per token the log-sum-exp of its logits and the
 * loss `lse − logit[target]` (0 where the target is not counted).
 *
 * @example
 * ```ts ignore
 * emitXent(ctx).kernels[0].label; // "lm_head_xent"
 * ```
 */
export function emitXent(ctx: KernelContext<LmHeadXentAttrs>): KernelEmission {
  const { N, d, D4, V } = dimsOf(ctx);
  if (N === 0) return { kernels: [] };
  const t: XentTiles = planTiles(ctx.caps, ctx.attrs.block, D4, "forward", N, V);
  const { NI, RN, R, block } = t;
  const io = new KernelIo();
  const arrayTypes: Record<string, string> = {};
  const loaders = [
    rowLoader(io, arrayTypes, 0, ctx.inputs[0], N, d, "ldh"),
    rowLoader(io, arrayTypes, 1, ctx.inputs[1], V, d, "ldw"),
  ];
  checkStorage(ctx, 2 * R * NI);
  const total = Math.ceil(N / R);
  const groups = grid(total, ctx.caps.maxWorkgroupsPerDim);
  const I = range(R), J = range(RN);
  const update = I.map((i) => {
    const ok = (j: number) => `col${j} < ${V}u`;
    return `    var bm${i} = m${i};
${J.map((j) => `    bm${i} = max(bm${i}, select(${LOW}, l${i}_${j}, ${ok(j)}));`).join("\n")}
    s${i} = s${i} * exp(m${i} - bm${i})${
      J.map((j) => `\n      + select(0.0, exp(l${i}_${j} - bm${i}), ${ok(j)})`).join("")
    };
    m${i} = bm${i};`;
  }).join("\n");
  const tg = io.load(2, "t");
  const code = `var<workgroup> xm: array<f32, ${R * NI}>;
var<workgroup> xs: array<f32, ${R * NI}>;
${loaders.join("\n")}
${entry(NI, groups, total)}
  let t0 = wg * ${R}u;
${
    I.map((i) =>
      `  let r${i} = min(t0 + ${i}u, ${N - 1}u);\n  var m${i} = ${LOW};\n  var s${i} = 0.0;`
    ).join("\n")
  }
  for (var vb = 0u; vb < ${V}u; vb += ${block}u) {
${
    J.map((j) =>
      `    let col${j} = vb + ${j * NI}u + lid;\n    let c${j} = min(col${j}, ${V - 1}u);`
    ).join("\n")
  }
${logitTile(R, RN, D4, "ldh", (i) => `r${i}`, "ldw", (j) => `c${j}`, "    ")}
${update}
  }
${I.map((i) => `  xm[${i * NI}u + lid] = m${i};\n  xs[${i * NI}u + lid] = s${i};`).join("\n")}
  workgroupBarrier();
  // The invocations' partial sums merged in a fixed order: deterministic.
  for (var i = lid; i < ${R}u; i += ${NI}u) {
    let t = t0 + i;
    if (t < ${N}u) {
      var mx = ${LOW};
      for (var n = 0u; n < ${NI}u; n++) { mx = max(mx, xm[i * ${NI}u + n]); }
      var sm = 0.0;
      for (var n = 0u; n < ${NI}u; n++) { sm = sm + xs[i * ${NI}u + n] * exp(xm[i * ${NI}u + n] - mx); }
      let z = mx + log(sm);
      let tg = ${tg};
      var loss = 0.0;
      if ${countedExpr("tg", ctx.inputs[2].dtype, V)} {
        var zt = 0.0;
        for (var k = 0u; k < ${D4}u; k++) { zt = zt + dot(ldh(t, k), ldw(u32(tg), k)); }
        loss = z - zt;
      }
      ${io.store(0, "t", "loss")};
      ${io.store(1, "t", "z")};
    }
  }
}`;
  const kernel: KernelSource = {
    label: "lm_head_xent",
    code,
    workgroups: groups,
    arrayTypes,
    uses: io.uses,
  };
  return { kernels: [kernel] };
}

/** Per-token values the gradient kernels need: target, coefficients a and b, lse. */
function tokenTerms(
  io: KernelIo,
  tgDtype: string,
  V: number,
  n: string,
  row: string,
  live: string,
  ind: string,
): string {
  return [
    `let tg${n} = ${io.load(2, row)};`,
    `let ok${n} = ${live} && ${countedExpr(`tg${n}`, tgDtype, V)};`,
    `let ti${n} = u32(tg${n});`,
    `let b${n} = select(0.0, ${io.load(4, row)}, ok${n});`,
    `let a${n} = select(0.0, b${n} + ${io.load(5, row)}, ${live});`,
    `let z${n} = ${io.load(3, row)};`,
  ].map((l) => ind + l).join("\n");
}

/** `dh`: a workgroup per R tokens streaming the vocabulary. */
function emitDh(ctx: KernelContext<LmHeadXentAttrs>, dm: Dims, t: XentTiles): KernelSource {
  const { N, d, D4, V } = dm;
  const { NI, RN, R, block, DQ } = t;
  const io = new KernelIo();
  const arrayTypes: Record<string, string> = {};
  const loaders = [
    rowLoader(io, arrayTypes, 0, ctx.inputs[0], N, d, "ldh"),
    rowLoader(io, arrayTypes, 1, ctx.inputs[1], V, d, "ldw"),
  ];
  checkStorage(ctx, R * block);
  const total = Math.ceil(N / R);
  const groups = grid(total, ctx.caps.maxWorkgroupsPerDim);
  const I = range(R), J = range(RN), Q = range(DQ);
  const terms = I.map((i) =>
    `  let r${i} = min(t0 + ${i}u, ${N - 1}u);\n  let live${i} = t0 + ${i}u < ${N}u;\n` +
    tokenTerms(io, ctx.inputs[2].dtype, V, `${i}`, `r${i}`, `live${i}`, "  ")
  ).join("\n");
  const coef = I.map((i) =>
    J.map((j) =>
      `    cf[${i * block}u + ${
        j * NI
      }u + lid] = select(0.0, exp(l${i}_${j} - z${i}) * a${i} - select(0.0, b${i}, col${j} == ti${i}), col${j} < ${V}u);`
    ).join("\n")
  ).join("\n");
  const acc = Q.map((q) =>
    `      let w${q} = ldw(v, qc${q});\n` +
    I.map((i) => `      g${i}_${q} = fma(vec4<f32>(c${i}), w${q}, g${i}_${q});`).join("\n")
  ).join("\n");
  const stores = I.map((i) =>
    Q.map((q) =>
      `  if (live${i} && q${q} < ${D4}u) {\n` +
      range(4).map((e) =>
        `    if (q${q} * 4u + ${e}u < ${d}u) { ${
          io.store(0, `r${i} * ${d}u + q${q} * 4u + ${e}u`, `g${i}_${q}[${e}]`)
        }; }`
      ).join("\n") + "\n  }"
    ).join("\n")
  ).join("\n");
  const code = `var<workgroup> cf: array<f32, ${R * block}>;
${loaders.join("\n")}
${entry(NI, groups, total)}
  let t0 = wg * ${R}u;
${terms}
${
    Q.map((q) => `  let q${q} = lid + ${q * NI}u;\n  let qc${q} = min(q${q}, ${D4 - 1}u);`).join(
      "\n",
    )
  }
${I.map((i) => Q.map((q) => `  var g${i}_${q} = vec4<f32>(0.0);`).join("\n")).join("\n")}
  for (var vb = 0u; vb < ${V}u; vb += ${block}u) {
${
    J.map((j) =>
      `    let col${j} = vb + ${j * NI}u + lid;\n    let c${j} = min(col${j}, ${V - 1}u);`
    ).join("\n")
  }
${logitTile(R, RN, D4, "ldh", (i) => `r${i}`, "ldw", (j) => `c${j}`, "    ")}
${coef}
    workgroupBarrier();
    let vn = min(${block}u, ${V}u - vb);
    for (var vv = 0u; vv < vn; vv++) {
      let v = vb + vv;
${I.map((i) => `      let c${i} = cf[${i * block}u + vv];`).join("\n")}
${acc}
    }
    workgroupBarrier();
  }
${stores}
}`;
  return { label: "dh", code, workgroups: groups, arrayTypes, uses: io.uses };
}

/** `dW`: a workgroup per R vocabulary rows streaming the tokens. */
function emitDw(ctx: KernelContext<LmHeadXentAttrs>, dm: Dims, t: XentTiles): KernelSource {
  const { N, d, D4, V } = dm;
  const { NI, RN, R, block, DQ } = t;
  const io = new KernelIo();
  const arrayTypes: Record<string, string> = {};
  const loaders = [
    rowLoader(io, arrayTypes, 0, ctx.inputs[0], N, d, "ldh"),
    rowLoader(io, arrayTypes, 1, ctx.inputs[1], V, d, "ldw"),
  ];
  checkStorage(ctx, R * block);
  const total = Math.ceil(V / R);
  const groups = grid(total, ctx.caps.maxWorkgroupsPerDim);
  const I = range(R), J = range(RN), Q = range(DQ);
  const tokens = J.map((j) =>
    `    let tt${j} = tb + ${j * NI}u + lid;\n    let tc${j} = min(tt${j}, ${N - 1}u);\n` +
    tokenTerms(io, ctx.inputs[2].dtype, V, `${j}`, `tc${j}`, `tt${j} < ${N}u`, "    ")
  ).join("\n");
  const coef = I.map((i) =>
    J.map((j) =>
      `    cf[${i * block}u + ${
        j * NI
      }u + lid] = exp(l${i}_${j} - z${j}) * a${j} - select(0.0, b${j}, vr${i} == ti${j});`
    ).join("\n")
  ).join("\n");
  const acc = Q.map((q) =>
    `      let x${q} = ldh(tk, qc${q});\n` +
    I.map((i) => `      g${i}_${q} = fma(vec4<f32>(c${i}), x${q}, g${i}_${q});`).join("\n")
  ).join("\n");
  const stores = I.map((i) =>
    Q.map((q) =>
      `  if (vlive${i} && q${q} < ${D4}u) {\n` +
      range(4).map((e) =>
        `    if (q${q} * 4u + ${e}u < ${d}u) { ${
          io.store(1, `vr${i} * ${d}u + q${q} * 4u + ${e}u`, `g${i}_${q}[${e}]`)
        }; }`
      ).join("\n") + "\n  }"
    ).join("\n")
  ).join("\n");
  const code = `var<workgroup> cf: array<f32, ${R * block}>;
${loaders.join("\n")}
${entry(NI, groups, total)}
  let v0 = wg * ${R}u;
${
    I.map((i) =>
      `  let vr${i} = min(v0 + ${i}u, ${V - 1}u);\n  let vlive${i} = v0 + ${i}u < ${V}u;`
    ).join("\n")
  }
${
    Q.map((q) => `  let q${q} = lid + ${q * NI}u;\n  let qc${q} = min(q${q}, ${D4 - 1}u);`).join(
      "\n",
    )
  }
${I.map((i) => Q.map((q) => `  var g${i}_${q} = vec4<f32>(0.0);`).join("\n")).join("\n")}
  for (var tb = 0u; tb < ${N}u; tb += ${block}u) {
${tokens}
${logitTile(R, RN, D4, "ldw", (i) => `vr${i}`, "ldh", (j) => `tc${j}`, "    ")}
${coef}
    workgroupBarrier();
    let tn = min(${block}u, ${N}u - tb);
    for (var tv = 0u; tv < tn; tv++) {
      let tk = tb + tv;
${I.map((i) => `      let c${i} = cf[${i * block}u + tv];`).join("\n")}
${acc}
    }
    workgroupBarrier();
  }
${stores}
}`;
  return { label: "dw", code, workgroups: groups, arrayTypes, uses: io.uses };
}

/**
 * Emits the gradient kernels: `dh` (skipped when nothing reads it) and `dW`
 * (likewise). With no tokens, `dW` is zeros.
 *
 * @example
 * ```ts ignore
 * emitXentGrad(ctx).kernels.map((k) => k.label); // ["dh", "dw"]
 * ```
 */
export function emitXentGrad(ctx: KernelContext<LmHeadXentAttrs>): KernelEmission {
  const dm = dimsOf(ctx);
  const [dh, dW] = ctx.outputs;
  if (dm.N === 0) {
    if (dW.used === false) return { kernels: [] };
    const io = new KernelIo();
    const body = `  ${io.store(1, "i", "0.0")};`;
    return { kernels: [flatKernel("dw", dm.V * dm.d, ctx.caps, body, "", io)] };
  }
  const { N, V } = dm;
  const tiles = (k: "dh" | "dw") =>
    planTiles(ctx.caps, ctx.attrs.block, dm.D4, k, k === "dh" ? N : V, k === "dh" ? V : N);
  const kernels: KernelSource[] = [];
  if (dh.used !== false) kernels.push(emitDh(ctx, dm, tiles("dh")));
  if (dW.used !== false) kernels.push(emitDw(ctx, dm, tiles("dw")));
  return { kernels };
}
