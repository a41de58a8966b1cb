/**
 * WGSL emitters for Mamba (S6) kernels: the chunked three-pass selective scan
 * (prefill), a sequential one-thread-per-channel scan (baseline), the
 * single-token recurrent decode step and the causal depthwise conv1d.
 *
 * Every emitter is pure: a spec with all sizes in, a {@linkcode Kernel} out,
 * with sizes baked into the WGSL as constants. `code` holds everything except
 * `enable f16;` and the `@group @binding` declarations; the caller declares the
 * bindings in the order of `kernel.bindings` ({@linkcode declareBindings} does
 * it, {@linkcode buildShader} makes a whole module).
 *
 * Layouts are row-major: u, delta, z, y `[B, L, I]`; B and C `[B, L, N]` (or
 * packed into one row per token, see {@linkcode BcLayout}); states `[B, I, N]`
 * in f32. A layer's small static f32 weights (A, D, dt bias, conv weight and
 * bias) live in one `params` buffer (see {@linkcode mixerParamsLayout}) because
 * a kernel may bind at most 8 storage buffers by default.
 *
 * Why three passes: WebGPU does not promise forward progress between
 * workgroups, so a single-pass decoupled look-back scan may deadlock. Instead
 * pass 1 scans each (chunk, channel block) from zero state and keeps only the
 * chunk-end state and the chunk's Σdelta; pass 2 combines chunks with
 * (a₁,b₁)∘(a₀,b₀) = (a₁a₀, a₁b₀ + b₁) sequentially per (b, i, n); pass 3
 * re-scans each chunk from its carried-in state and writes y. The [L, I, N]
 * state tensor never reaches global memory.
 *
 * @module
 */

/** Element type of a binding. */
export type ElemType = "f32" | "f16" | "u32" | "i32";
/** Activation type (u, delta, B, C, z, y, x). States are always f32. */
export type ActType = "f32" | "f16";

/** One storage binding of a kernel, in declaration order. */
export interface KernelBinding {
  /** WGSL identifier of the binding. */
  name: string;
  /** Storage access mode. */
  access: "read" | "read_write";
  /** Element type of the `array<T>`. */
  type: ElemType;
}

/** An emitted compute kernel. */
export interface Kernel {
  /** WGSL without `enable f16;` and without binding declarations. */
  code: string;
  /** Dispatch size. */
  workgroups: [number, number, number];
  /** Debug label. */
  label: string;
  /** Bindings, declared as `@group(0) @binding(k)` in this order. */
  bindings: KernelBinding[];
  /** True when the module needs `enable f16;`. */
  f16: boolean;
}

/**
 * Element offsets of a Mamba mixer's small f32 weights inside one buffer:
 * A `[I, N]` (already −exp(A_log)), D `[I]`, dt bias `[I]`, conv weight
 * `[I, k]`, conv bias `[I]`.
 */
export interface ParamsLayout {
  /** Offset of A. */
  a: number;
  /** Offset of D. */
  d: number;
  /** Offset of the dt bias. */
  dtBias: number;
  /** Offset of the conv weight. */
  convW: number;
  /** Offset of the conv bias. */
  convB: number;
  /** Total elements. */
  size: number;
}

/**
 * B and C read from one buffer `bc` with one row per token (for example the
 * x_proj output `[B, L, R + 2N]`): B[r, n] = bc[r·stride + bOffset + n].
 */
export interface BcLayout {
  /** Elements per token row. */
  stride: number;
  /** Offset of B within a row. */
  bOffset: number;
  /** Offset of C within a row. */
  cOffset: number;
}

/** Spec of the selective scan kernels. */
export interface ScanSpec {
  /** Batch B. */
  batch: number;
  /** Sequence length L. */
  length: number;
  /** Channels I. */
  channels: number;
  /** State size N. */
  state: number;
  /** Activation type; default "f32". */
  act?: ActType;
  /** delta is raw: the step is softplus(delta + dtBias[i]). */
  deltaSoftplus?: boolean;
  /** Bind z and gate y ← y·silu(z). */
  gate?: boolean;
  /** Start from a given state h0 `[B, I, N]`. */
  initialState?: boolean;
  /** Write the final state `[B, I, N]`. */
  finalState?: boolean;
  /** Read B and C from one packed buffer instead of two. */
  bc?: BcLayout;
  /** Params layout; default `mixerParamsLayout(I, N, 0)`. */
  layout?: ParamsLayout;
  /** Chunk length of the chunked scan; default 128. */
  chunk?: number;
  /** Channels per workgroup (threads); default 64. */
  channelBlock?: number;
  /** Max storage buffers per kernel; default 8. */
  maxBindings?: number;
}

/** The three kernels of the chunked scan plus its scratch buffers. */
export interface ChunkedScanPlan {
  /** Pass 1 (chunk-local scan), pass 2 (carry), pass 3 (fix-up + output). */
  kernels: [Kernel, Kernel, Kernel];
  /** Scratch buffers the caller allocates (f32, no initial contents needed). */
  scratch: { name: string; type: ElemType; elements: number }[];
  /** Chunk length used. */
  chunk: number;
  /** Number of chunks. */
  chunks: number;
  /** Channels per workgroup. */
  channelBlock: number;
}

