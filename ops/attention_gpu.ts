/**
 * GPU-shaped attention kernels, the `gpu` target's entry for `attention` (see
 * `ops/targets.ts`; the op, its shape rule and reference are `ops/attention.ts`,
 * whose portable kernels stay the `cpu_raster` ones).
 *
 * Both paths are one kernel template: a workgroup of WG = 128 invocations owns
 * BR query rows of one KV head — rows packed (t, g) so the G query heads that
 * share a K/V head reuse every K/V element it reads (GQA) — and walks its key
 * range in tiles of BC keys with an online softmax (running max and sum per row,
 * f32 accumulators in registers). Each tile runs three phases with a different
 * thread mapping, separated by barriers:
 *
 * 1. scores: invocation (key jj = lid % BC, row slice lid / BC) computes the full
 *    D-long dot products of one key with its rows (q read through the cache, the
 *    key from workgroup memory or global) and writes them, masked, into `ps`;
 * 2. row statistics: TPR = WG / BR invocations per row each fold a few scores into
 *    a local (max, sum), merged across the row by subgroup shuffles when the
 *    `subgroups` feature is on, else by a workgroup-memory tree; the row's new max
 *    rescales its sum, `ps` is overwritten with the probabilities and `rowf`
 *    holds the factor that rescales the accumulators;
 * 3. accumulate: invocation owns (row, vec4 of D) pairs — consecutive invocations
 *    on consecutive vec4s, so V reads are coalesced — and, when the pairs are
 *    fewer than the invocations, one of KQ key subsets (summed once at the end).
 *
 * - Prefill (T > 4), `attention_gpu_flash`: BR = 16–64 rows, and the K tile, then
 *   the V tile, staged in one workgroup-memory buffer by coalesced vec4 loads
 *   (rows padded to an odd vec4 count so the score phase's per-key reads hit
 *   distinct banks). BC is the largest of 64…4 whose buffer (BC·(D/4 | 1)·16 B) plus
 *   the score tile (BR·BC·4 B) and reduction scratch fit 16 KiB (or the device's
 *   smaller limit): D = 128, BR = 64 → BC = 16, 13.5 KiB; D = 256, BR = 32 → BC = 8.
 * - Decode (T ≤ 4), `attention_gpu_decode` + `attention_gpu_combine`: BR = T·G
 *   (at most 32) and up to 128 keys per tile, read straight from global memory
 *   (no reuse to stage for), with the cache split over workgroups (split-K,
 *   flash-decoding): each writes a partial (max, sum, unnormalised accumulator)
 *   and a combine kernel merges them. Prefill splits too when its row tiles
 *   alone cannot fill the GPU.
 *
 * Causal and sliding-window masks skip whole tiles through the key-range bounds
 * (per row tile, from `pos`), and mask per element inside the tile. f16 storage
 * is widened on load; everything accumulates in f32. Head dims up to 256, any
 * value (vec4 loads where D is a multiple of 4 and the operand is bound whole or
 * in segments, scalar loads otherwise, e.g. behind a fused prologue).
 *
 * Subgroups are assumed laid out along `local_invocation_index` (subgroup k holds
 * invocations [k·size, (k + 1)·size), size a power of two), as on every Vulkan,
 * Metal and D3D12 driver; naga takes no `enable subgroups;` directive, so the
 * kernel says so in a comment (which `runtime/prebuilt.ts` looks for).
 *
 * The op's portable kernels remain for what these do not cover: D > 256, S = 0,
 * empty queries, devices with under 64 invocations or under the smallest tile's
 * workgroup memory, and grids past `maxWorkgroupsPerDim`.
 *
 * @module
 */

import type { KernelContext, KernelEmission, KernelEmitter, KernelSource } from "./types.ts";
import { attention, type AttentionAttrs, lseOf } from "./attention.ts";
import { f32, flatLaunch, flatMain, KernelIo, u32 as u } from "./wgsl/mod.ts";
import { numel } from "../core/shape.ts";

const LOG2E = 1.4426950408889634;
/** Score of a masked key: finite, so max/exp2 arithmetic never makes NaN. */
const NEG = "-1.0e30";
/** Scores above this are real (masked ones are NEG). */
const LIVE = "-5.0e29";
/** At most this many queries take the decode shape. */
const DECODE_MAX_T = 4;
/** Largest head dim of the GPU kernels (registers: BR·D/4 / WG vec4 accumulators ≤ 16). */
const MAX_D = 256;
/** Workgroup memory used at most, even where the device allows more (occupancy). */
const SMEM_CAP = 16384;
/** Workgroups a dispatch aims for before the key range is split (fills ~100 SMs twice). */
const TARGET_GROUPS = 256;

