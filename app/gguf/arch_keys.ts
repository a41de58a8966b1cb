/**
 * Reading a GGUF file's model keys (`Keys`) and, shared by the hybrid
 * families, which of its layers attend.
 *
 * @module
 */

import { quote } from "../safetensors/header.ts";
import type { GgufMetadata } from "./metadata.ts";
import type { GgufTensorInfo } from "./types.ts";
import { perExpertName } from "./arch_names.ts";

/**
 * The shortest decimal that rounds to the same f32 as `v` (GGUF stores most
 * floats as f32; config.json holds the decimal the model was published with).
 *
 * @example
 * ```ts
 * import { f32Decimal } from "./arch_keys.ts";
 * f32Decimal(Math.fround(1e-5)); // 0.00001
 * ```
 */
export function f32Decimal(v: number): number {
  if (!Number.isFinite(v) || v === 0) return v;
  const f = Math.fround(v);
  for (let p = 1; p <= 9; p++) {
    const d = Number(f.toPrecision(p));
    if (Math.fround(d) === f) return d;
  }
  return f;
}

/**
 * The model's metadata keys of one GGUF file (`<arch>.<key>`), with errors
 * naming the file and the key, and which tensors it holds.
 *
 * @example
 * ```ts ignore
 * const k = new Keys(metadata, "jamba", tensors);
 * k.num("block_count");
 * ```
 */
export class Keys {
  constructor(
    readonly m: GgufMetadata,
    readonly arch: string,
    readonly tensors: ReadonlyMap<string, GgufTensorInfo>,
  ) {}

  key(s: string): string {
    return `${this.arch}.${s}`;
  }
  num(s: string): number {
    return this.float(s, this.m.number(this.key(s)));
  }
  opt(s: string): number | undefined {
    const v = this.m.optionalNumber(this.key(s));
    return v === undefined ? undefined : this.float(s, v);
  }
  float(s: string, v: number): number {
    return this.m.type(this.key(s)) === "f32" ? f32Decimal(v) : v;
  }
  /** A key llama.cpp reads with `get_key_or_arr`: one value, or one per layer. */
  perLayer(s: string, layers: number): number[] | undefined {
    const k = this.key(s);
    if (!this.m.has(k)) return undefined;
    if (this.m.type(k) !== "array") return Array(layers).fill(this.m.number(k));
    const a = this.m.array(k).values;
    if (a.length !== layers || !a.every((v) => typeof v === "number")) {
      throw new RangeError(
        `${this.m.path}: metadata ${quote(k)} holds ${a.length} values, expected ${layers} ` +
          `numbers (one per layer, ${this.key("block_count")})`,
      );
    }
    return a as number[];
  }
  has(tensor: string): boolean {
    return this.tensors.has(tensor);
  }
  /** Layers with a MoE block: a router, or stacked / per-expert expert tensors. */
  moeLayers(layers: number): number[] {
    const out: number[] = [];
    for (let i = 0; i < layers; i++) {
      const b = `blk.${i}.ffn_gate_inp.weight`;
      const s = `blk.${i}.ffn_up_exps.weight`;
      if (this.has(b) || this.has(s) || this.has(perExpertName(s, 0)!)) out.push(i);
    }
    return out;
  }
}

/**
 * Which layers attend: `attention.head_count_kv` per layer (0: an SSM layer),
 * else the tensors present; and their KV heads (equal in every one of them).
 *
 * @example
 * ```ts ignore
 * const { attn, kv } = attentionLayers(k, 32);
 * ```
 */
export function attentionLayers(k: Keys, L: number): { attn: number[]; kv: number } {
  const heads = k.num("attention.head_count");
  const kvArr = k.perLayer("attention.head_count_kv", L);
  const perLayer = k.m.type(k.key("attention.head_count_kv")) === "array";
  const attn = Array.from({ length: L }, (_, i) => i).filter((i) =>
    perLayer ? kvArr![i] > 0 : k.has(`blk.${i}.attn_q.weight`)
  );
  const kvs = new Set(attn.map((i) => kvArr?.[i] ?? heads));
  if (kvs.size > 1) {
    throw new RangeError(
      `${k.m.path}: metadata ${quote(k.key("attention.head_count_kv"))} gives attention layers ` +
        `different KV head counts (${[...kvs].join(", ")}); ${k.arch}'s are all equal`,
    );
  }
  return { attn, kv: attn.length > 0 ? kvArr?.[attn[0]] ?? heads : heads };
}