const LOG2E = 1.4426950408889634;

/**
 * Offsets for a mixer params buffer A | D | dtBias | convW | convB.
 *
 * @example
 * ```ts
 * const lay = mixerParamsLayout(1536, 16, 4); // lay.size = 1536·(16 + 3 + 4)
 * ```
 */
export function mixerParamsLayout(
  channels: number,
  state: number,
  convKernel: number,
): ParamsLayout {
  const I = channels;
  const a = 0, d = I * state, dtBias = d + I, convW = dtBias + I, convB = convW + I * convKernel;
  return { a, d, dtBias, convW, convB, size: convB + (convKernel > 0 ? I : 0) };
}

/**
 * Packs a mixer's weights into one Float32Array following `layout`; missing
 * parts stay zero.
 *
 * @example
 * ```ts
 * const lay = mixerParamsLayout(2, 1, 0);
 * packMixerParams(lay, { a: [-1, -2], d: [1, 1] }); // [-1, -2, 1, 1, 0, 0]
 * ```
 */
export function packMixerParams(
  layout: ParamsLayout,
  w: {
    a?: ArrayLike<number>;
    d?: ArrayLike<number>;
    dtBias?: ArrayLike<number>;
    convW?: ArrayLike<number>;
    convB?: ArrayLike<number>;
  },
): Float32Array<ArrayBuffer> {
  const out = new Float32Array(layout.size);
  if (w.a) out.set(w.a, layout.a);
  if (w.d) out.set(w.d, layout.d);
  if (w.dtBias) out.set(w.dtBias, layout.dtBias);
  if (w.convW) out.set(w.convW, layout.convW);
  if (w.convB) out.set(w.convB, layout.convB);
  return out;
}

/**
 * The `@group(g) @binding(k)` declarations for a kernel's bindings.
 *
 * @example
 * ```ts
 * const k = emitSequentialScan({ batch: 1, length: 8, channels: 4, state: 2 });
 * declareBindings(k); // "@group(0) @binding(0) var<storage, read> u: array<f32>;\n…"
 * ```
 */
export function declareBindings(kernel: Kernel, group = 0): string {
  return kernel.bindings
    .map((b, k) =>
      `@group(${group}) @binding(${k}) var<storage, ${b.access}> ${b.name}: array<${b.type}>;`
    )
    .join("\n");
}

/**
 * A complete WGSL module: `enable f16;` when needed, bindings, code.
 *
 * @example
 * ```ts
 * const k = emitSequentialScan({ batch: 1, length: 8, channels: 4, state: 2 });
 * device.createShaderModule({ code: buildShader(k) });
 * ```
 */
export function buildShader(kernel: Kernel, group = 0): string {
  return `${kernel.f16 ? "enable f16;\n" : ""}${declareBindings(kernel, group)}\n${kernel.code}`;
}

// ---------------------------------------------------------------- helpers

function checkInt(name: string, v: number, min: number): void {
  if (!Number.isInteger(v) || v < min) {
    throw new RangeError(`Expected ${name} to be an integer >= ${min}, got ${v}`);
  }
}

function checkBindings(label: string, bindings: KernelBinding[], max: number): void {
  if (bindings.length > max) {
    throw new RangeError(
      `Kernel "${label}" needs ${bindings.length} storage buffers but the limit is ${max}: ` +
        `pack B and C with the "bc" layout or raise maxBindings to the device limit`,
    );
  }
}

function checkGrid(label: string, wg: [number, number, number]): void {
  for (const v of wg) {
    if (v > 65535) {
      throw new RangeError(`Kernel "${label}" dispatch ${JSON.stringify(wg)} exceeds 65535`);
    }
  }
}

const MATH_FNS = `
fn silu_f(x: f32) -> f32 { return x / (1.0 + exp(-x)); }
// softplus with PyTorch's threshold; above it log(1 + e^x) == x in f32 anyway
// and e^x would overflow for large x.
fn softplus_f(x: f32) -> f32 { if (x > 20.0) { return x; } return log(1.0 + exp(x)); }
`;

function validateScan(s: ScanSpec): void {
  checkInt("batch", s.batch, 1);
  checkInt("length", s.length, 1);
  checkInt("channels", s.channels, 1);
  checkInt("state", s.state, 1);
  if (s.act !== undefined && s.act !== "f32" && s.act !== "f16") {
    throw new TypeError(`Expected act to be "f32" or "f16", got "${s.act}"`);
  }
  if (s.bc) {
    const { stride, bOffset, cOffset } = s.bc;
    if (bOffset + s.state > stride || cOffset + s.state > stride || bOffset < 0 || cOffset < 0) {
      throw new RangeError(`B/C layout ${JSON.stringify(s.bc)} does not fit N = ${s.state}`);
    }
  }
}