/**
 * The shape the `gpu` target's attention kernels take for one call; see
 * {@linkcode planAttentionGpu}.
 *
 * @example
 * ```ts
 * import type { AttentionGpuPlan } from "./attention_gpu.ts";
 * const p: AttentionGpuPlan = {
 *   kind: "flash", wg: 128, br: 64, bc: 16, splits: 1, subgroups: false, smemBytes: 13824,
 * };
 * ```
 */
export interface AttentionGpuPlan {
  /** `flash` (prefill: K/V tiles in workgroup memory) or `decode` (K/V read directly). */
  readonly kind: "flash" | "decode";
  /** Invocations per workgroup. */
  readonly wg: number;
  /** Query rows (packed (t, g) of one KV head) per workgroup. */
  readonly br: number;
  /** Keys per tile. */
  readonly bc: number;
  /** Workgroups along the keys; more than 1 adds the combine kernel. */
  readonly splits: number;
  /** Row statistics merged by subgroup shuffles rather than a workgroup-memory tree. */
  readonly subgroups: boolean;
  /** Workgroup memory of the main kernel in bytes. */
  readonly smemBytes: number;
}

const pow2ceil = (n: number) => 2 ** Math.ceil(Math.log2(Math.max(1, n)));
const pow2floor = (n: number) => 2 ** Math.floor(Math.log2(Math.max(1, n)));

/** Derived thread-mapping sizes of a plan (see the module comment's three phases). */
function mapping(wg: number, br: number, bc: number, D4: number) {
  const RS = wg / bc; // row slices of the score phase
  const TPR = wg / pow2ceil(br); // invocations per row in the statistics phase
  const NC = br * D4; // (row, vec4) pairs of the accumulate phase
  const KQ = pow2floor(Math.floor(wg / NC)); // key subsets when pairs are few
  return {
    RS,
    RPT: Math.ceil(br / RS),
    TPR,
    KPT: Math.ceil(bc / TPR),
    NC,
    KQ,
    NPW: wg / KQ,
    PP: Math.ceil(NC / (wg / KQ)),
  };
}

/** Workgroup memory in bytes of one shape. */
function smemOf(kind: "flash" | "decode", wg: number, br: number, bc: number, D4: number) {
  const D4P = D4 | 1;
  const { KQ } = mapping(wg, br, bc, D4);
  return (kind === "flash" ? bc * D4P * 16 : 0) + br * bc * 4 + br * 4 + 2 * wg * 4 +
    (KQ > 1 ? wg * 16 : 0);
}

/**
 * Picks the GPU kernel shape for an `attention` call, or `undefined` where the
 * portable kernels must serve it (see the module comment).
 *
 * @example
 * ```ts
 * import { planAttentionGpu } from "./attention_gpu.ts";
 * const caps = {
 *   maxStorageBuffers: 8, maxBindingSize: 1 << 30, maxInvocations: 256,
 *   maxWorkgroupStorage: 16384, maxWorkgroupsPerDim: 65535, offsetAlignment: 256,
 *   f16: true, subgroups: false, cpuCores: 0,
 * };
 * const q = { shape: [512, 32, 128], dtype: "f32" as const, direct: true };
 * const kv = { shape: [4096, 8, 128], dtype: "f32" as const, direct: true };
 * const pos = { shape: [1], dtype: "u32" as const, direct: true };
 * const plan = planAttentionGpu({
 *   attrs: { scale: 0.088, causal: true, window: 0, splits: 0 },
 *   inputs: [q, kv, kv, pos], outputs: [q], caps,
 * });
 * plan?.kind; // "flash"
 * ```
 */
