/**
 * The grouped GEMMs of `moe_grad`, register-tiled like the forward's
 * portable expert GEMMs (fat invocations, several rows × several columns of
 * accumulators, vec4 loads along whichever axis is contiguous, no barriers):
 * lavapipe runs WGSL on the CPU, where this beats workgroup-memory tiling.
 *
 * Row tiles are the sort's (`tile.rows` rows of one expert); weight
 * gradients walk their expert's kept rows in row order (token order), so
 * every sum has one fixed order.
 *
 * @module
 */

import type { DeviceCaps, KernelSource } from "../types.ts";
import { f32, u32 } from "../wgsl/mod.ts";
import { moeGated, type ResolvedMoeConfig } from "./config.ts";
import { moeGateHelper } from "./activation.ts";
import { flat, GradIo, segStart } from "./grad_kernels.ts";

const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);
const lanes = (n: number): number => (n % 4 === 0 ? 4 : 1);
const vt = (v: number): string => (v === 4 ? "vec4<f32>" : "f32");
const comp = (x: string, u: number, v: number): string => (v === 4 ? `${x}[${u}]` : x);
const dotOf = (a: string, b: string, v: number): string =>
  v === 4 ? `dot(${a}, ${b})` : `${a} * ${b}`;
/** Label suffix of the activation and biases (none for bias-free SwiGLU, whose labels stay). */
const variant = (c: ResolvedMoeConfig): string =>
  (({ swiglu: "", swiglu_oai: "_oai" } as Record<string, string>)[c.activation] ??
    `_${c.activation}`) + (c.expertBias ? "_bias" : "");

/**
 * Per row tile and `Vf` hidden columns: `dh = dy·W2ₑ`, the hidden
 * activation's gradient before the routing weight, written to `hp` (which
 * {@linkcode emitGradHidden} then reads and overwrites in place).
 *
 * @example
 * ```ts ignore
 * emitGradDh(c, caps).role; // "grad_dh"
 * ```
 */
export function emitGradDh(c: ResolvedMoeConfig, caps: DeviceCaps): KernelSource {
  const g = new GradIo();
  const { d, ff } = c;
  const R = c.tile.rows, Vd = lanes(d), Vf = lanes(ff);
  const [KD, NF] = [d / Vd, ff / Vf];
  const w2 = g.in("w2", Vf), dys = g.s("dys", Vd), hp = g.s("hp", Vf);
  const L: string[] = [];
  L.push(`  let tile = i / ${u32(NF)};`);
  L.push(`  let nv = i % ${u32(NF)};`);
  L.push(`  let e = ${g.s("tile_expert")}[tile];`);
  L.push("  if (e == NONE) { return; }");
  L.push(`  let row0 = tile * ${u32(R)};`);
  for (const r of range(R)) L.push(`  var dh${r} = ${vt(Vf)}(0.0);`);
  L.push(`  for (var kv = 0u; kv < ${u32(KD)}; kv++) {`);
  for (const u of range(Vd)) {
    L.push(
      `    let w2_${u} = ${w2}[(e * ${u32(d)} + kv * ${u32(Vd)} + ${u32(u)}) * ${u32(NF)} + nv];`,
    );
  }
  for (const r of range(R)) {
    L.push(`    let dv${r} = ${dys}[(row0 + ${u32(r)}) * ${u32(KD)} + kv];`);
    for (const u of range(Vd)) L.push(`    dh${r} += ${comp(`dv${r}`, u, Vd)} * w2_${u};`);
  }
  L.push("  }");
  for (const r of range(R)) L.push(`  ${hp}[(row0 + ${u32(r)}) * ${u32(NF)} + nv] = dh${r};`);
  const label = `moe_grad_dh_${R}x${Vf}_${ff}x${d}`;
  return flat(label, "grad_dh", c.tilesMax * NF, caps, L.join("\n"), "", g);
}

/**
 * The activation's forward and backward at one hidden element: from the
 * pre-activations `a`, `b` (WGSL names) and `o`, `w` in scope, reads
 * `dh = hp[o]` and writes `h = act(a, b)`, `hp = h·dh`, `ga = w·dh·∂act/∂a`
 * and `gb = w·dh·∂act/∂b`. SwiGLU's lines are the ones this kernel always had
 * (bias-free layers keep their bits); GEGLU and ReGLU call the shader's
 * `moe_gate` and `moe_gate_d` ({@linkcode moeGateHelper}); `swiglu_oai`'s
 * clamps pass the gradient inside their range, boundary included (PyTorch's
 * `clamp`), and 0 outside.
 */