/** Bindings and load expressions for B and C. `r` is the token row index. */
function bcAccess(s: ScanSpec, act: ActType): {
  bindings: KernelBinding[];
  bLoad: (base: string, n: number) => string;
  cLoad: (base: string, n: number) => string;
  bBase: (r: string) => string;
  cBase: (r: string) => string;
} {
  const N = s.state;
  if (s.bc) {
    const { stride, bOffset, cOffset } = s.bc;
    return {
      bindings: [{ name: "bc", access: "read", type: act }],
      bLoad: (base, n) => `f32(bc[${base} + ${n}u])`,
      cLoad: (base, n) => `f32(bc[${base} + ${n}u])`,
      bBase: (r) => `${r} * ${stride}u + ${bOffset}u`,
      cBase: (r) => `${r} * ${stride}u + ${cOffset}u`,
    };
  }
  return {
    bindings: [{ name: "b_mat", access: "read", type: act }, {
      name: "c_mat",
      access: "read",
      type: act,
    }],
    bLoad: (base, n) => `f32(b_mat[${base} + ${n}u])`,
    cLoad: (base, n) => `f32(c_mat[${base} + ${n}u])`,
    bBase: (r) => `${r} * ${N}u`,
    cBase: (r) => `${r} * ${N}u`,
  };
}

/**
 * The inner time loop shared by pass 1, pass 3 and the sequential kernel.
 * One thread owns channel i and keeps all N states in scalar registers
 * (unrolled: lavapipe vectorises across invocations, so per-thread arrays
 * would become memory).
 *
 * Measured on lavapipe: the 2N broadcast loads of B and C per step dominate
 * (~90% of the time; replacing them by constants made the kernel ~9x
 * faster), because llvmpipe gathers per lane. Staging B/C tiles in workgroup
 * memory was tried and was slower (shared-memory reads are gathered too, plus
 * barriers), so loads stay direct.
 */
function scanLoop(
  s: ScanSpec,
  act: ActType,
  bc: ReturnType<typeof bcAccess>,
  mode: "states" | "output",
): string {
  const N = s.state;
  const lines: string[] = [];
  lines.push(`  for (var t = t0; t < t1; t = t + 1u) {`);
  lines.push(`    let r = b * K_L + t;`);
  lines.push(`    let x = f32(u[r * K_I + i]);`);
  lines.push(
    s.deltaSoftplus
      ? `    let dt = softplus_f(f32(delta[r * K_I + i]) + dt_bias);`
      : `    let dt = f32(delta[r * K_I + i]);`,
  );
  if (mode === "states") lines.push(`    dsum = dsum + dt;`);
  lines.push(`    let du = dt * x;`);
  lines.push(`    let bb = ${bc.bBase("r")};`);
  for (let n = 0; n < N; n++) {
    // a_n is pre-scaled by log2(e): exp(dt·A) costs one exp2.
    lines.push(`    h${n} = fma(exp2(dt * a${n}), h${n}, du * ${bc.bLoad("bb", n)});`);
  }
  if (mode === "output") {
    lines.push(`    let cb = ${bc.cBase("r")};`);
    lines.push(`    var acc = d_skip * x;`);
    for (let n = 0; n < N; n++) lines.push(`    acc = fma(h${n}, ${bc.cLoad("cb", n)}, acc);`);
    if (s.gate) lines.push(`    acc = acc * silu_f(f32(z[r * K_I + i]));`);
    lines.push(`    y[r * K_I + i] = ${act}(acc);`);
  }
  lines.push(`  }`);
  return lines.join("\n");
}

function scanPrologue(s: ScanSpec): string {
  const N = s.state;
  const lay = s.layout ?? mixerParamsLayout(s.channels, N, 0);
  const lines: string[] = [];
  for (let n = 0; n < N; n++) {
    lines.push(`  let a${n} = params[${lay.a}u + i * K_N + ${n}u] * ${LOG2E};`);
  }
  if (s.deltaSoftplus) lines.push(`  let dt_bias = params[${lay.dtBias}u + i];`);
  return lines.join("\n");
}

function constsScan(s: ScanSpec, extra: Record<string, number> = {}): string {
  const c: Record<string, number> = {
    K_B: s.batch,
    K_L: s.length,
    K_I: s.channels,
    K_N: s.state,
    ...extra,
  };
  return Object.entries(c).map(([k, v]) => `const ${k}: u32 = ${v}u;`).join("\n");
}

function actBindings(
  s: ScanSpec,
  act: ActType,
  bc: ReturnType<typeof bcAccess>,
  withC: boolean,
): KernelBinding[] {
  const out: KernelBinding[] = [
    { name: "u", access: "read", type: act },
    { name: "delta", access: "read", type: act },
  ];
  out.push(...(withC ? bc.bindings : bc.bindings.slice(0, 1)));
  if (withC && s.gate) out.push({ name: "z", access: "read", type: act });
  out.push({ name: "params", access: "read", type: "f32" });
  return out;
}

// ---------------------------------------------------------------- scans