export function planAttentionGpu(
  ctx: KernelContext<AttentionAttrs>,
): AttentionGpuPlan | undefined {
  const [q, k] = ctx.inputs;
  const [T, Hq, D] = q.shape;
  const [S, Hkv] = k.shape;
  const caps = ctx.caps;
  if (T * Hq * D === 0 || S === 0 || D > MAX_D) return undefined;
  const wg = caps.maxInvocations >= 128 ? 128 : caps.maxInvocations >= 64 ? 64 : 0;
  if (wg === 0) return undefined;
  const budget = Math.min(SMEM_CAP, caps.maxWorkgroupStorage);
  const D4 = Math.ceil(D / 4);
  const R = T * (Hq / Hkv);
  const kind = T <= DECODE_MAX_T ? "decode" : "flash";
  let br = kind === "decode" ? Math.min(R, 32) : Math.min(64, Math.max(8, pow2ceil(R)));
  // Accumulators per invocation (PP vec4) stay ≤ 16; rows ≤ invocations.
  while (br > 1 && (br * D4 > 16 * wg || br > wg)) br = Math.ceil(br / 2);
  const bcs = kind === "decode" ? [128, 64, 32, 16, 8, 4] : [64, 32, 16, 8, 4];
  const bc = bcs.find((bc) => {
    if (bc > wg) return false;
    const m = mapping(wg, br, bc, D4);
    return m.RPT <= 16 && m.KPT <= 16 && smemOf(kind, wg, br, bc, D4) <= budget;
  });
  if (bc === undefined) return undefined;
  const tiles = Math.ceil(R / br);
  if (tiles > caps.maxWorkgroupsPerDim || Hkv > caps.maxWorkgroupsPerDim) return undefined;
  // Split the keys when the row tiles alone leave the GPU idle; a split keeps at
  // least 32 keys (decode) or 4 tiles (prefill) of the cache's capacity.
  let splits = ctx.attrs.splits > 0
    ? ctx.attrs.splits
    : tiles * Hkv >= TARGET_GROUPS / 2
    ? 1
    : Math.ceil(TARGET_GROUPS / (tiles * Hkv));
  const minChunk = kind === "decode" ? 32 : 4 * bc;
  if (ctx.attrs.splits === 0) splits = Math.min(splits, Math.max(1, Math.floor(S / minChunk)));
  // Partials live in scratch buffers bound whole.
  const perSplit = T * Hq * D4 * 16;
  splits = Math.max(1, Math.min(splits, Math.floor(caps.maxBindingSize / perSplit), S));
  splits = Math.min(splits, caps.maxWorkgroupsPerDim);
  return {
    kind,
    wg,
    br,
    bc,
    splits,
    subgroups: caps.subgroups,
    smemBytes: smemOf(kind, wg, br, bc, D4),
  };
}

/** `fn ld{j}(r, c) -> vec4<f32>`: vec4 c of head row r of input j (zero past D). */
function loader(io: KernelIo, ctx: KernelContext<AttentionAttrs>, j: number, types: Rec) {
  const x = ctx.inputs[j];
  const D = x.shape[2], D4 = Math.ceil(D / 4);
  const head = `fn ld${j}(r: u32, c: u32) -> vec4<f32> {`;
  if (D % 4 === 0 && (x.direct || x.segmented)) {
    types[`in${j}`] = `vec4<${x.dtype}>`;
    const at = `r * ${u(D4)} + c`;
    return `${head} return vec4<f32>(${x.direct ? `${io.in(j)}[${at}]` : io.vget(j, at)}); }`;
  }
  const last = numel(x.shape) - 1;
  const comps = [0, 1, 2, 3].map((e) => {
    const i = `r * ${u(D)} + c * 4u + ${u(e)}`;
    return `select(0.0, f32(${io.load(j, `min(${i}, ${u(last)})`)}), c * 4u + ${u(e)} < ${u(D)})`;
  });
  return `${head} return vec4<f32>(${comps.join(", ")}); }`;
}

type Rec = Record<string, string>;