function actBackward(
  c: ResolvedMoeConfig,
  a: string,
  b: string,
  h: string,
  hp: string,
  ga: string,
  gb: string,
): string {
  if (c.activation === "swiglu") {
    return `      let s = 1.0 / (1.0 + exp(-${a}));
      let silu = ${a} * s;
      let dh = ${hp}[o];
      let wdh = w * dh;
      ${h}[o] = silu * ${b};
      ${hp}[o] = silu * ${b} * dh;
      ${ga}[o] = wdh * ${b} * s * (1.0 + ${a} * (1.0 - s));
      ${gb}[o] = wdh * silu;`;
  }
  if (c.activation !== "swiglu_oai") {
    // Ungated (relu2): h = gate(a) alone, no W3 product, so gb (and with it dW3) is 0.
    const gated = moeGated(c.activation);
    const up = gated ? ` * ${b}` : "";
    return `      let gv = moe_gate(${a});
      let dh = ${hp}[o];
      let wdh = w * dh;
      ${h}[o] = gv${up};
      ${hp}[o] = gv${up} * dh;
      ${ga}[o] = wdh${up} * moe_gate_d(${a});
      ${gb}[o] = ${gated ? "wdh * gv" : "0.0"};`;
  }
  const L = f32(c.limit, "moe limit"), low = f32(-c.limit, "moe limit");
  const alpha = f32(c.alpha, "moe alpha");
  // σ(alpha·g) as 1 / (1 + exp(−alpha·g)): exp overflows to +∞ only where
  // alpha·g ≪ 0, where σ, g·σ and the derivative are the correct 0.
  return `      let gc = min(${a}, ${L});
      let u1 = clamp(${b}, ${low}, ${L}) + 1.0;
      let s = 1.0 / (1.0 + exp(-${alpha} * gc));
      let glu = gc * s;
      let hv = u1 * glu;
      let dh = ${hp}[o];
      let wdh = w * dh;
      ${h}[o] = hv;
      ${hp}[o] = hv * dh;
      ${ga}[o] = select(0.0, wdh * u1 * (s + ${alpha} * glu * (1.0 - s)), ${a} <= ${L});
      ${gb}[o] = select(0.0, wdh * glu, ${b} >= ${low} && ${b} <= ${L});`;
}

/**
 * Per row tile and `Vf` hidden columns: recomputes `a = x·W1ₑᵀ (+ b1ₑ)` and
 * `b = x·W3ₑᵀ (+ b3ₑ)`, reads `dh` from `hp` ({@linkcode emitGradDh}), then
 * writes `h = act(a, b)`, `hp = h·dh` (summed per row into the routing
 * weight's gradient), `ga = w·dh·∂act/∂a` and `gb = w·dh·∂act/∂b`.
 *
 * @example
 * ```ts ignore
 * emitGradHidden(c, caps).role; // "grad_hidden"
 * ```
 */