/**
 * Sequential selective scan: one thread per (b, channel) walks all L steps
 * with its N states in registers; 64 threads per workgroup. The baseline the
 * chunked scan is measured against, and the cheapest kernel for short L.
 *
 * With `initialState` or `finalState` the kernel binds `state` `[B, I, N]`
 * (f32, read_write): read as h0 on entry, overwritten with h_L on exit.
 *
 * @example
 * ```ts
 * const k = emitSequentialScan({ batch: 1, length: 2048, channels: 256, state: 16 });
 * k.workgroups; // [4, 1, 1]
 * ```
 */
export function emitSequentialScan(s: ScanSpec): Kernel {
  validateScan(s);
  const act = s.act ?? "f32";
  const N = s.state;
  const WG = 64;
  const lay = s.layout ?? mixerParamsLayout(s.channels, N, 0);
  const bc = bcAccess(s, act);
  const bindings = actBindings(s, act, bc, true);
  bindings.push({ name: "y", access: "read_write", type: act });
  const useState = !!(s.initialState || s.finalState);
  if (useState) bindings.push({ name: "state", access: "read_write", type: "f32" });
  const label = `ssm_scan_sequential_B${s.batch}_L${s.length}_I${s.channels}_N${N}_${act}`;
  checkBindings(label, bindings, s.maxBindings ?? 8);
  const hInit: string[] = [];
  for (let n = 0; n < N; n++) {
    hInit.push(`  var h${n}: f32 = ${s.initialState ? `state[sbase + ${n}u]` : "0.0"};`);
  }
  const hOut: string[] = [];
  if (s.finalState) { for (let n = 0; n < N; n++) hOut.push(`  state[sbase + ${n}u] = h${n};`); }
  const code = `${constsScan(s)}
${MATH_FNS}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = wid.x * ${WG}u + lid.x;
  if (i >= K_I) { return; }
  let b = wid.y;
  let sbase = (b * K_I + i) * K_N;
  let t0 = 0u;
  let t1 = K_L;
  let d_skip = params[${lay.d}u + i];
${scanPrologue(s)}
${hInit.join("\n")}
${scanLoop(s, act, bc, "output")}
${hOut.join("\n")}
}
`;
  const workgroups: [number, number, number] = [Math.ceil(s.channels / WG), s.batch, 1];
  checkGrid(label, workgroups);
  return { code, workgroups, label, bindings, f16: act === "f16" };
}

/**
 * Chunked three-pass selective scan (prefill path).
 *
 * - pass 1 `chunk_states`: workgroup (channel block, chunk, batch) scans its
 *   chunk from zero state; writes the chunk's Σdelta `chunk_sum [B, C, I]` and
 *   its end state `chunk_state [B, C, I, N]`. The decay product ∏exp(Δ·A) is
 *   exp(A·ΣΔ), so one float per (b, chunk, i) replaces N. The last chunk is
 *   skipped unless the final state is wanted.
 * - pass 2 `chunk_carry`: per (b, i, n), a sequential scan over chunks with
 *   (a₁,b₁)∘(a₀,b₀) = (a₁a₀, a₁b₀ + b₁) from h0 (or 0); overwrites
 *   `chunk_state[c]` with the state carried into chunk c; writes `h_final`.
 * - pass 3 `chunk_output`: re-scans each chunk from its carried-in state and
 *   writes y with D·u and silu(z) fused.
 *
 * Scratch: `chunk_sum` and `chunk_state` (f32), listed in `plan.scratch`.
 * Bindings of pass 2: chunk_sum, chunk_state, params, [h0], [h_final].
 *
 * @example
 * ```ts
 * const plan = emitChunkedScan({ batch: 1, length: 8192, channels: 256, state: 16 });
 * plan.kernels[2].workgroups; // [4, 64, 1]: 256 workgroups vs 4 sequential
 * ```
 */
