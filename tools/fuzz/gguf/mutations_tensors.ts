/**
 * Mutations of a GGUF file's tensors, for the GGUF fuzzer: tensor infos
 * (dimension counts, dims, ggml types, offsets), consistent changes that keep
 * the header and the data in agreement (another type, another shape, tensors
 * dropped, renamed, added or split per expert), truncation and raw header
 * bytes, and the weights themselves (non-finite, extreme, flipped bits).
 *
 * @module
 */

import {
  GGML_TYPES,
  ggmlTypeById,
  isQuantFormat,
  QUANTIZE_FORMATS,
} from "../../../core/quant/formats.ts";
import {
  enc,
  encodeValues,
  findKv,
  findTensor,
  fit,
  nameOf,
  type RawGguf,
  type RawTensor,
  relayout,
  tensorBytes,
  valuesOf,
} from "./codec.ts";
import type { Op, SeedInfo } from "./op.ts";
import { chance, int, pick, type Rng } from "../../fuzz_loaders/mutate.ts";

/** Whether changing tensor `name` to a different (squeezed) shape must be refused in a model. */
function shapeMatters(s: SeedInfo, g: RawGguf, name: string): boolean {
  if (!s.model) return false;
  // Without <arch>.vocab_size the embedding's rows are the vocabulary.
  return !(name === "token_embd.weight" && !findKv(g, `${s.arch}.vocab_size`));
}

/** ggml type ids Kiln reads, and those it refuses by name. */
const READ_IDS = Object.values(GGML_TYPES).filter((t) => t.supported).map((t) => t.id);
const UNREAD_IDS = Object.values(GGML_TYPES).filter((t) => !t.supported).map((t) => t.id);

const squeeze = (dims: readonly bigint[]) => dims.filter((d) => d !== 1n).join(",");

/** Tensor infos: dimension counts, dims, ggml types, offsets. */
export function tensorOp(r: Rng, g: RawGguf, s: SeedInfo): Op | undefined {
  if (g.tensors.length === 0) return undefined;
  const i = int(r, g.tensors.length);
  const t = g.tensors[i];
  const name = nameOf(t);
  const at = (h: RawGguf) => findTensor(h, name);
  // Applied to the tensor of this name in the mutated file (gone when an earlier mutation took it).
  const edit = (fn: (x: RawTensor) => void) => (h: RawGguf) => {
    const x = at(h);
    if (x) fn(x);
  };
  const desc = `tensor ${JSON.stringify(name)}`;
  switch (int(r, 8)) {
    case 0: {
      const nd = pick(r, [0, 5, 8, 2 ** 32 - 1]);
      return {
        what: `${desc}: dimension count ${nd}`,
        refuse: true,
        model: edit((x) => x.nd = nd),
      };
    }
    case 1: {
      // A dimension of 1 added or dropped: the same elements.
      const add = chance(r, 0.5) || t.dims.length === 1;
      if (add && t.dims.length >= 4) return undefined;
      return {
        what: `${desc}: ${add ? "a dimension of 1 added" : "its outer dimension dropped"}`,
        refuse: !add && t.dims.at(-1) !== 1n && shapeMatters(s, g, name),
        model: edit((x) => add ? x.dims.push(1n) : x.dims.pop()),
      };
    }
    case 2:
    case 3: {
      const d = int(r, t.dims.length);
      const old = t.dims[d];
      const v = pick(r, [
        0n,
        2n ** 64n - 1n,
        2n ** 63n,
        2n ** 53n,
        2n ** 32n,
        old + 1n,
        old * 2n,
        old - 1n,
        1n,
        old / 2n,
      ]);
      if (v === old) return undefined;
      const dims = t.dims.slice();
      dims[d] = v;
      const signed = BigInt.asIntN(64, v);
      // 0, negative and ≥ 2^53 are invalid; more data than the file holds too.
      const invalid = signed <= 0n || v >= 2n ** 32n;
      return {
        what: `${desc}: dims[${d}] ${v} (was ${old})`,
        refuse: invalid || (squeeze(dims) !== squeeze(t.dims) && shapeMatters(s, g, name)),
        model: edit((x) => {
          if (x.dims.length > d) x.dims[d] = v;
        }),
      };
    }
    case 4: {
      // Dims whose product overflows 2^53 (each one fine on its own).
      const dims = pick(r, [[2n ** 20n, 2n ** 20n, 2n ** 20n, 2n ** 20n], [2n ** 27n, 2n ** 27n], [
        2n ** 52n,
        4n,
      ]]);
      return {
        what: `${desc}: dims [${dims.join(", ")}]`,
        refuse: true,
        model: edit((x) => x.dims = dims.slice()),
      };
    }
    case 5: {
      const kind = int(r, 3);
      // Unknown ids (4 and 5 are retired q4_2/q4_3), types Kiln does not read, types it does.
      const id = kind === 0
        ? pick(r, [4, 5, 31, 32, 33, 36, 37, 38, 43, 100, 255, 2 ** 31, 2 ** 32 - 1])
        : pick(r, kind === 1 ? UNREAD_IDS : READ_IDS);
      if (id === t.type) return undefined;
      return {
        what: `${desc}: ggml type id ${id} (${ggmlTypeById(id)?.name ?? "unknown"}; was ${
          ggmlTypeById(t.type)?.name
        }), data left as it was`,
        refuse: kind < 2,
        model: edit((x) => x.type = id),
      };
    }
    default: {
      const others = g.tensors.filter((x) => x !== t);
      const kind = int(r, 4);
      const end = BigInt(g.data.length);
      const align = BigInt(g.align);
      if (kind === 0) {
        const delta = pick(r, [1n, 2n, 4n, 8n, 16n, align / 2n]);
        if (delta % align === 0n) return undefined;
        return {
          what: `${desc}: offset + ${delta} (misaligned)`,
          refuse: true,
          model: edit((x) => x.offset += delta),
        };
      }
      if (kind === 1) {
        const v = pick(r, [end, end + align, 2n ** 40n, 2n ** 64n - align, 2n ** 63n]);
        return {
          what: `${desc}: offset ${v} (past the end of the data)`,
          refuse: true,
          model: edit((x) => x.offset = v),
        };
      }
      if (others.length === 0) return undefined;
      const o = pick(r, others);
      const oname = nameOf(o);
      if (kind === 2) {
        return {
          what: `${desc}: offset of ${JSON.stringify(oname)} (overlapping)`,
          refuse: true,
          model: (h) => {
            const x = at(h), y = findTensor(h, oname);
            if (x && y) x.offset = y.offset;
          },
        };
      }
      return {
        what: `${desc}: offsets swapped with ${JSON.stringify(oname)}`,
        model: (h) => {
          const x = at(h), y = findTensor(h, oname);
          if (x && y) [x.offset, y.offset] = [y.offset, x.offset];
        },
      };
    }
  }
}