export function emitGradHidden(c: ResolvedMoeConfig, caps: DeviceCaps): KernelSource {
  const g = new GradIo();
  const { d, ff } = c;
  const R = c.tile.rows, Vd = lanes(d), Vf = lanes(ff);
  const [KD, NF] = [d / Vd, ff / Vf];
  const gated = moeGated(c.activation);
  const x = g.in("x", Vd), w1 = g.in("w1", Vd), w3 = gated ? g.in("w3", Vd) : "";
  const L: string[] = [];
  L.push(`  let tile = i / ${u32(NF)};`);
  L.push(`  let nv = i % ${u32(NF)};`);
  L.push(`  let e = ${g.s("tile_expert")}[tile];`);
  L.push("  if (e == NONE) { return; }");
  L.push(`  let row0 = tile * ${u32(R)};`);
  for (const r of range(R)) {
    L.push(`  let tok${r} = ${g.s("sorted_token")}[row0 + ${u32(r)}];`);
    L.push(`  let ar${r} = select(tok${r}, 0u, tok${r} == NONE);`);
    for (const q of range(Vf)) L.push(`  var a${r}_${q} = 0.0;\n  var b${r}_${q} = 0.0;`);
  }
  L.push(`  for (var kv = 0u; kv < ${u32(KD)}; kv++) {`);
  for (const q of range(Vf)) {
    L.push(`    let wi${q} = (e * ${u32(ff)} + nv * ${u32(Vf)} + ${u32(q)}) * ${u32(KD)} + kv;`);
    L.push(`    let w1_${q} = ${w1}[wi${q}];`);
    if (gated) L.push(`    let w3_${q} = ${w3}[wi${q}];`);
  }
  for (const r of range(R)) {
    L.push(`    let xv${r} = ${x}[ar${r} * ${u32(KD)} + kv];`);
    for (const q of range(Vf)) {
      L.push(`    a${r}_${q} += ${dotOf(`xv${r}`, `w1_${q}`, Vd)};`);
      if (gated) L.push(`    b${r}_${q} += ${dotOf(`xv${r}`, `w3_${q}`, Vd)};`);
    }
  }
  L.push("  }");
  const [h, hp, ga, gb] = (["h", "hp", "ga", "gb"] as const).map((b) => g.s(b));
  if (c.expertBias) {
    // Expert e's gate and up biases of this invocation's columns, read once for every row.
    for (const q of range(Vf)) {
      const col = `e * ${u32(ff)} + nv * ${u32(Vf)} + ${u32(q)}`;
      L.push(`  let eb1_${q} = ${g.in("b1")}[${col}];\n  let eb3_${q} = ${g.in("b3")}[${col}];`);
    }
  }
  for (const r of range(R)) {
    L.push(`  if (tok${r} != NONE) {`);
    L.push(`    let w = ${g.s("sorted_w")}[row0 + ${u32(r)}];`);
    for (const q of range(Vf)) {
      const acc = [`a${r}_${q}`, `b${r}_${q}`];
      const [a, b] = c.expertBias ? ["av", "bv"] : acc;
      const pre = c.expertBias
        ? `\n      let av = ${acc[0]} + eb1_${q};\n      let bv = ${acc[1]} + eb3_${q};`
        : "";
      const o = `(row0 + ${u32(r)}) * ${u32(ff)} + nv * ${u32(Vf)} + ${u32(q)}`;
      L.push(`    {\n      let o = ${o};${pre}\n${actBackward(c, a, b, h, hp, ga, gb)}\n    }`);
    }
    L.push("  }");
  }
  const label = `moe_grad_hidden_${R}x${Vf}_${ff}x${d}${variant(c)}`;
  const helpers = c.activation === "swiglu" || c.activation === "swiglu_oai"
    ? ""
    : moeGateHelper(c.activation);
  return flat(label, "grad_hidden", c.tilesMax * NF, caps, L.join("\n"), helpers, g);
}

/**
 * `dW2ₑ[c, n] = Σ_rows w·dy[tok, c]·h[row, n]` over expert e's kept rows, a
 * tile of rows of c by `Vf` columns per invocation; with expert biases also
 * `db2ₑ[c] = Σ_rows w·dy[tok, c]`, stored by the invocations of the first
 * columns (every invocation sums it alongside: cheaper than a branch per row).
 *
 * @example
 * ```ts ignore
 * emitGradW2(c, caps).role; // "grad_w2"
 * ```
 */
export function emitGradW2(c: ResolvedMoeConfig, caps: DeviceCaps): KernelSource {
  const g = new GradIo();
  const { d, ff, E } = c;
  const Vd = lanes(d), Vf = lanes(ff);
  const [KD, NF] = [d / Vd, ff / Vf];
  const M = NF % 2 === 0 ? 2 : 1; // vectors of n per invocation
  const h = g.s("h", Vf), dys = g.s("dys", Vd);
  const L: string[] = [];
  L.push(`  let e = i / ${u32(KD * (NF / M))};`);
  L.push(`  let cv = (i / ${u32(NF / M)}) % ${u32(KD)};`);
  L.push(`  let nv = (i % ${u32(NF / M)}) * ${u32(M)};`);
  L.push("  let st = seg_start(e);");
  L.push(`  let cnt = min(${g.s("counts")}[e], ${u32(c.capacity)});`);
  for (const j of range(Vd)) {
    for (const m of range(M)) L.push(`  var acc${j}_${m} = ${vt(Vf)}(0.0);`);
  }
  if (c.expertBias) L.push(`  var bacc = ${vt(Vd)}(0.0);`);
  L.push("  for (var q = 0u; q < cnt; q++) {");
  L.push("    let r = st + q;");
  L.push(`    let dv = ${g.s("sorted_w")}[r] * ${dys}[r * ${u32(KD)} + cv];`);
  if (c.expertBias) L.push("    bacc += dv;");
  for (const m of range(M)) L.push(`    let hv${m} = ${h}[r * ${u32(NF)} + nv + ${u32(m)}];`);
  for (const j of range(Vd)) {
    for (const m of range(M)) L.push(`    acc${j}_${m} += ${comp("dv", j, Vd)} * hv${m};`);
  }
  L.push("  }");
  for (const j of range(Vd)) {
    for (const m of range(M)) {
      for (const u of range(Vf)) {
        const at = `(e * ${u32(d)} + cv * ${u32(Vd)} + ${u32(j)}) * ${u32(ff)} + (nv + ${
          u32(m)
        }) * ${u32(Vf)} + ${u32(u)}`;
        L.push(`  ${g.store("dw2", at, comp(`acc${j}_${m}`, u, Vf))};`);
      }
    }
  }
  if (c.expertBias) {
    L.push("  if (nv == 0u) {");
    for (const j of range(Vd)) {
      const at = `e * ${u32(d)} + cv * ${u32(Vd)} + ${u32(j)}`;
      L.push(`    ${g.store("db2", at, comp("bacc", j, Vd))};`);
    }
    L.push("  }");
  }
  const label = `moe_grad_w2_${Vd}x${M * Vf}_e${E}${c.expertBias ? "_bias" : ""}`;
  return flat(label, "grad_w2", E * KD * (NF / M), caps, L.join("\n"), segStart(c, g), g);
}