export function emitChunkedScan(s: ScanSpec): ChunkedScanPlan {
  validateScan(s);
  const act = s.act ?? "f32";
  const N = s.state, I = s.channels, B = s.batch, L = s.length;
  const chunk = s.chunk ?? 128;
  const CB = s.channelBlock ?? 64;
  checkInt("chunk", chunk, 1);
  checkInt("channelBlock", CB, 1);
  if (CB > 256) throw new RangeError(`Expected channelBlock <= 256, got ${CB}`);
  const NC = Math.ceil(L / chunk);
  // Pass 1 only feeds later chunks (and h_final): the last chunk's end state
  // is dead unless the final state is requested.
  const NC1 = s.finalState ? NC : NC - 1;
  const lay = s.layout ?? mixerParamsLayout(I, N, 0);
  const bc = bcAccess(s, act);
  const maxB = s.maxBindings ?? 8;
  const tag = `B${B}_L${L}_I${I}_N${N}_c${chunk}_${act}`;
  const consts = constsScan(s, { K_CHUNK: chunk, K_NC: NC, K_NC1: NC1 });
  const header = `${consts}
${MATH_FNS}
@compute @workgroup_size(${CB})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = wid.x * ${CB}u + lid.x;
  if (i >= K_I) { return; }
  let c = wid.y;
  let b = wid.z;
  let t0 = c * K_CHUNK;
  let t1 = min(t0 + K_CHUNK, K_L);
  // chunk_state is [B, NC, I, N]; this thread's N entries are contiguous.
  let sbase = ((b * K_NC + c) * K_I + i) * K_N;
${scanPrologue(s)}`;

  // pass 1
  const b1 = actBindings(s, act, bc, false);
  b1.push({ name: "chunk_sum", access: "read_write", type: "f32" });
  b1.push({ name: "chunk_state", access: "read_write", type: "f32" });
  const init0: string[] = [], store1: string[] = [];
  for (let n = 0; n < N; n++) {
    init0.push(`  var h${n}: f32 = 0.0;`);
    store1.push(`  chunk_state[sbase + ${n}u] = h${n};`);
  }
  const code1 = `${header}
  var dsum: f32 = 0.0;
${init0.join("\n")}
${scanLoop(s, act, bc, "states")}
  chunk_sum[(b * K_NC + c) * K_I + i] = dsum;
${store1.join("\n")}
}
`;
  const k1: Kernel = {
    code: code1,
    workgroups: [Math.ceil(I / CB), NC1, B],
    label: `ssm_scan_chunk_states_${tag}`,
    bindings: b1,
    f16: act === "f16",
  };

  // pass 2
  const WG2 = 64;
  const b2: KernelBinding[] = [
    { name: "chunk_sum", access: "read", type: "f32" },
    { name: "chunk_state", access: "read_write", type: "f32" },
    { name: "params", access: "read", type: "f32" },
  ];
  if (s.initialState) b2.push({ name: "h0", access: "read", type: "f32" });
  if (s.finalState) b2.push({ name: "h_final", access: "read_write", type: "f32" });
  const code2 = `${consts}
@compute @workgroup_size(${WG2})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let j = wid.x * ${WG2}u + lid.x;
  if (j >= K_I * K_N) { return; }
  let b = wid.y;
  let i = j / K_N;
  let a = params[${lay.a}u + j] * ${LOG2E};
  var h: f32 = ${s.initialState ? "h0[b * K_I * K_N + j]" : "0.0"};
  for (var c = 0u; c < K_NC; c = c + 1u) {
    let idx = (b * K_NC + c) * K_I * K_N + j;
    let st = chunk_state[idx];
    chunk_state[idx] = h;
    if (c < K_NC1) {
      // (a1, b1) o (a0, b0) = (a1 a0, a1 b0 + b1) with a1 = exp(A * sum(dt)).
      h = fma(exp2(chunk_sum[(b * K_NC + c) * K_I + i] * a), h, st);
    }
  }
${s.finalState ? "  h_final[b * K_I * K_N + j] = h;" : ""}
}
`;
  const k2: Kernel = {
    code: code2,
    workgroups: [Math.ceil((I * N) / WG2), B, 1],
    label: `ssm_scan_chunk_carry_${tag}`,
    bindings: b2,
    f16: false,
  };

  // pass 3
  const b3 = actBindings(s, act, bc, true);
  b3.push({ name: "chunk_state", access: "read", type: "f32" });
  b3.push({ name: "y", access: "read_write", type: act });
  const init3: string[] = [];
  for (let n = 0; n < N; n++) init3.push(`  var h${n}: f32 = chunk_state[sbase + ${n}u];`);
  const code3 = `${header}
  let d_skip = params[${lay.d}u + i];
${init3.join("\n")}
${scanLoop(s, act, bc, "output")}
}
`;
  const k3: Kernel = {
    code: code3,
    workgroups: [Math.ceil(I / CB), NC, B],
    label: `ssm_scan_chunk_output_${tag}`,
    bindings: b3,
    f16: act === "f16",
  };
  for (const k of [k1, k2, k3]) {
    checkBindings(k.label, k.bindings, maxB);
    checkGrid(k.label, k.workgroups);
  }
  return {
    kernels: [k1, k2, k3],
    scratch: [
      { name: "chunk_sum", type: "f32", elements: B * NC * I },
      { name: "chunk_state", type: "f32", elements: B * NC * I * N },
    ],
    chunk,
    chunks: NC,
    channelBlock: CB,
  };
}

// ---------------------------------------------------------------- conv

/** Spec of the causal depthwise conv1d. */
export interface ConvSpec {
  /** Batch B. */
  batch: number;
  /** Length L. */
  length: number;
  /** Channels I. */
  channels: number;
  /** Kernel width k. */
  kernel: number;
  /** Activation type of x and y; default "f32". */
  act?: ActType;
  /** Fuse silu on the output. */
  silu?: boolean;
  /** Bind `conv_state` `[B, I, S]` (f32) as the prefix before t = 0. */
  prefixState?: boolean;
  /** S: k − 1 or k (HF keeps k); default k − 1. */
  stateLen?: number;
  /** Params layout holding convW/convB; default `mixerParamsLayout(I, 0, k)`. */
  layout?: ParamsLayout;
  /** Time steps per thread; default 64. */
  timeTile?: number;
}