/** Consistent changes of the tensors: the header agrees with the data, the model may not. */
export function relayoutOp(r: Rng, g: RawGguf, s: SeedInfo): Op | undefined {
  if (g.tensors.length === 0) return undefined;
  const t = pick(r, g.tensors);
  const name = nameOf(t);
  const desc = `tensor ${JSON.stringify(name)}`;
  switch (int(r, 5)) {
    case 0: {
      // Re-encoded in another type Kiln reads and writes: still a valid file and model.
      const type = pick(r, ["f32", "f16", "bf16", ...QUANTIZE_FORMATS] as const);
      const info = GGML_TYPES[type];
      if (Number(t.dims[0]) % info.blockElems !== 0 || info.id === t.type) return undefined;
      return {
        what: `${desc} re-encoded as ${type}`,
        model: (h) => {
          const x = findTensor(h, name);
          if (!x) return;
          relayout(h, (y, old) => {
            if (y !== x || !old) return old ?? new Uint8Array(0);
            const elems = Number(y.dims.reduce((a, b) => a * b, 1n));
            const v = valuesOf(y.type, old, elems);
            // Non-finite values (an earlier mutation's) do not quantize: keep them as they are.
            if (!v || (isQuantFormat(type) && !v.every(Number.isFinite))) return old;
            y.type = info.id;
            return encodeValues(type, v);
          });
        },
      };
    }
    case 1:
    case 2: {
      // Another shape, with data to match (zeros added, or cut).
      const d = int(r, t.dims.length);
      const type = ggmlTypeById(t.type);
      if (!type || d < 0) return undefined;
      const old = t.dims[d];
      const step = d === 0 ? BigInt(type.blockElems) : 1n;
      const v = pick(r, [old + step, old * 2n, old > step ? old - step : old + step, step]);
      if (v === old) return undefined;
      const dims = t.dims.slice();
      dims[d] = v;
      const swap = t.dims.length >= 2 && chance(r, 0.3) &&
        Number(t.dims[1]) % type.blockElems === 0;
      const next = swap ? [t.dims[1], t.dims[0], ...t.dims.slice(2)] : dims;
      if (squeeze(next) === squeeze(t.dims)) return undefined;
      // (An earlier mutation may have made the dims huge: this one writes real data.)
      const size = tensorBytes({ ...t, dims: next });
      if (size === undefined || size > 1 << 26) return undefined;
      return {
        what: `${desc}: dims [${next.join(", ")}] (was [${t.dims.join(", ")}]), data to match`,
        refuse: shapeMatters(s, g, name),
        model: (h) => {
          const x = findTensor(h, name);
          if (!x) return;
          x.dims = next.slice();
          relayout(h, (y, o) => y === x ? fit(o, tensorBytes(y) ?? 0) : o ?? new Uint8Array(0));
        },
      };
    }
    case 3: {
      // A tensor dropped, renamed, or added.
      const how = int(r, 3);
      if (how === 0) {
        // Without output.weight the embeddings are tied; biases are read from presence.
        return {
          what: `${desc} removed (its data left)`,
          refuse: s.model && name !== "output.weight" && !name.endsWith(".bias"),
          model: (h) => {
            h.tensors = h.tensors.filter((z) => nameOf(z) !== name);
          },
        };
      }
      const to = pick(r, [
        "blk.0.extra.weight",
        "blk.99.attn_q.weight",
        `${name}.x`,
        name.replace("blk.0.", "blk.1."),
        "output.weight",
        "blk.0.ffn_gate.0.weight",
      ]);
      if (to === name || g.tensors.some((z) => nameOf(z) === to)) return undefined;
      if (how === 1) {
        return {
          what: `${desc} renamed ${JSON.stringify(to)}`,
          refuse: s.model,
          model: (h) => {
            const x = findTensor(h, name);
            if (x) x.name = { bytes: enc.encode(to) };
          },
        };
      }
      return {
        what: `a copy of ${desc} added as ${JSON.stringify(to)}, with its own data`,
        // A copy named output.weight unties a tied model: maybe still valid.
        refuse: s.model && to !== "output.weight",
        model: (h) => {
          const x = findTensor(h, name);
          if (!x) return;
          const copy = structuredClone(x);
          copy.name = { bytes: enc.encode(to) };
          h.tensors.push(copy);
          relayout(h);
        },
      };
    }
    default: {
      // Stacked experts split into llama.cpp's older per-expert tensors: valid.
      const stacked = g.tensors.filter((z) =>
        /^blk\.\d+\.ffn_(gate|up|down)_exps\.weight$/.test(nameOf(z))
      );
      if (stacked.length === 0) return undefined;
      const x0 = pick(r, stacked);
      const sname = nameOf(x0);
      const drop = chance(r, 0.2);
      return {
        what: `${JSON.stringify(sname)} split into per-expert tensors${
          drop ? ", the last one missing" : ""
        }`,
        refuse: drop,
        model: (h) => {
          const x = findTensor(h, sname);
          const n = x && tensorBytes(x);
          if (!x || n === undefined) return;
          const E = Number(x.dims.at(-1));
          const data = h.data.subarray(Number(x.offset), Number(x.offset) + n);
          const slice = n / E;
          const base = sname.replace(/_exps\.weight$/, "");
          const parts: RawTensor[] = [];
          const bytes = new Map<RawTensor, Uint8Array>();
          for (let e = 0; e < (drop ? E - 1 : E); e++) {
            const p: RawTensor = {
              name: { bytes: enc.encode(`${base}.${e}.weight`) },
              dims: x.dims.slice(0, -1),
              type: x.type,
              offset: 0n,
            };
            parts.push(p);
            bytes.set(p, data.slice(e * slice, (e + 1) * slice));
          }
          const i = h.tensors.indexOf(x);
          h.tensors.splice(i, 1, ...parts);
          relayout(h, (y, o) => bytes.get(y) ?? o ?? new Uint8Array(0));
        },
      };
    }
  }
}