/**
 * `dW1ₑ[n, c] = Σ_rows ga[row, n]·x[tok, c]` and `dW3ₑ` likewise with `gb`
 * (sharing the x loads), a tile of n by `Vd` columns per invocation; with
 * expert biases also `db1ₑ[n] = Σ_rows ga[row, n]` and `db3ₑ` with `gb`,
 * stored by the invocations of the first columns.
 *
 * @example
 * ```ts ignore
 * emitGradW13(c, caps).role; // "grad_w13"
 * ```
 */
export function emitGradW13(c: ResolvedMoeConfig, caps: DeviceCaps): KernelSource {
  const g = new GradIo();
  const { d, ff, E } = c;
  const Vd = lanes(d), Vf = lanes(ff);
  const [KD, NF] = [d / Vd, ff / Vf];
  const M = KD % 2 === 0 ? 2 : 1; // vectors of c per invocation
  const x = g.in("x", Vd), ga = g.s("ga", Vf), gb = g.s("gb", Vf);
  const L: string[] = [];
  L.push(`  let e = i / ${u32(NF * (KD / M))};`);
  L.push(`  let nv = (i / ${u32(KD / M)}) % ${u32(NF)};`);
  L.push(`  let cv = (i % ${u32(KD / M)}) * ${u32(M)};`);
  L.push("  let st = seg_start(e);");
  L.push(`  let cnt = min(${g.s("counts")}[e], ${u32(c.capacity)});`);
  for (const j of range(Vf)) {
    for (const m of range(M)) {
      L.push(`  var p${j}_${m} = ${vt(Vd)}(0.0);\n  var q${j}_${m} = ${vt(Vd)}(0.0);`);
    }
  }
  if (c.expertBias) L.push(`  var pb = ${vt(Vf)}(0.0);\n  var qb = ${vt(Vf)}(0.0);`);
  L.push("  for (var s = 0u; s < cnt; s++) {");
  L.push("    let r = st + s;");
  L.push(`    let xb = ${g.s("sorted_token")}[r] * ${u32(KD)} + cv;`);
  for (const m of range(M)) L.push(`    let xv${m} = ${x}[xb + ${u32(m)}];`);
  L.push(`    let gav = ${ga}[r * ${u32(NF)} + nv];`);
  L.push(`    let gbv = ${gb}[r * ${u32(NF)} + nv];`);
  if (c.expertBias) L.push("    pb += gav;\n    qb += gbv;");
  for (const j of range(Vf)) {
    for (const m of range(M)) {
      L.push(`    p${j}_${m} += ${comp("gav", j, Vf)} * xv${m};`);
      L.push(`    q${j}_${m} += ${comp("gbv", j, Vf)} * xv${m};`);
    }
  }
  L.push("  }");
  for (const j of range(Vf)) {
    for (const m of range(M)) {
      for (const u of range(Vd)) {
        const at = `(e * ${u32(ff)} + nv * ${u32(Vf)} + ${u32(j)}) * ${u32(d)} + (cv + ${
          u32(m)
        }) * ${u32(Vd)} + ${u32(u)}`;
        L.push(`  ${g.store("dw1", at, comp(`p${j}_${m}`, u, Vd))};`);
        L.push(`  ${g.store("dw3", at, comp(`q${j}_${m}`, u, Vd))};`);
      }
    }
  }
  if (c.expertBias) {
    L.push("  if (cv == 0u) {");
    for (const j of range(Vf)) {
      const at = `e * ${u32(ff)} + nv * ${u32(Vf)} + ${u32(j)}`;
      L.push(`    ${g.store("db1", at, comp("pb", j, Vf))};`);
      L.push(`    ${g.store("db3", at, comp("qb", j, Vf))};`);
    }
    L.push("  }");
  }
  const label = `moe_grad_w13_${Vf}x${M * Vd}_e${E}${c.expertBias ? "_bias" : ""}`;
  return flat(label, "grad_w13", E * NF * (KD / M), caps, L.join("\n"), segStart(c, g), g);
}