function validateConv(s: ConvSpec): number {
  checkInt("batch", s.batch, 1);
  checkInt("length", s.length, 1);
  checkInt("channels", s.channels, 1);
  checkInt("kernel", s.kernel, 1);
  const S = s.stateLen ?? s.kernel - 1;
  if (!Number.isInteger(S) || S < s.kernel - 1) {
    throw new RangeError(
      `Expected stateLen to be an integer >= kernel - 1 (${s.kernel - 1}), got ${S}`,
    );
  }
  return S;
}

/**
 * Causal depthwise conv1d: y[b,t,i] = bias[i] + Σⱼ w[i,j]·x[b, t−(k−1)+j, i],
 * positions before 0 read from `conv_state` (slot S−1 newest) or zeros.
 * Each thread owns one channel and a tile of time steps and slides a k-wide
 * window in registers, so each x is read about once.
 * Bindings: x, params, [conv_state], y.
 *
 * @example
 * ```ts
 * const k = emitCausalConv1d({ batch: 1, length: 512, channels: 1536, kernel: 4, silu: true });
 * ```
 */
export function emitCausalConv1d(s: ConvSpec): Kernel {
  const S = validateConv(s);
  const act = s.act ?? "f32";
  const K = s.kernel, I = s.channels;
  const TT = s.timeTile ?? 64;
  const WG = 64;
  const lay = s.layout ?? mixerParamsLayout(I, 0, K);
  const bindings: KernelBinding[] = [
    { name: "x", access: "read", type: act },
    { name: "params", access: "read", type: "f32" },
  ];
  if (s.prefixState) bindings.push({ name: "conv_state", access: "read", type: "f32" });
  bindings.push({ name: "y", access: "read_write", type: act });
  const lines: string[] = [];
  for (let j = 0; j < K; j++) {
    lines.push(`  let w${j} = params[${lay.convW}u + i * ${K}u + ${j}u];`);
  }
  lines.push(`  let bias = params[${lay.convB}u + i];`);
  // Window registers v0..v(k-2) hold positions t-(k-1) .. t-1.
  for (let j = 0; j < K - 1; j++) {
    lines.push(`  var v${j}: f32 = load_x(b, i32(t0) - ${K - 1 - j}, i);`);
  }
  lines.push(`  for (var t = t0; t < t1; t = t + 1u) {`);
  lines.push(`    let cur = f32(x[(b * K_L + t) * K_I + i]);`);
  const terms = [`bias`];
  for (let j = 0; j < K - 1; j++) terms.push(`w${j} * v${j}`);
  terms.push(`w${K - 1} * cur`);
  lines.push(`    var acc = ${terms.join(" + ")};`);
  if (s.silu) lines.push(`    acc = silu_f(acc);`);
  lines.push(`    y[(b * K_L + t) * K_I + i] = ${act}(acc);`);
  for (let j = 0; j < K - 2; j++) lines.push(`    v${j} = v${j + 1};`);
  if (K > 1) lines.push(`    v${K - 2} = cur;`);
  lines.push(`  }`);
  const code = `const K_L: u32 = ${s.length}u;
const K_I: u32 = ${I}u;
const K_S: i32 = ${S};
${MATH_FNS}
fn load_x(b: u32, p: i32, i: u32) -> f32 {
  if (p >= 0) { return f32(x[(b * K_L + u32(p)) * K_I + i]); }
  ${s.prefixState ? "return conv_state[(b * K_I + i) * u32(K_S) + u32(K_S + p)];" : "return 0.0;"}
}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = wid.x * ${WG}u + lid.x;
  if (i >= K_I) { return; }
  let b = wid.z;
  let t0 = wid.y * ${TT}u;
  let t1 = min(t0 + ${TT}u, K_L);
${lines.join("\n")}
}
`;
  const label = `ssm_causal_conv1d_B${s.batch}_L${s.length}_I${I}_k${K}_${act}${
    s.silu ? "_silu" : ""
  }`;
  const workgroups: [number, number, number] = [
    Math.ceil(I / WG),
    Math.ceil(s.length / TT),
    s.batch,
  ];
  checkGrid(label, workgroups);
  return { code, workgroups, label, bindings, f16: act === "f16" };
}

/**
 * New conv state after a prefill: the last S inputs of (old state ++ x),
 * written in place into `conv_state` `[B, I, S]` (f32). One thread per
 * (b, channel) reads its whole old row before writing, so in place is safe.
 * Dispatch it after {@linkcode emitCausalConv1d} (which reads the old state).
 * Bindings: x, conv_state.
 *
 * @example
 * ```ts
 * const k = emitConvStateUpdate({ batch: 1, length: 512, channels: 1536, kernel: 4, stateLen: 4 });
 * ```
 */