/** Truncation at a section boundary (or a byte either side), and raw byte edits of the header. */
export function byteOp(r: Rng): Op {
  switch (int(r, 3)) {
    case 0:
    case 1: {
      const k = r();
      const delta = pick(r, [0, 0, -1, 1]);
      return {
        what: `truncated at a section boundary (${delta >= 0 ? "+" : ""}${delta})`,
        bytes: (b, l) => {
          const bound = l.bounds[Math.floor(k * l.bounds.length)];
          const cut = Math.max(0, Math.min(b.length, bound.at + delta));
          return {
            bytes: b.slice(0, cut),
            refuse: cut < l.needed,
            what: `truncated at byte ${cut} of ${b.length} (${bound.what}${
              delta ? ` ${delta > 0 ? "+" : ""}${delta}` : ""
            })`,
          };
        },
      };
    }
    default: {
      const how = int(r, 3);
      const k1 = r(), k2 = r(), count = 1 + int(r, 4);
      const bits = Array.from({ length: count }, () => [r(), int(r, 8)] as const);
      return {
        what: ["header bytes flipped", "bytes inserted in the header", "header bytes deleted"][how],
        bytes: (b, l) => {
          const end = Math.max(1, l.headerEnd);
          if (how === 0) {
            const out = b.slice();
            const where = bits.map(([p, bit]) => {
              const i = Math.floor(p * end);
              out[i] ^= 1 << bit;
              return `${i}^${1 << bit}`;
            });
            return { bytes: out, what: `header bytes flipped: ${where.join(", ")}` };
          }
          const at = Math.min(b.length, Math.floor(k1 * end));
          const n = 1 + Math.floor(k2 * 8);
          if (how === 1) {
            const out = new Uint8Array(b.length + n);
            out.set(b.subarray(0, at));
            out.fill(Math.floor(k2 * 256), at, at + n);
            out.set(b.subarray(at), at + n);
            return { bytes: out, what: `${n} bytes inserted at ${at}` };
          }
          const cut = Math.min(n, b.length - at);
          const out = new Uint8Array(b.length - cut);
          out.set(b.subarray(0, at));
          out.set(b.subarray(at + cut), at);
          return { bytes: out, what: `${cut} header bytes deleted at ${at}` };
        },
      };
    }
  }
}