/** The main kernel: flash (staged K/V) or decode (direct K/V), with `plan.splits` parts. */
function emitMain(ctx: KernelContext<AttentionAttrs>, plan: AttentionGpuPlan): KernelSource {
  const [q, k] = ctx.inputs;
  const out = ctx.outputs[0];
  const [T, Hq, D] = q.shape;
  const [S, Hkv] = k.shape;
  const G = Hq / Hkv, R = T * G, D4 = Math.ceil(D / 4), D4P = D4 | 1;
  const { wg: WG, br: BR, bc: BC, splits: NS, subgroups: SG } = plan;
  const staged = plan.kind === "flash";
  const m = mapping(WG, BR, BC, D4);
  const { RS, RPT, TPR, KPT, NC, KQ, NPW, PP } = m;
  const causal = ctx.attrs.causal;
  const W = ctx.attrs.window > 0 ? ctx.attrs.window : 0;
  const QS = f32(ctx.attrs.scale * LOG2E, "attention: scale"); // exp2 of scaled scores
  const rows = T * Hq;
  const io = new KernelIo();
  const types: Rec = {};
  const range = (n: number) => Array.from({ length: n }, (_, i) => i);
  const L: string[] = [];
  const line = (s: string) => L.push(s);
  if (SG) line('// Requires the device feature "subgroups" (naga takes no `enable subgroups;`).');
  line(loader(io, ctx, 0, types));
  line(loader(io, ctx, 1, types));
  line(loader(io, ctx, 2, types));
  line(`fn merge(m1: f32, l1: f32, m2: f32, l2: f32) -> vec2<f32> {
  let mx = max(m1, m2);
  return vec2<f32>(mx, l1 * exp2(m1 - mx) + l2 * exp2(m2 - mx));
}`);
  line(`var<workgroup> ps: array<f32, ${BR * BC}>;`);
  line(`var<workgroup> rowf: array<f32, ${BR}>;`);
  line(`var<workgroup> red_m: array<f32, ${WG}>;`);
  line(`var<workgroup> red_l: array<f32, ${WG}>;`);
  if (staged) line(`var<workgroup> kvs: array<vec4<f32>, ${BC * D4P}>;`);
  if (KQ > 1) line(`var<workgroup> kqred: array<vec4<f32>, ${WG}>;`);
  line(`@compute @workgroup_size(${WG})`);
  line(
    `fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32${
      SG ? ", @builtin(subgroup_size) sgs: u32" : ""
    }) {`,
  );
  line(`  let h = wid.y;
  let rr0 = wid.x * ${u(BR)};
  let p = ${io.load(3, "0u")};
  // The keys this row tile can see (whole tiles outside are never visited), cut
  // into ${NS} part(s) of which this workgroup takes part wid.z.
  let t_first = min(rr0 / ${u(G)}, ${u(T - 1)});
  let t_last = min((rr0 + ${u(BR - 1)}) / ${u(G)}, ${u(T - 1)});
  let valid = min(${u(S)}, p + ${u(T)});
  let j_end = ${causal ? "min(valid, p + t_last + 1u)" : "valid"};
  let j_beg = ${W ? `select(0u, p + t_first + 1u - ${u(W)}, p + t_first + 1u > ${u(W)})` : "0u"};
  let span = select(0u, j_end - j_beg, j_end > j_beg);
  let chunk = (span + ${u(NS - 1)}) / ${u(NS)};
  let j0 = min(j_end, j_beg + wid.z * chunk);
  let j1 = min(j_end, j0 + chunk);`);
  // Score phase roles: one key, rows s_rs + RS·i.
  line(`  let s_key = lid % ${u(BC)};
  let s_rs = lid / ${u(BC)};`);
  for (const i of range(RPT)) {
    line(`  let s_r${i} = s_rs + ${u(RS * i)};
  let s_rr${i} = min(rr0 + s_r${i}, ${u(R - 1)});
  let s_ok${i} = s_r${i} < ${u(BR)} && rr0 + s_r${i} < ${u(R)};
  let s_t${i} = s_rr${i} / ${u(G)};
  let s_q${i} = s_t${i} * ${u(Hq)} + h * ${u(G)} + s_rr${i} % ${u(G)};
  let s_at${i} = p + s_t${i};`);
  }
  // Statistics roles: row st_r, keys st_sub + TPR·k; running max and sum.
  line(`  let st_r = lid / ${u(TPR)};
  let st_sub = lid % ${u(TPR)};
  let st_ok = st_r < ${u(BR)};
  var m_run = ${NEG};
  var l_run = 0.0;`);
  // Accumulate roles: key subset o_kq, pairs o_pi + NPW·k.
  const sharedC = NPW % D4 === 0;
  line(`  let o_kq = lid / ${u(NPW)};
  let o_pi = lid % ${u(NPW)};`);
  for (const i of range(PP)) {
    line(`  let o_p${i} = o_pi + ${u(NPW * i)};
  let o_r${i} = min(o_p${i} / ${u(D4)}, ${u(BR - 1)});
  let o_c${i} = o_p${i} % ${u(D4)};
  var acc${i} = vec4<f32>(0.0);`);
  }
  const tileLoad = (j: number) => {
    const items = BC * D4, n = Math.ceil(items / WG);
    for (const i of range(n)) {
      const guard = (i + 1) * WG > items;
      line(`    {
      let e = lid + ${u(WG * i)};
      let jj = min(e / ${u(D4)}, ${u(BC - 1)});
      let c = e % ${u(D4)};
      var x = vec4<f32>(0.0);
      if (jj < n${guard ? ` && e < ${u(items)}` : ""}) { x = ld${j}((jt + jj) * ${u(Hkv)} + h, c); }
      ${
        guard
          ? `if (e < ${u(items)}) { kvs[jj * ${u(D4P)} + c] = x; }`
          : `kvs[jj * ${u(D4P)} + c] = x;`
      }
    }`);
    }
  };
  line(`  for (var jt = j0; jt < j1; jt += ${u(BC)}) {
    let n = min(${u(BC)}, j1 - jt);
    workgroupBarrier(); // the previous tile's accumulate phase is done with ps and kvs`);
  if (staged) {
    tileLoad(1);
    line("    workgroupBarrier();");
  }
  // 1. Scores of key s_key against the thread's rows.
  const kread = staged
    ? `kvs[s_key * ${u(D4P)} + c]`
    : `ld1(min(j, ${u(S - 1)}) * ${u(Hkv)} + h, c)`;
  line(`    {
      let j = jt + s_key;
${range(RPT).map((i) => `      var sc${i} = 0.0;`).join("\n")}
      for (var c = 0u; c < ${u(D4)}; c++) {
        let kv = ${kread};
${range(RPT).map((i) => `        sc${i} = sc${i} + dot(ld0(s_q${i}, c), kv);`).join("\n")}
      }`);
  for (const i of range(RPT)) {
    const vis = `s_ok${i} && s_key < n${causal ? ` && j <= s_at${i}` : ""}${
      W ? ` && s_at${i} - j < ${u(W)}` : ""
    }`;
    line(`      if (s_r${i} < ${u(BR)}) {
        ps[s_r${i} * ${u(BC)} + s_key] = select(${NEG}, sc${i} * ${QS}, ${vis});
      }`);
  }
  line(`    }
    workgroupBarrier();`);
  // 2. Row statistics.
  const keyOf = (kk: number) => `st_sub + ${u(TPR * kk)}`;
  const keyOk = (kk: number) => (TPR * kk + TPR > BC ? ` && ${keyOf(kk)} < ${u(BC)}` : "");
  const psAt = (kk: number) =>
    `min(st_r, ${u(BR - 1)}) * ${u(BC)} + min(${keyOf(kk)}, ${u(BC - 1)})`;
  line("    {");
  for (const kk of range(KPT)) {
    line(`      let sk${kk} = select(${NEG}, ps[${psAt(kk)}], st_ok${keyOk(kk)});`);
  }
  const lm = range(KPT).reduce((a, kk) => `max(${a}, sk${kk})`, NEG);
  line(`      let lm = ${lm};
      let ll = ${
    range(KPT).map((kk) => `select(0.0, exp2(sk${kk} - lm), sk${kk} > ${LIVE})`).join(" + ")
  };
      var tm = lm;
      var tl = ll;`);
  if (TPR > 1 && SG) {
    // Butterfly within the subgroup, then subgroup partials through workgroup
    // memory when a row spans several subgroups (decode with few rows).
    line(`      let sp = min(sgs, ${u(TPR)});
      for (var o = 1u; o < sp; o = o << 1u) {
        let mm = merge(tm, tl, subgroupShuffleXor(tm, o), subgroupShuffleXor(tl, o));
        tm = mm.x;
        tl = mm.y;
      }
      if (sp < ${u(TPR)}) {
        if (lid % sp == 0u) {
          red_m[lid / sp] = tm;
          red_l[lid / sp] = tl;
        }
        workgroupBarrier();
        let ns = ${u(TPR)} / sp;
        tm = red_m[st_r * ns];
        tl = red_l[st_r * ns];
        for (var s = 1u; s < ns; s++) {
          let mm = merge(tm, tl, red_m[st_r * ns + s], red_l[st_r * ns + s]);
          tm = mm.x;
          tl = mm.y;
        }
      }`);
  } else if (TPR > 1) {
    line(`      red_m[lid] = tm;
      red_l[lid] = tl;
      workgroupBarrier();`);
    for (let s = TPR / 2; s >= 1; s /= 2) {
      line(`      if (st_sub < ${u(s)}) {
        let mm = merge(red_m[lid], red_l[lid], red_m[lid + ${u(s)}], red_l[lid + ${u(s)}]);
        red_m[lid] = mm.x;
        red_l[lid] = mm.y;
      }
      workgroupBarrier();`);
    }
    line(`      tm = red_m[st_r * ${u(TPR)}];
      tl = red_l[st_r * ${u(TPR)}];`);
  }
  line(`      let mn = max(m_run, tm);
      let f = exp2(m_run - mn);
      l_run = l_run * f + tl * exp2(tm - mn);
      m_run = mn;
      if (st_ok && st_sub == 0u) { rowf[st_r] = f; }`);
  for (const kk of range(KPT)) {
    line(
      `      if (st_ok${keyOk(kk)}) { ps[${
        psAt(kk)
      }] = select(0.0, exp2(sk${kk} - mn), sk${kk} > ${LIVE}); }`,
    );
  }
  line("    }");
  if (staged) tileLoad(2); // the K tile is no longer read
  line("    workgroupBarrier();");
  // 3. Accumulate p·V.
  const vread = (c: string) =>
    staged ? `kvs[jj * ${u(D4P)} + ${c}]` : `ld2((jt + jj) * ${u(Hkv)} + h, ${c})`;
  line(range(PP).map((i) => `    acc${i} = acc${i} * rowf[o_r${i}];`).join("\n"));
  line(`    for (var jj = o_kq; jj < n; jj += ${u(KQ)}) {`);
  if (sharedC) line(`      let vv = ${vread("o_c0")};`);
  for (const i of range(PP)) {
    line(
      `      acc${i} = fma(vec4<f32>(ps[o_r${i} * ${u(BC)} + jj]), ${
        sharedC ? "vv" : vread(`o_c${i}`)
      }, acc${i});`,
    );
  }
  line(`    }
  }`);
  // Key subsets of a pair meet in workgroup memory (PP = 1 whenever KQ > 1).
  if (KQ > 1) {
    line(`  workgroupBarrier();
  kqred[lid] = acc0;
  workgroupBarrier();
  if (o_kq == 0u) {
${range(KQ - 1).map((s) => `    acc0 = acc0 + kqred[lid + ${u(NPW * (s + 1))}];`).join("\n")}
  }`);
  }
  // Row sums for the output (rowf reused), or the partial state for the combine.
  const stRow = `min(rr0 + st_r, ${u(R - 1)})`;
  line(`  workgroupBarrier();
  if (st_ok && st_sub == 0u) {
    rowf[st_r] = l_run;`);
  if (NS === 1 && ctx.outputs.length === 2) {
    // The row's log-sum-exp, for the backward (`lse` attribute).
    line(`    if (rr0 + st_r < ${u(R)}) {
      let rr = ${stRow};
      ${
      io.store(1, `(rr / ${u(G)}) * ${u(Hq)} + h * ${u(G)} + rr % ${u(G)}`, lseOf("m_run", "l_run"))
    };
    }`);
  }
  if (NS > 1) {
    line(`    if (rr0 + st_r < ${u(R)}) {
      let rr = ${stRow};
      let sp = wid.z * ${u(rows)} + (rr / ${u(G)}) * ${u(Hq)} + h * ${u(G)} + rr % ${u(G)};
      ${io.scratch(0)}[sp * 2u] = m_run;
      ${io.scratch(0)}[sp * 2u + 1u] = l_run;
    }`);
  }
  line(`  }
  workgroupBarrier();`);
  const ty = out.dtype;
  for (const i of range(PP)) {
    const okPair = `o_kq == 0u && o_p${i} < ${u(NC)} && rr0 + o_r${i} < ${u(R)}`;
    line(`  if (${okPair}) {
    let rr = rr0 + o_r${i};
    let row = (rr / ${u(G)}) * ${u(Hq)} + h * ${u(G)} + rr % ${u(G)};`);
    if (NS > 1) {
      types.scratch1 = "vec4<f32>";
      line(`    ${io.scratch(1)}[(wid.z * ${u(rows)} + row) * ${u(D4)} + o_c${i}] = acc${i};`);
    } else {
      line(`    let l = rowf[o_r${i}];
    let o = acc${i} * select(0.0, 1.0 / l, l > 0.0);
    let ob = row * ${u(D)} + o_c${i} * 4u;`);
      for (const e of range(4)) {
        const st = `${io.store(0, `ob + ${u(e)}`, `${ty}(o[${e}])`)};`;
        line(D % 4 === 0 ? `    ${st}` : `    if (o_c${i} * 4u + ${u(e)} < ${u(D)}) { ${st} }`);
      }
    }
    line("  }");
  }
  line("}");
  const tiles = Math.ceil(R / BR);
  const name = `attention_gpu_${plan.kind}${SG ? "_sg" : ""}`;
  return {
    label: name,
    code: `\n${L.join("\n")}\n`,
    workgroups: [tiles, Hkv, NS],
    arrayTypes: types,
    uses: io.uses,
    choice: {
      algorithm: `${plan.kind}_br${BR}_bc${BC}_s${NS}${SG ? "_sg" : ""}`,
      reason: plan.kind === "flash"
        ? `gpu prefill (T = ${T} > ${DECODE_MAX_T}): K/V tiles in workgroup memory`
        : `gpu decode (T = ${T} ≤ ${DECODE_MAX_T}): the cache split over ${NS} workgroup(s)`,
    },
  };
}