export function emitConvStateUpdate(s: ConvSpec): Kernel {
  const S = validateConv(s);
  const act = s.act ?? "f32";
  const I = s.channels, L = s.length;
  const WG = 64;
  const bindings: KernelBinding[] = [
    { name: "x", access: "read", type: act },
    { name: "conv_state", access: "read_write", type: "f32" },
  ];
  const lines: string[] = [];
  for (let j = 0; j < S; j++) {
    lines.push(`  let o${j} = ${s.prefixState ? `conv_state[base + ${j}u]` : "0.0"};`);
  }
  for (let sl = 0; sl < S; sl++) {
    const p = L - S + sl;
    // p < 0: the slot comes from the old state, slot S + p.
    const src = p >= 0 ? `f32(x[(b * ${L}u + ${p}u) * ${I}u + i])` : `o${S + p}`;
    lines.push(`  conv_state[base + ${sl}u] = ${src};`);
  }
  const code = `@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = wid.x * ${WG}u + lid.x;
  if (i >= ${I}u) { return; }
  let b = wid.y;
  let base = (b * ${I}u + i) * ${S}u;
${lines.join("\n")}
}
`;
  const label = `ssm_conv_state_update_B${s.batch}_L${L}_I${I}_S${S}`;
  return { code, workgroups: [Math.ceil(I / WG), s.batch, 1], label, bindings, f16: act === "f16" };
}

// ---------------------------------------------------------------- decode

/** Spec of the recurrent single-token decode step. */
export interface DecodeSpec {
  /** Batch B (one token per row). */
  batch: number;
  /** Channels I. */
  channels: number;
  /** State size N. */
  state: number;
  /** Conv kernel width k. */
  kernel: number;
  /** Conv state length S (k − 1 or k); default k. */
  stateLen?: number;
  /** Activation type of x, delta, B, C, z, y; default "f32". */
  act?: ActType;
  /** Raw delta with fused softplus(delta + dtBias). */
  deltaSoftplus?: boolean;
  /** Bind z and gate. */
  gate?: boolean;
  /** Packed B/C rows (one row per batch element). */
  bc?: BcLayout;
  /** Params layout; default `mixerParamsLayout(I, N, k)`. */
  layout?: ParamsLayout;
  /** Max storage buffers per kernel; default 8. */
  maxBindings?: number;
}

/**
 * One decode step for B tokens: shifts `conv_state` `[B, I, S]` left and
 * appends x_t, u = silu(conv), then updates `ssm_state` `[B, I, N]` in place
 * and writes y `[B, I]`. Work is O(I·(N + k)): independent of the context.
 * Bindings: x, delta, (b_mat, c_mat | bc), [z], params, conv_state,
 * ssm_state, y. With z and separate B/C that is 9: use `bc` or `maxBindings`.
 *
 * @example
 * ```ts
 * const k = emitDecodeStep({
 *   batch: 1, channels: 1536, state: 16, kernel: 4, gate: true,
 *   bc: { stride: 32, bOffset: 0, cOffset: 16 },
 * });
 * ```
 */
