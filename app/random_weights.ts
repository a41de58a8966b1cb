/**
 * Seeded random weights for any config Kiln can build, written as a Hugging Face
 * folder (`config.json` + `model.safetensors`, F32). The demo and benchmarks load
 * such a folder with `loadModel`, so they exercise the same reader, name mapping
 * and shape checks as a downloaded checkpoint — without a download.
 *
 * Tensor names come from the model graph itself ({@linkcode checkpointSources}),
 * so every architecture the builder knows is covered. Values are scaled for a
 * well-conditioned forward pass: linear weights uniform ±√(3/fan_in) (unit-RMS in,
 * unit-RMS out), RMSNorm gains near 1, Mamba's A_log = log(1..N) and step sizes
 * log-uniform in [0.001, 0.1] as Mamba's own init draws them.
 *
 * @example
 * ```ts ignore
 * import { writeRandomCheckpoint } from "../models/models/random_weights.ts";
 * const dir = await Deno.makeTempDir();
 * await writeRandomCheckpoint(dir, { architectures: ["MambaForCausalLM"], vocab_size: 256,
 *   hidden_size: 64, num_hidden_layers: 2, state_size: 8 });
 * ```
 *
 * @module
 */

import { buildCausalLM, checkpointSources } from "../models/causal_lm.ts";
import { fusedTensors, parseConfig } from "../models/architectures/mod.ts";
import { configJson } from "./config_file.ts";

/** What {@linkcode writeRandomCheckpoint} wrote. */
export interface RandomCheckpoint {
  /** Parameters (elements) in model.safetensors. */
  readonly parameters: number;
  /** Bytes of model.safetensors. */
  readonly bytes: number;
}

/**
 * Checkpoint tensor name → HF shape, in graph parameter order: the tensors a
 * checkpoint of `config` holds (what {@linkcode writeRandomCheckpoint} writes).
 *
 * @example
 * ```ts
 * import { tensorShapes } from "./random_weights.ts";
 * const shapes = tensorShapes({
 *   architectures: ["MambaForCausalLM"], vocab_size: 8, hidden_size: 4, state_size: 2,
 *   num_hidden_layers: 1, conv_kernel: 2, time_step_rank: 1,
 * });
 * shapes.get("backbone.embeddings.weight"); // [8, 4]
 * ```
 */
export function tensorShapes(config: Record<string, unknown>): Map<string, number[]> {
  const cfg = parseConfig(config);
  // A one-token graph is enough to enumerate the parameters; nothing is allocated.
  const graph = buildCausalLM(cfg, { mode: "prefill", maxSeq: 1, maxNew: 1 });
  const out = new Map<string, number[]>();
  for (const [name, src] of checkpointSources(cfg, graph)) {
    const shape = graph.values[graph.params.get(name)!].shape as number[];
    // Stacked MoE experts: one checkpoint tensor per expert, without the E axis.
    const each = src.stacked ? shape.slice(1) : shape;
    for (const t of src.tensors) {
      // nn.Conv1d stores its depthwise kernel as [I, 1, k]; the loader squeezes the 1.
      out.set(t, /conv1d\.weight$/.test(t) && each.length === 2 ? [each[0], 1, each[1]] : each);
    }
  }
  // Tensors the family stores fused (Granite's input_linear) replace their parts.
  const fused = fusedTensors(cfg);
  if (fused.length === 0) return out;
  const first = new Map(fused.map((f) => [f.parts[0], f]));
  const part = new Set(fused.flatMap((f) => f.parts));
  const joined = new Map<string, number[]>();
  for (const [name, shape] of out) {
    const f = first.get(name);
    if (f) joined.set(f.name, [...f.shape]);
    else if (!part.has(name)) joined.set(name, shape);
  }
  return joined;
}