/** Merges the `splits` partial states of every row: weights 2^(m_s − M). */
function emitCombine(ctx: KernelContext<AttentionAttrs>, NS: number): KernelSource {
  const [T, Hq, D] = ctx.inputs[0].shape;
  const rows = T * Hq, D4 = Math.ceil(D / 4), total = rows * D4;
  const { wg, workgroups, index } = flatLaunch(total, ctx.caps, 64);
  const io = new KernelIo();
  const [stats, acc] = [io.scratch(0), io.scratch(1)];
  const ty = ctx.outputs[0].dtype;
  const body = `  let row = i / ${u(D4)};
  let c = i % ${u(D4)};
  var mx = ${NEG};
  for (var s = 0u; s < ${u(NS)}; s++) {
    let sp = s * ${u(rows)} + row;
    if (${stats}[sp * 2u + 1u] > 0.0) { mx = max(mx, ${stats}[sp * 2u]); }
  }
  var l = 0.0;
  var a = vec4<f32>(0.0);
  for (var s = 0u; s < ${u(NS)}; s++) {
    let sp = s * ${u(rows)} + row;
    let ls = ${stats}[sp * 2u + 1u];
    if (ls > 0.0) {
      let w = exp2(${stats}[sp * 2u] - mx);
      l = l + ls * w;
      a = fma(vec4<f32>(w), ${acc}[sp * ${u(D4)} + c], a);
    }
  }
  let o = a * select(0.0, 1.0 / l, l > 0.0);
  let ob = row * ${u(D)} + c * 4u;
  for (var e = 0u; e < 4u; e++) {
    if (c * 4u + e < ${u(D)}) { ${io.store(0, "ob + e", `${ty}(o[e])`)}; }
  }${
    ctx.outputs.length === 2 ? `\n  if (c == 0u) { ${io.store(1, "row", lseOf("mx", "l"))}; }` : ""
  }`;
  return {
    label: "attention_gpu_combine",
    code: `\n${flatMain(wg, index, total, body)}`,
    workgroups,
    arrayTypes: { scratch1: "vec4<f32>" },
    uses: io.uses,
    role: "combine",
  };
}