/**
 * Per row tile and `Vd` columns of x:
 * `dxs[row, c] = Σ_n ga[row, n]·W1ₑ[n, c] + gb[row, n]·W3ₑ[n, c]`.
 *
 * @example
 * ```ts ignore
 * emitGradRowsX(c, caps).role; // "grad_rows_x"
 * ```
 */
export function emitGradRowsX(c: ResolvedMoeConfig, caps: DeviceCaps): KernelSource {
  const g = new GradIo();
  const { d, ff } = c;
  const R = c.tile.rows, Vd = lanes(d), Vf = lanes(ff);
  const KD = d / Vd;
  const M = KD % 2 === 0 ? 2 : 1; // vectors of c per invocation
  const w1 = g.in("w1", Vd), w3 = g.in("w3", Vd);
  const ga = g.s("ga", Vf), gb = g.s("gb", Vf), dxs = g.s("dxs");
  const L: string[] = [];
  L.push(`  let tile = i / ${u32(KD / M)};`);
  L.push(`  let cv = (i % ${u32(KD / M)}) * ${u32(M)};`);
  L.push(`  let e = ${g.s("tile_expert")}[tile];`);
  L.push("  if (e == NONE) { return; }");
  L.push(`  let row0 = tile * ${u32(R)};`);
  for (const r of range(R)) {
    for (const m of range(M)) L.push(`  var acc${r}_${m} = ${vt(Vd)}(0.0);`);
  }
  // Vf hidden columns a step: ga / gb rows read as vectors.
  L.push(`  for (var nv = 0u; nv < ${u32(ff / Vf)}; nv++) {`);
  for (const u of range(Vf)) {
    L.push(`    let wi${u} = (e * ${u32(ff)} + nv * ${u32(Vf)} + ${u32(u)}) * ${u32(KD)} + cv;`);
    for (const m of range(M)) {
      L.push(`    let w1_${u}_${m} = ${w1}[wi${u} + ${u32(m)}];`);
      L.push(`    let w3_${u}_${m} = ${w3}[wi${u} + ${u32(m)}];`);
    }
  }
  for (const r of range(R)) {
    L.push(`    let gi${r} = (row0 + ${u32(r)}) * ${u32(ff / Vf)} + nv;`);
    L.push(`    let ga${r} = ${ga}[gi${r}];\n    let gb${r} = ${gb}[gi${r}];`);
    for (const u of range(Vf)) {
      for (const m of range(M)) {
        L.push(
          `    acc${r}_${m} += ${comp(`ga${r}`, u, Vf)} * w1_${u}_${m} + ${
            comp(`gb${r}`, u, Vf)
          } * w3_${u}_${m};`,
        );
      }
    }
  }
  L.push("  }");
  for (const r of range(R)) {
    L.push(`  if (${g.s("sorted_token")}[row0 + ${u32(r)}] != NONE) {`);
    for (const m of range(M)) {
      for (const u of range(Vd)) {
        L.push(
          `    ${dxs}[(row0 + ${u32(r)}) * ${u32(d)} + (cv + ${u32(m)}) * ${u32(Vd)} + ${
            u32(u)
          }] = ${comp(`acc${r}_${m}`, u, Vd)};`,
        );
      }
    }
    L.push("  }");
  }
  const label = `moe_grad_rows_x_${R}x${M * Vd}_${d}`;
  return flat(label, "grad_rows_x", c.tilesMax * (KD / M), caps, L.join("\n"), "", g);
}