export function emitDecodeStep(s: DecodeSpec): Kernel {
  checkInt("batch", s.batch, 1);
  checkInt("channels", s.channels, 1);
  checkInt("state", s.state, 1);
  checkInt("kernel", s.kernel, 1);
  const act = s.act ?? "f32";
  const I = s.channels, N = s.state, K = s.kernel;
  const S = s.stateLen ?? K;
  if (!Number.isInteger(S) || S < K - 1) {
    throw new RangeError(`Expected stateLen to be an integer >= kernel - 1 (${K - 1}), got ${S}`);
  }
  const lay = s.layout ?? mixerParamsLayout(I, N, K);
  const WG = 64;
  // Reuse the scan's B/C addressing with L = 1: row index r = b.
  const bc = bcAccess({ batch: s.batch, length: 1, channels: I, state: N, bc: s.bc }, act);
  const bindings: KernelBinding[] = [
    { name: "x", access: "read", type: act },
    { name: "delta", access: "read", type: act },
    ...bc.bindings,
  ];
  if (s.gate) bindings.push({ name: "z", access: "read", type: act });
  bindings.push({ name: "params", access: "read", type: "f32" });
  bindings.push({ name: "conv_state", access: "read_write", type: "f32" });
  bindings.push({ name: "ssm_state", access: "read_write", type: "f32" });
  bindings.push({ name: "y", access: "read_write", type: act });
  const label = `ssm_decode_step_B${s.batch}_I${I}_N${N}_k${K}_${act}`;
  checkBindings(label, bindings, s.maxBindings ?? 8);
  const L: string[] = [];
  L.push(`  let xt = f32(x[b * K_I + i]);`);
  L.push(`  let cs = (b * K_I + i) * ${S}u;`);
  for (let j = 0; j < S; j++) L.push(`  let o${j} = conv_state[cs + ${j}u];`);
  // Window = last k−1 old slots + x_t, so S = k − 1 and S = k both work.
  const terms = [`params[${lay.convB}u + i]`, `params[${lay.convW}u + i * ${K}u + ${K - 1}u] * xt`];
  for (let j = 0; j < K - 1; j++) {
    terms.push(`params[${lay.convW}u + i * ${K}u + ${j}u] * o${S - (K - 1) + j}`);
  }
  L.push(`  let u_t = silu_f(${terms.join(" + ")});`);
  for (let j = 0; j < S - 1; j++) L.push(`  conv_state[cs + ${j}u] = o${j + 1};`);
  L.push(`  conv_state[cs + ${S - 1}u] = xt;`);
  L.push(
    s.deltaSoftplus
      ? `  let dt = softplus_f(f32(delta[b * K_I + i]) + params[${lay.dtBias}u + i]);`
      : `  let dt = f32(delta[b * K_I + i]);`,
  );
  L.push(`  let du = dt * u_t;`);
  L.push(`  let bb = ${bc.bBase("b")};`);
  L.push(`  let cb = ${bc.cBase("b")};`);
  L.push(`  let hs = (b * K_I + i) * K_N;`);
  L.push(`  var acc = params[${lay.d}u + i] * u_t;`);
  for (let n = 0; n < N; n++) {
    L.push(
      `  let h${n} = fma(exp2(dt * params[${lay.a}u + i * K_N + ${n}u] * ${LOG2E}), ssm_state[hs + ${n}u], du * ${
        bc.bLoad("bb", n)
      });`,
    );
    L.push(`  ssm_state[hs + ${n}u] = h${n};`);
    L.push(`  acc = fma(h${n}, ${bc.cLoad("cb", n)}, acc);`);
  }
  if (s.gate) L.push(`  acc = acc * silu_f(f32(z[b * K_I + i]));`);
  L.push(`  y[b * K_I + i] = ${act}(acc);`);
  const code = `const K_I: u32 = ${I}u;
const K_N: u32 = ${N}u;
${MATH_FNS}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = wid.x * ${WG}u + lid.x;
  if (i >= K_I) { return; }
  let b = wid.y;
${L.join("\n")}
}
`;
  return { code, workgroups: [Math.ceil(I / WG), s.batch, 1], label, bindings, f16: act === "f16" };
}

// ---------------------------------------------------------------- bench helper

/**
 * Fused elementwise kernel with the scan's memory traffic (reads u, delta, z
 * `[B, L, I]` and B, C `[B, L, N]`, writes y): the bandwidth ceiling a scan
 * could reach if its math were free. Bindings: u, delta, b_mat, c_mat, z, y.
 *
 * @example
 * ```ts
 * const k = emitScanTrafficKernel({ batch: 1, length: 8192, channels: 1536, state: 16 });
 * ```
 */
export function emitScanTrafficKernel(s: ScanSpec): Kernel {
  validateScan(s);
  const act = s.act ?? "f32";
  const WG = 64;
  const bindings: KernelBinding[] = [
    { name: "u", access: "read", type: act },
    { name: "delta", access: "read", type: act },
    { name: "b_mat", access: "read", type: act },
    { name: "c_mat", access: "read", type: act },
    { name: "z", access: "read", type: act },
    { name: "y", access: "read_write", type: act },
  ];
  // Same thread shape as the scan (thread = channel, loop over a time tile),
  // so B/C rows are read once per workgroup-step as in the scan.
  const TT = 128;
  const code = `const K_L: u32 = ${s.length}u;
const K_I: u32 = ${s.channels}u;
const K_N: u32 = ${s.state}u;
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = wid.x * ${WG}u + lid.x;
  if (i >= K_I) { return; }
  let b = wid.z;
  let t0 = wid.y * ${TT}u;
  let t1 = min(t0 + ${TT}u, K_L);
  for (var t = t0; t < t1; t = t + 1u) {
    let r = b * K_L + t;
    let n = i % K_N;
    let v = f32(u[r * K_I + i]) * f32(delta[r * K_I + i]) * f32(z[r * K_I + i])
      + f32(b_mat[r * K_N + n]) * f32(c_mat[r * K_N + n]);
    y[r * K_I + i] = ${act}(v);
  }
}
`;
  const label = `ssm_traffic_B${s.batch}_L${s.length}_I${s.channels}`;
  const workgroups: [number, number, number] = [
    Math.ceil(s.channels / WG),
    Math.ceil(s.length / TT),
    s.batch,
  ];
  return { code, workgroups, label, bindings, f16: act === "f16" };
}

/**
 * Bytes a scan must move at minimum: u, delta, z in, y out (`[B, L, I]`
 * each) plus B and C (`[B, L, N]` each), at the activation width.
 *
 * @example
 * ```ts
 * scanTrafficBytes({ batch: 1, length: 8192, channels: 1536, state: 16 }); // ≈ 202 MB
 * ```
 */
export function scanTrafficBytes(s: ScanSpec): number {
  const w = (s.act ?? "f32") === "f16" ? 2 : 4;
  return w * s.batch * s.length * (4 * s.channels + 2 * s.state);
}