/**
 * The `gpu` target's `attention` emitter: the tiled flash-attention kernel for
 * prefill (T > 4), the split-K decode kernel and its combine for T ≤ 4, and the
 * op's portable kernels where {@linkcode planAttentionGpu} declines.
 *
 * @example
 * ```ts
 * import { TARGET_TABLES } from "./targets.ts";
 * import { attentionGpu } from "./attention_gpu.ts";
 * TARGET_TABLES.gpu.emitters.attention === attentionGpu; // true
 * ```
 */
export const attentionGpu: KernelEmitter<AttentionAttrs> = (ctx) => {
  const plan = planAttentionGpu(ctx);
  if (!plan) {
    const lower = attention.lower;
    if (lower.kind !== "kernel") throw new Error("internal: attention is a kernel op");
    return lower.emit(ctx);
  }
  const [T, Hq, D] = ctx.inputs[0].shape;
  const D4 = Math.ceil(D / 4), rows = T * Hq;
  const main = emitMain(ctx, plan);
  if (plan.splits === 1) return { kernels: [main] };
  const emission: KernelEmission = {
    kernels: [main, emitCombine(ctx, plan.splits)],
    scratch: [
      { length: plan.splits * rows * 2, type: "f32" },
      { length: plan.splits * rows * D4 * 4, type: "f32" },
    ],
  };
  return emission;
};