/** How a tensor's values are drawn, from its name. */
function initFor(name: string, shape: number[], tied: boolean) {
  const last = shape[shape.length - 1];
  if (/(norm|layernorm|norm_f)\.weight$/.test(name)) return { lo: 0.9, hi: 1.1 };
  if (/embed_tokens\.weight$|embeddings\.weight$/.test(name)) {
    // Tied embeddings are also the LM head: scale for O(1) logits.
    const s = Math.sqrt(3) * (tied ? 1 / Math.sqrt(last) : 1);
    return { lo: -s, hi: s };
  }
  if (/\.D$/.test(name)) return { lo: 0.8, hi: 1.2 };
  if (/\.bias$|_proj_bias$/.test(name) && !/dt_proj\.bias$/.test(name)) {
    return { lo: -0.1, hi: 0.1 };
  }
  // GPT-OSS stores its experts [E, in, out]: the fan-in is the middle axis.
  const fanIn = /experts\.(gate_up|down)_proj$/.test(name) ? shape[1] : last;
  const b = Math.sqrt(3 / fanIn); // else the last axis ([out, in], conv [I, 1, k])
  return { lo: -b, hi: b };
}

/**
 * Writes `dir/config.json` (the given object) and `dir/model.safetensors` with
 * seeded random weights for every tensor the model reads: F32, or F16 with
 * `dtype: "F16"` (the same draws rounded, half the bytes). Tensors are drawn
 * and written one at a time, so host memory stays at one tensor.
 */
export async function writeRandomCheckpoint(
  dir: string,
  config: Record<string, unknown>,
  options: { seed?: number; dtype?: "F32" | "F16" } = {},
): Promise<RandomCheckpoint> {
  const half = options.dtype === "F16";
  const el = half ? 2 : 4;
  const shapes = tensorShapes(config);
  const tied = parseConfig(config).tieEmbeddings;
  const header: Record<string, unknown> = { __metadata__: { format: "pt" } };
  let offset = 0;
  for (const [name, shape] of shapes) {
    const bytes = shape.reduce((a, b) => a * b, 1) * el;
    header[name] = { dtype: half ? "F16" : "F32", shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  json += " ".repeat((8 - (json.length % 8)) % 8); // data starts 8-byte aligned, as safetensors writes
  await Deno.mkdir(dir, { recursive: true });
  await Deno.writeTextFile(`${dir}/config.json`, configJson(config));
  const file = await Deno.open(`${dir}/model.safetensors`, {
    write: true,
    create: true,
    truncate: true,
  });
  try {
    const len = new Uint8Array(8);
    new DataView(len.buffer).setBigUint64(0, BigInt(json.length), true);
    await writeAll(file, len);
    await writeAll(file, new TextEncoder().encode(json));
    let state = ((options.seed ?? 0) * 0x9e3779b9 + 0x7f4a7c15) >>> 0;
    const uniform = () => {
      // SplitMix32: seeded and fast enough for tens of millions of weights.
      state = (state + 0x9e3779b9) >>> 0;
      let z = state;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return ((z ^ (z >>> 16)) >>> 0) / 4294967296;
    };
    let parameters = 0;
    for (const [name, shape] of shapes) {
      const n = shape.reduce((a, b) => a * b, 1);
      const data = new Float32Array(n);
      if (/A_log$/.test(name)) {
        const N = shape[shape.length - 1];
        for (let i = 0; i < n; i++) data[i] = Math.log((i % N) + 1);
      } else if (/dt_proj\.bias$/.test(name)) {
        for (let i = 0; i < n; i++) {
          const dt = Math.exp(Math.log(1e-3) + uniform() * Math.log(100));
          data[i] = dt + Math.log(-Math.expm1(-dt)); // softplus⁻¹(dt)
        }
      } else {
        const { lo, hi } = initFor(name, shape, tied);
        for (let i = 0; i < n; i++) data[i] = lo + uniform() * (hi - lo);
      }
      const out = half ? new Float16Array(data) : data;
      await writeAll(file, new Uint8Array(out.buffer, out.byteOffset, out.byteLength));
      parameters += n;
    }
    return { parameters, bytes: 8 + json.length + offset };
  } finally {
    file.close();
  }
}

async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  for (let done = 0; done < bytes.length;) done += await file.write(bytes.subarray(done));
}