/** Non-finite and extreme weights, and flipped data bytes (judged by loading and running). */
export function dataOp(r: Rng, g: RawGguf, s: SeedInfo): Op | undefined {
  if (g.tensors.length === 0) return undefined;
  const t = pick(r, g.tensors);
  const name = nameOf(t);
  const type = ggmlTypeById(t.type);
  const n = tensorBytes(t);
  if (!type || n === undefined || Number(t.offset) + n > g.data.length) return undefined;
  const elems = (n / type.blockBytes) * type.blockElems;
  const how = int(r, 3);
  const k = r();
  const desc = `tensor ${JSON.stringify(name)} (${type.name})`;
  const edit = (fn: (d: DataView, at: number) => void) => (h: RawGguf) => {
    const x = findTensor(h, name);
    if (!x) return;
    const data = h.data.slice();
    fn(new DataView(data.buffer), Number(x.offset));
    h.data = data;
  };
  if (how === 2) {
    const flips = Array.from({ length: 1 + int(r, 4) }, () => [r(), int(r, 8)] as const);
    return {
      what: `${desc}: ${flips.length} data bits flipped`,
      kind: "data/flip",
      run: true,
      model: edit((d, at) => {
        for (const [p, bit] of flips) {
          const i = at + Math.floor(p * n);
          d.setUint8(i, d.getUint8(i) ^ (1 << bit));
        }
      }),
    };
  }
  const nonFinite = how === 0;
  const v = nonFinite ? pick(r, [NaN, Infinity, -Infinity]) : pick(r, [3e38, -3e38, 65504, 1e30]);
  if (type.blockElems === 1) {
    const i = Math.floor(k * elems);
    return {
      what: `${desc}[${i}] = ${v}`,
      kind: nonFinite ? "data/nonfinite" : "data/extreme",
      refuse: nonFinite && s.model,
      run: true,
      model: edit((d, at) => {
        if (type.name === "f32") d.setFloat32(at + 4 * i, v, true);
        else if (type.name === "f16") d.setFloat16(at + 2 * i, v, true);
        else d.setUint16(at + 2 * i, new Uint32Array(new Float32Array([v]).buffer)[0] >>> 16, true);
      }),
    };
  }
  // A block's f16 scale: d at the start of q8_0/q4_0/q4_k/q5_k blocks, at the end of q6_k's.
  const block = Math.floor(k * (n / type.blockBytes));
  const field = type.name === "q6_k"
    ? type.blockBytes - 2
    : type.name.endsWith("_k") && chance(r, 0.3)
    ? 2
    : 0;
  const fv = nonFinite ? v : 65504;
  return {
    what: `${desc}: block ${block} scale (byte ${field}) = f16 ${fv}`,
    kind: nonFinite ? "data/nonfinite-scale" : "data/extreme-scale",
    refuse: nonFinite && s.model,
    run: true,
    model: edit((d, at) => d.setFloat16(at + block * type.blockBytes + field, fv, true)),
  };
}
