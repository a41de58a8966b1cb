import assert from "node:assert/strict";
import { mulberry32 } from "../core/random.ts";
import {
  dequantize,
  GGML_TYPES,
  ggmlTypeById,
  QUANT_FORMATS,
  quantBytes,
  type QuantFormat,
  quantize,
  QUANTIZE_FORMATS,
  type QuantizeFormat,
} from "../core/quant/mod.ts";
import { IMATRIX_ONLY_FORMATS } from "../core/quant/formats.ts";
import { nearestInt, readF16 } from "../core/quant/scalar.ts";

const hex = (a: Uint8Array) => Array.from(a, (b) => b.toString(16).padStart(2, "0")).join("");
const unhex = (s: string) => new Uint8Array(s.match(/../g)!.map((h) => parseInt(h, 16)));
const f16 = (v: number) => {
  const u = new Uint16Array(new Float16Array([v]).buffer)[0];
  return [u & 0xff, u >> 8];
};
const i8 = (b: number) => (b << 24) >> 24;

/**
 * An element-by-element decoder written from the block layouts alone: for
 * element `e` of a block, which bits hold its code and which bytes its scales.
 * Deliberately shares nothing with the library's block loops.
 */
function simpleDecode(format: QuantizeFormat, b: Uint8Array, elems: number): Float32Array {
  const { blockElems, blockBytes } = GGML_TYPES[format];
  const out = new Float32Array(elems);
  for (let k = 0; k < elems; k++) {
    const blk = b.subarray(Math.floor(k / blockElems) * blockBytes);
    const e = k % blockElems;
    const h16 = (o: number) => new Float16Array(new Uint8Array([blk[o], blk[o + 1]]).buffer)[0];
    // The 6-bit scale / min of K-quant sub-block j, spelled out bit by bit.
    const six = (j: number, isMin: boolean) => {
      const s = blk.subarray(4, 16);
      if (j < 4) return s[isMin ? j + 4 : j] % 64;
      const low4 = isMin ? Math.floor(s[j + 4] / 16) : s[j + 4] % 16;
      const top2 = Math.floor(s[isMin ? j : j - 4] / 64);
      return top2 * 16 + low4;
    };
    let v: number;
    switch (format) {
      case "q8_0":
        v = h16(0) * i8(blk[2 + e]);
        break;
      case "q4_0": {
        const byte = blk[2 + (e % 16)];
        v = h16(0) * ((e < 16 ? byte % 16 : Math.floor(byte / 16)) - 8);
        break;
      }
      case "q4_1":
      case "q5_0":
      case "q5_1": {
        // Nibbles as Q4_0 after the header; the fifth bit of element e is bit e
        // of the little-endian u32 qh (byte floor(e / 8), bit e % 8).
        const [qs, qh] = format === "q4_1" ? [4, -1] : format === "q5_0" ? [6, 2] : [8, 4];
        const byte = blk[qs + (e % 16)];
        let q = e < 16 ? byte % 16 : Math.floor(byte / 16);
        if (qh >= 0) q += 16 * (Math.floor(blk[qh + Math.floor(e / 8)] / 2 ** (e % 8)) % 2);
        v = format === "q5_0" ? h16(0) * (q - 16) : Math.fround(h16(0) * q) + h16(2);
        break;
      }
      case "q4_k":
      case "q5_k": {
        const five = format === "q5_k";
        const byte = blk[(five ? 48 : 16) + 32 * Math.floor(e / 64) + (e % 32)];
        let q = Math.floor(e / 32) % 2 === 0 ? byte % 16 : Math.floor(byte / 16);
        // The fifth bit of element e is bit floor(e / 32) of qh[e % 32].
        if (five) q += 16 * (Math.floor(blk[16 + (e % 32)] / 2 ** Math.floor(e / 32)) % 2);
        const j = Math.floor(e / 32);
        v = h16(0) * six(j, false) * q - h16(2) * six(j, true);
        break;
      }
      case "q2_k":
      case "q3_k": {
        // Two low bits of element e: bits 2k, 2k+1 of byte 32·half + e % 32 of qs.
        const half = Math.floor(e / 128), k = Math.floor(e / 32) % 4;
        const qs = format === "q2_k" ? 16 : 32;
        const low = Math.floor(blk[qs + 32 * half + (e % 32)] / 4 ** k) % 4;
        const j = Math.floor(e / 16); // 16-element sub-block
        if (format === "q2_k") {
          v = Math.fround(h16(80) * (blk[j] % 16)) * low - h16(82) * Math.floor(blk[j] / 16);
        } else {
          // Third bit: bit floor(e / 32) of hmask[e % 32]; clear means 4 is taken off.
          const third = Math.floor(blk[e % 32] / 2 ** Math.floor(e / 32)) % 2;
          const nib = j < 8 ? blk[96 + j] % 16 : Math.floor(blk[96 + j - 8] / 16);
          const top = Math.floor(blk[104 + (j % 4)] / 4 ** Math.floor(j / 4)) % 4;
          v = Math.fround(h16(108) * (nib + 16 * top - 32)) * (low + 4 * third - 4);
        }
        break;
      }
      case "iq4_nl":
      case "iq4_xs": {
        // ggml's kvalues_iq4nl, typed out here rather than imported.
        const T = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113];
        const ib = Math.floor(e / 32), j = e % 32; // 32-element block, element in it
        const qs = format === "iq4_nl" ? 2 : 8 + 16 * ib;
        const code = j < 16 ? blk[qs + j] % 16 : Math.floor(blk[qs + j - 16] / 16);
        let d = h16(0);
        if (format === "iq4_xs") {
          const low = ib % 2 === 0 ? blk[4 + ib / 2] % 16 : Math.floor(blk[4 + (ib - 1) / 2] / 16);
          const high = Math.floor((blk[2] + 256 * blk[3]) / 4 ** ib) % 4;
          d = Math.fround(d * (low + 16 * high - 32));
        }
        v = d * T[code];
        break;
      }
      case "tq1_0": {
        // Five trits a byte (four in qh), the first most significant: trit n of b is
        // ⌊((b·3ⁿ) mod 256)·3 / 256⌋.
        const [at, run] = e < 160 ? [0, 32] : e < 240 ? [160, 16] : [240, 4];
        const byte = blk[[0, 32, 48][[0, 160, 240].indexOf(at)] + ((e - at) % run)];
        const n = Math.floor((e - at) / run);
        const trit = Math.floor((((byte * 3 ** n) % 256) * 3) / 256);
        v = (trit - 1) * h16(52);
        break;
      }
      case "tq2_0": {
        const crumb =
          Math.floor(blk[32 * Math.floor(e / 128) + (e % 32)] / 4 ** (Math.floor(e / 32) % 4)) % 4;
        v = (crumb - 1) * h16(64);
        break;
      }
      case "q1_0":
        v = Math.floor(blk[2 + Math.floor(e / 8)] / 2 ** (e % 8)) % 2 ? h16(0) : -h16(0);
        break;
      case "q2_0":
        v = ((Math.floor(blk[2 + Math.floor(e / 4)] / 4 ** (e % 4)) % 4) - 1) * h16(0);
        break;
      case "mxfp4":
      case "nvfp4": {
        // E2M1 codes: sign, 2 exponent bits (bias 1), 1 mantissa bit; subnormal at 0.
        const run = format === "mxfp4" ? 16 : 8;
        const s = format === "mxfp4" ? 0 : Math.floor(e / 16), j = format === "mxfp4" ? e : e % 16;
        const byte = blk[(format === "mxfp4" ? 1 : 4 + 8 * s) + (j % run)];
        const c = j < run ? byte % 16 : Math.floor(byte / 16);
        const ex = Math.floor(c / 2) % 4, man = c % 2;
        const mag = ex === 0 ? man / 2 : (1 + man / 2) * 2 ** (ex - 1);
        // MXFP4: E8M0 2^(x − 127). NVFP4: unsigned E4M3 (bias 7), 0x7F read as 0 by ggml.
        const x = blk[s];
        const ue = (x & 0x78) === 0
          ? (x & 7) / 8 * 2 ** -6
          : (1 + (x & 7) / 8) * 2 ** ((x >> 3 & 15) - 7);
        const scale = format === "mxfp4" ? 2 ** (x - 127) : x === 0x7f ? 0 : ue;
        // ggml's table holds a plain 0 for code 8: no negative zero.
        v = Math.fround((c > 8 ? -mag : mag) * scale);
        break;
      }
      case "q6_k": {
        const half = Math.floor(e / 128), k4 = Math.floor(e / 32) % 4, l = e % 32;
        const lowByte = blk[64 * half + 32 * (k4 % 2) + l];
        const low = k4 < 2 ? lowByte % 16 : Math.floor(lowByte / 16);
        const high = Math.floor(blk[128 + 32 * half + l] / 4 ** k4) % 4;
        v = h16(208) * i8(blk[192 + Math.floor(e / 16)]) * (low + 16 * high - 32);
        break;
      }
      default:
        // IQ3_XXS, IQ3_S: their codebooks are checked against ggml's own decoder instead.
        throw new Error(`simpleDecode: no layout for ${format}`);
    }
    out[k] = v;
  }
  return out;
}

/** Asserts bitwise-equal floats (NaN equal to NaN, −0 distinct from +0). */
function assertSameFloats(a: Float32Array, b: Float32Array, what: string): void {
  assert.equal(a.length, b.length);
  for (let i = 0; i < a.length; i++) {
    if (!Object.is(a[i], b[i])) assert.fail(`${what}: element ${i} is ${a[i]}, expected ${b[i]}`);
  }
}

function block(format: QuantFormat, fill: (b: Uint8Array) => void): Uint8Array {
  const b = new Uint8Array(GGML_TYPES[format].blockBytes);
  fill(b);
  return b;
}

Deno.test("formats: ids and block sizes are ggml's", () => {
  // ggml.h enum ggml_type and the block structs of ggml-common.h.
  const expect: [string, number, number, number][] = [
    ["q8_0", 8, 32, 2 + 32],
    ["q4_0", 2, 32, 2 + 16],
    ["q4_1", 3, 32, 2 + 2 + 16],
    ["q5_0", 6, 32, 2 + 4 + 16],
    ["q5_1", 7, 32, 2 + 2 + 4 + 16],
    ["q2_k", 10, 256, 16 + 64 + 2 + 2],
    ["q3_k", 11, 256, 32 + 64 + 12 + 2],
    ["q4_k", 12, 256, 2 + 2 + 12 + 128],
    ["q5_k", 13, 256, 2 + 2 + 12 + 32 + 128],
    ["q6_k", 14, 256, 128 + 64 + 16 + 2],
    ["q8_k", 15, 256, 4 + 256 + 32],
    ["iq4_nl", 20, 32, 2 + 16],
    ["iq4_xs", 23, 256, 2 + 2 + 4 + 128],
    ["bf16", 30, 1, 2],
    ["mxfp4", 39, 32, 17],
    ["nvfp4", 40, 64, 4 + 32],
    ["q1_0", 41, 128, 2 + 16],
    ["q2_0", 42, 64, 2 + 16],
  ];
  for (const [name, id, elems, bytes] of expect) {
    const t = ggmlTypeById(id);
    assert.ok(t, `id ${id}`);
    assert.deepEqual([t.name, t.blockElems, t.blockBytes], [name, elems, bytes]);
  }
  for (const id of [4, 5, 31, 32, 33, 36, 37, 38, 43]) assert.equal(ggmlTypeById(id), undefined);
  for (const f of QUANT_FORMATS) assert.ok(GGML_TYPES[f].supported);
});

Deno.test("scalar: nearestInt rounds half to even like ggml's nearest_int", () => {
  const cases = [[0.5, 0], [1.5, 2], [2.5, 2], [-0.5, 0], [-1.5, -2], [-2.5, -2], [3.49, 3]];
  for (const [x, want] of cases) assert.equal(nearestInt(x), want, `nearestInt(${x})`);
  assert.equal(readF16(new Uint8Array([0xff, 0x7b]), 0), 65504);
});

Deno.test("q8_0: hand-built block decodes to d·qs", () => {
  const b = block("q8_0", (b) => {
    b.set(f16(0.5), 0);
    b.set([0x80, 0x7f, 0x00, 0x01, 0xff, 0x10], 2); // −128, 127, 0, 1, −1, 16
  });
  const y = dequantize("q8_0", b, 32);
  assert.deepEqual(Array.from(y.subarray(0, 7)), [-64, 63.5, 0, 0.5, -0.5, 8, 0]);
});

Deno.test("q4_0: element j < 16 is the low nibble of qs[j], j ≥ 16 the high nibble of qs[j−16]", () => {
  const b = block("q4_0", (b) => {
    b.set(f16(1), 0);
    for (let j = 0; j < 16; j++) b[2 + j] = j | ((15 - j) << 4);
  });
  const y = dequantize("q4_0", b, 32);
  for (let j = 0; j < 16; j++) {
    assert.equal(y[j], j - 8);
    assert.equal(y[16 + j], 7 - j);
  }
});

Deno.test("q4_1, q5_0, q5_1: x = d·q + m (q5_0: d·(q − 16)), fifth bit j of element j in qh", () => {
  const b41 = block("q4_1", (b) => {
    b.set([...f16(0.5), ...f16(-2)], 0);
    for (let j = 0; j < 16; j++) b[4 + j] = j | ((15 - j) << 4);
  });
  const y41 = dequantize("q4_1", b41, 32);
  for (let j = 0; j < 16; j++) {
    assert.equal(y41[j], 0.5 * j - 2);
    assert.equal(y41[16 + j], 0.5 * (15 - j) - 2);
  }
  // qh = 0x80000001: elements 0 and 31 have their fifth bit; qs all 0x31.
  for (const [format, qh, qs] of [["q5_0", 2, 6], ["q5_1", 4, 8]] as const) {
    const b = block(format, (b) => {
      b.set(f16(1), 0);
      if (format === "q5_1") b.set(f16(10), 2);
      b.set([0x01, 0x00, 0x00, 0x80], qh);
      b.fill(0x31, qs);
    });
    const y = dequantize(format, b, 32);
    const base = format === "q5_0" ? -16 : 10;
    assert.deepEqual([y[0], y[1], y[16], y[31]], [base + 17, base + 1, base + 3, base + 19]);
  }
});

Deno.test("q2_k, q3_k: 2-bit codes, 4-bit scale/min nibbles (Q2_K), 6-bit signed scales and hmask third bits (Q3_K)", () => {
  const b2 = block("q2_k", (b) => {
    b[0] = 0x21; // sub-block 0: scale 1, min 2
    b[15] = 0xf3; // sub-block 15: scale 3, min 15
    b[16] = 0b11_10_01_00; // element 0 code 0, 32 code 1, 64 code 2, 96 code 3
    b[79] = 0xc0; // element 255 (half 1, k 3, l 31) code 3
    b.set([...f16(0.5), ...f16(0.25)], 80);
  });
  const y2 = dequantize("q2_k", b2, 256);
  assert.deepEqual([y2[0], y2[255]], [-0.5, 0.5 * 3 * 3 - 0.25 * 15]);
  // Elements 32, 64, 96 belong to sub-blocks 2, 4, 6, whose scale bytes are 0.
  assert.deepEqual([y2[32], y2[64], y2[96]], [0, 0, 0]);
  const b3 = block("q3_k", (b) => {
    b[0] = 0b1; // element 0's third bit (bit 0 of hmask[0])
    b[32] = 3; // element 0 low bits 3
    b[96] = 0x01 | (0xf << 4); // scale 0 low nibble 1, scale 8 low nibble 15
    b[104] = 0b10; // scale 0 top bits 2: 1 + 32 − 32 = 1
    b[107] = 0b11 << 6; // scale 15 top bits 3; low nibble 0 (high nibble of scales[7]): 48 − 32
    // Element 255: low bits 0 and third bit clear, so code −4.
    b.set(f16(2), 108);
  });
  const y3 = dequantize("q3_k", b3, 256);
  assert.deepEqual([y3[0], y3[1], y3[255]], [2 * 1 * 3, 2 * 1 * -4, 2 * 16 * -4]);
  assertSameFloats(y3, simpleDecode("q3_k", b3, 256), "q3_k");
  assertSameFloats(y2, simpleDecode("q2_k", b2, 256), "q2_k");
});

Deno.test("q4_k: 6-bit scales and mins, including the packed j ≥ 4 case", () => {
  const b = block("q4_k", (b) => {
    b.set(f16(1), 0); // d
    b.set(f16(0.5), 2); // dmin
    const s = 4;
    // Sub-block 1: sc = 7, m = 9, in the low 6 bits of scales[1] and scales[5].
    // Sub-block 5: sc = 53 = 0b11_0101, m = 42 = 0b10_1010: low nibbles in
    // scales[9], top two bits in bits 6–7 of scales[1] (sc) and scales[5] (m).
    b[s + 1] = 7 | (0b11 << 6);
    b[s + 5] = 9 | (0b10 << 6);
    b[s + 9] = 0b0101 | (0b1010 << 4);
    // Elements 32..63 (sub-block 1) are the high nibbles of qs[0..31];
    // elements 160..191 (sub-block 5) the high nibbles of qs[64..95].
    b[16 + 0] = 0x3f; // element 0 → 15 (sub-block 0: sc = m = 0), element 32 → 3
    b[16 + 64 + 2] = 0xf0; // element 162 → 15
  });
  const y = dequantize("q4_k", b, 256);
  assert.equal(y[0], 0);
  assert.equal(y[32], 7 * 3 - 0.5 * 9);
  assert.equal(y[33], -4.5);
  assert.equal(y[162], 53 * 15 - 0.5 * 42);
  assert.equal(y[160], -21);
  assertSameFloats(y, simpleDecode("q4_k", b, 256), "q4_k");
});

Deno.test("q5_k: the fifth bit of element 64g + l is bit 2g of qh[l], of 64g + 32 + l bit 2g + 1", () => {
  const b = block("q5_k", (b) => {
    b.set(f16(1), 0);
    for (let j = 0; j < 4; j++) b[4 + j] = 1; // sub-blocks 0..3: sc = 1, m = 0
    b[4 + 8] = 1; // sub-block 4: sc = 1
    b[16 + 3] = 0b0000_0110; // element 35 (bit 1) and element 67 (bit 2)
    b[16 + 4] = 0b0001_0000; // element 128 + 4 (bit 4)
    b[48 + 3] = 0x21; // element 3 → 1, element 35 → 2 (+16)
    b[48 + 32 + 3] = 0x0f; // element 67 → 15 (+16)
  });
  const y = dequantize("q5_k", b, 256);
  assert.deepEqual([y[3], y[35], y[67], y[132]], [1, 18, 31, 16]);
  assertSameFloats(y, simpleDecode("q5_k", b, 256), "q5_k");
});

Deno.test("q6_k: ql/qh split and signed scales", () => {
  const b = block("q6_k", (b) => {
    b.set(f16(0.25), 208);
    for (let j = 0; j < 16; j++) b[192 + j] = (j - 8) & 0xff; // scales −8..7
    b[0] = 0x5a; // element 0 low 4 = 0xa, element 64 low 4 = 0x5
    b[128] = 0b01_00_00_11; // element 0 high 2 = 3, element 96 high 2 = 1
    b[64 + 32 + 1] = 0xf0; // element 128 + 96 + 1 low 4 = 15
    b[128 + 32 + 1] = 0xc0; // … high 2 = 3: code 63
  });
  const y = dequantize("q6_k", b, 256);
  assert.equal(y[0], 0.25 * -8 * (0x3a - 32)); // sub-block 0 scale −8
  assert.equal(y[64], 0.25 * -4 * (5 - 32));
  assert.equal(y[96], 0.25 * -2 * (16 - 32));
  assert.equal(y[225], 0.25 * 6 * 31); // sub-block 14 scale 6, code 63
  assertSameFloats(y, simpleDecode("q6_k", b, 256), "q6_k");
});

Deno.test("quantize: the IQ2 formats and IQ1_S are refused by name without an importance matrix", () => {
  const unwritten = QUANT_FORMATS.filter((f) => !QUANTIZE_FORMATS.includes(f as never));
  assert.deepEqual(unwritten.filter((f) => !IMATRIX_ONLY_FORMATS.includes(f)), ["iq1_m"]);
  for (const format of IMATRIX_ONLY_FORMATS) {
    assert.throws(
      () => quantize(format, new Float32Array(256)),
      (e: Error) =>
        e instanceof RangeError &&
        e.message.startsWith(`${format}: Kiln writes this format only with an importance matrix`),
    );
  }
  // IQ1_M quantizes without one as ggml does (quant_importance_test holds it to ggml's bytes).
  assert.equal(quantize("iq1_m", new Float32Array(256)).length, 56);
});

Deno.test("dequantize: random blocks agree with the element-by-element decoder", () => {
  const r = mulberry32(7);
  // The lattice formats are held to ggml's own decoder (llama_cpp_reference_test.ts).
  for (const format of QUANTIZE_FORMATS.filter((f) => !f.startsWith("iq3"))) {
    const elems = 8 * GGML_TYPES[format].blockElems;
    const bytes = new Uint8Array(quantBytes(format, elems));
    for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(r() * 256);
    assertSameFloats(dequantize(format, bytes, elems), simpleDecode(format, bytes, elems), format);
  }
});

Deno.test("dequantize: edge values (zero and negative-zero d, f16 max d, extreme codes)", () => {
  const dMax = f16(65504);
  // Q8_0: d = −0 gives signed zeros; d = 65504 with codes −128 and 127.
  let b = block("q8_0", (b) => b.set([0x00, 0x80, 5, 0xfb], 0));
  assertSameFloats(dequantize("q8_0", b, 32).subarray(0, 2), new Float32Array([-0, 0]), "q8_0");
  b = block("q8_0", (b) => b.set([...dMax, 0x80, 0x7f], 0));
  assert.deepEqual(Array.from(dequantize("q8_0", b, 32).subarray(0, 2)), [
    -65504 * 128,
    65504 * 127,
  ]);
  // Q4_0: codes 0 and 15 at d = f16 max.
  b = block("q4_0", (b) => b.set([...dMax, 0xf0], 0));
  assert.deepEqual([dequantize("q4_0", b, 32)[0], dequantize("q4_0", b, 32)[16]], [
    -8 * 65504,
    7 * 65504,
  ]);
  // Q5_0: codes 0 and 31 at d = f16 max; Q4_1 / Q5_1: top codes, m = −f16 max, and −0.
  b = block("q5_0", (b) => {
    b.set([...dMax, 0, 0, 0, 0x80], 0);
    b[21] = 0xf0; // element 31: high nibble of qs[15], fifth bit 31
  });
  assert.deepEqual([dequantize("q5_0", b, 32)[0], dequantize("q5_0", b, 32)[31]], [
    -16 * 65504,
    15 * 65504,
  ]);
  for (const format of ["q4_1", "q5_1"] as const) {
    b = block(format, (b) => {
      b.set([...dMax, ...f16(-65504)], 0);
      b.fill(0xff, 4);
    });
    const top = format === "q4_1" ? 15 : 31;
    assert.ok(dequantize(format, b, 32).every((v) => v === 65504 * top - 65504), format);
    b.fill(0, 4);
    b.set([0x00, 0x80, 0x00, 0x80], 0); // d = m = −0: codes 0 give −0 + −0
    assertSameFloats(dequantize(format, b, 32), new Float32Array(32).fill(-0), `${format} −0`);
    assertSameFloats(dequantize(format, b, 32), simpleDecode(format, b, 32), `${format} −0`);
  }
  // K-quants: all-63 scales and mins, all-ones codes (15 / 31 / 63).
  for (const format of ["q4_k", "q5_k"] as const) {
    b = block(format, (b) => {
      b.set(dMax, 0);
      b.set(f16(1), 2);
      b.fill(0xff, 4);
    });
    const y = dequantize(format, b, 256);
    const top = format === "q4_k" ? 15 : 31;
    assert.ok(y.every((v) => v === Math.fround(Math.fround(65504 * 63 * top) - 63)), format);
    assertSameFloats(y, simpleDecode(format, b, 256), format);
    b.fill(0, 4, 16); // zero scales and mins: everything decodes to 0
    assert.ok(dequantize(format, b, 256).every((v) => v === 0), `${format} zero scales`);
  }
  b = block("q6_k", (b) => {
    b.fill(0xff, 0, 192); // code 63 everywhere
    b.fill(0x80, 192, 208); // scale −128
    b.set(dMax, 208);
  });
  assert.ok(dequantize("q6_k", b, 256).every((v) => v === 65504 * -128 * 31));
  b.fill(0, 0, 192); // code 0 → −32
  assert.ok(dequantize("q6_k", b, 256).every((v) => v === 65504 * -128 * -32));
  b.set([0x00, 0x80], 208); // d = −0
  assertSameFloats(dequantize("q6_k", b, 256), simpleDecode("q6_k", b, 256), "q6_k −0");
});

Deno.test("quantize: hand-computed q8_0 and q4_0 blocks", () => {
  // amax 127 → d = 1; codes are roundf(x), ties away from zero.
  const x = new Float32Array(32);
  x.set([127, 2.5, -2.5, 0.5, -0.5, 1.5, -126.6]);
  assert.equal(
    hex(quantize("q8_0", x).subarray(0, 9)),
    "003c" + "7f" + "03" + "fd" + "01" + "ff" + "02" + "81",
  );
  // x = j − 16: amax 16, d = f16(16/127) = 0x3008; the float32 1/(16/127) is
  // exactly 7.9375, so x·id = (j − 16)·127/16, with ±8 on the tie ±63.5 → ±64.
  const ramp = new Float32Array(32).map((_, j) => j - 16);
  assert.equal(
    hex(quantize("q8_0", ramp)),
    "0830" + "81899199a1a9b1b9c0c8d0d8e0e8f0f8" + "000810182028303840474f575f676f77",
  );
  // Q4_0 of the ramp: max = −16, d = 2, codes min(15, trunc(x/2 + 8.5)):
  // j < 16 → ⌊(j + 1)/2⌋, j ≥ 16 → min(15, 8 + ⌊(j − 15)/2⌋).
  assert.equal(
    hex(quantize("q4_0", ramp)),
    "0040" + "809191a2a2b3b3c4c4d5d5e6e6f7f7f8",
  );
});

/** Five blocks in five styles: uniform, narrow, sparse, all positive, and ties on eighths. */
function goldenInput(format: QuantFormat): Float32Array {
  const per = GGML_TYPES[format].blockElems;
  const r = mulberry32(20240611);
  const x = new Float32Array(5 * per);
  for (let i = 0; i < x.length; i++) {
    const u = r();
    const style = Math.floor(i / per);
    x[i] = style === 0
      ? (u - 0.5) * 4
      : style === 1
      ? (u + r() + r() - 1.5) * 0.02
      : style === 2
      ? (u < 0.85 ? 0 : r() - 0.5)
      : style === 3
      ? u * 3 + 0.5
      : Math.round((u - 0.5) * 16) / 8;
  }
  return x;
}

// SHA-256 of the bytes llama.cpp's quantize_row_*_ref writes for goldenInput
// (ggml d99724f, gcc 12 -O3 on x86-64), and the whole Q8_0 / Q4_0 rows.
const GOLDEN: Record<QuantizeFormat, string> = {
  q8_0: "fddd42ac67f50fa62369fc24b2f99854a5bc4ad8255b5843f9e4ccfe9530976f",
  q4_0: "0d48fc6313c45ee36bd8820f946b4d02ad7a52e8e15da904af1d42a753bf0a8e",
  q4_1: "18435219c29c0366559c24f6e8a600a6127887c9c2b5863cedf410025b0fd89b",
  q5_0: "73e3889bcb819da3da600758ae0dac5da9132a144d445cc651e07720b3353001",
  q5_1: "1fec56d9149c25fce01950c23c64886c67835b3b8cc4790cb1178116bf3a584c",
  q2_k: "2d65d24430029822828e06aacd0c61c859da88c0a9a3ba1a5639928125758070",
  q3_k: "b38901f27b6af0d2a54c57d02910a425f84c9f8b91175f0a11b3f1c097c6afa3",
  q4_k: "6ed5e5efc83cf260e5c433bde5dcf5c9bfe80554cc650cc8806736e4b05f0ec7",
  q5_k: "d994bdcc7c83aaa351f9b323b3a297d419c39a9c8ce51fc2a78ef80a0dce9dd7",
  q6_k: "635096770ac6f6bcf724352872d640d4f8f7febed1f5fd58c135ecad21087d2f",
  // llama-quantize's quantize_iq4_nl / quantize_iq4_xs without an importance matrix.
  iq4_nl: "d8d32e1ee2dda053c5d1f35d023240967a0716781d812e0c552625e462b1c532",
  iq4_xs: "6acab3bbcaa7f6ee2fa5d0523b2a4d67b484fbda9f4252233194c49e14ddb103",
  // quantize_row_iq3_{xxs,s}_ref after ggml_quantize_init (tools/ggml_reference.ts's
  // `quantize`, same ggml); llama-quantize runs the same without an importance matrix.
  iq3_xxs: "83ad7ec715b92d9c00d4b572d55b7f622bfaa7dd55fe205c2890645d2fdca237",
  iq3_s: "d171552087b1ba28df6beb9b2802bfa56a3e50e86f3fa8416fb4e4ec27f8dfc0",
  // ggml's newer formats (tools/ggml_reference.ts's `quantize`, same ggml).
  tq1_0: "c6226d5ac417f030d5a33f44e201c7a26df960a8f7eb4c605b5ca2655dd76062",
  tq2_0: "c338c08b4fd275e3ce8306fe6c4a2805fd57de2971803cc7e7dcf326c3a8506d",
  q1_0: "3aa2804997bd11ea340655316386581876bb43b4fface85d86edf57e1229756f",
  q2_0: "1af905584997edcdee9d4f53b51e1afda7a717298a1fdb86cfc634d6bca67f03",
  mxfp4: "8de78fb41275a94322eb48b07b76c5d20a5cf0e2888b4c608dd8dfbfcc5a5cd8",
  nvfp4: "74088b22404355ad9da75597e9b72bbab4d5f49e52200acdb9b29130dbf06571",
};
const GOLDEN_Q8_0 = "702367968313d3d261a6602344b3ea55661e75dd8d73b1eadd7fc94ff8e79683" +
  "6cd60c0981d596492f48103822feda9f21ed95a4fff4de10e5c6e21500ba30dcf8d318f2de1b00000083" +
  "00000000000000bb000000000000006e0000449d0000007f00000000a82623627f7250741d2c71795650" +
  "207e3744687a5e16791c4c1d366d1a6f30246a1d0820201010b1f05fb17f206f6f307f40f0a1d0c09140" +
  "00b1816f5f00e000915f6f6f";
const GOLDEN_Q4_0 = "61b312afff17db9ba20eb23694adf9f312b602198075619d6b4d699c8a48b662" +
  "8a579172cfab8888881f888848e88888880c888888889bb61602207103613665511063135660156400b0" +
  "b6c7f74d89d2fd102681a185f024191e";

Deno.test("quantize: bytes equal llama.cpp's reference quantizers", async () => {
  for (const format of QUANTIZE_FORMATS) {
    const q = quantize(format, goldenInput(format));
    const sha = hex(new Uint8Array(await crypto.subtle.digest("SHA-256", q)));
    assert.equal(sha, GOLDEN[format], format);
  }
  assert.equal(hex(quantize("q8_0", goldenInput("q8_0"))), GOLDEN_Q8_0);
  assert.equal(hex(quantize("q4_0", goldenInput("q4_0"))), GOLDEN_Q4_0);
  assertSameFloats(
    dequantize("q4_0", unhex(GOLDEN_Q4_0), 160),
    simpleDecode("q4_0", unhex(GOLDEN_Q4_0), 160),
    "golden q4_0",
  );
});

Deno.test("quantize: blocks are independent (a row is its blocks' concatenation)", () => {
  for (const format of QUANTIZE_FORMATS) {
    const x = goldenInput(format);
    const n = GGML_TYPES[format].blockElems;
    const whole = quantize(format, x);
    const parts = [2, 0, 4, 1, 3].map((b) => [b, quantize(format, x.subarray(b * n, b * n + n))]);
    const bb = GGML_TYPES[format].blockBytes;
    for (const [b, p] of parts as [number, Uint8Array][]) {
      assert.deepEqual(p, whole.subarray(b * bb, b * bb + bb), `${format} block ${b}`);
    }
  }
});

Deno.test("quantize: all-zero blocks", () => {
  for (const format of QUANTIZE_FORMATS) {
    const n = 2 * GGML_TYPES[format].blockElems;
    const q = quantize(format, new Float32Array(n));
    // Q4_0's scale is 0/−8 = −0 (f16 0x8000), and every code trunc(0 + 8.5) = 8;
    // Q5_0's is 0/−16 = −0 and every code 16: low nibbles 0, every fifth bit set.
    const want = new Uint8Array(q.length);
    if (format === "q4_0") { for (let i = 0; i < 36; i++) want[i] = [0, 0x80][i % 18] ?? 0x88; }
    if (format === "q5_0") {
      for (let i = 0; i < 44; i++) want[i] = [0, 0x80, 0xff, 0xff, 0xff, 0xff][i % 22] ?? 0;
    }
    // IQ4: every code on level 1 (index 8, nearest 0); IQ4_XS's d is −0/32 = −0 and
    // its 6-bit scales 0 + 32 (top bits 0b10 each).
    if (format === "iq4_nl") { for (let i = 0; i < 36; i++) want[i] = i % 18 < 2 ? 0 : 0x88; }
    if (format === "iq4_xs") {
      for (let i = 0; i < 272; i++) want[i] = [0, 0x80, 0xaa, 0xaa, 0, 0, 0, 0][i % 136] ?? 0x88;
    }
    // Ternary, two-bit: d = 0 and every code 1 (zero). TQ1_0 packs five 1-trits (121)
    // as ⌈121·256/243⌉ = 0x80 and qh's four, shifted up a trit (120), as 0x7f; TQ2_0 and
    // Q2_0 four crumbs of 1 a byte. Q1_0: d = 0, every sign bit set (0 ≥ 0). MXFP4 and
    // NVFP4: scale byte 0, code 0 — all zero bytes.
    const fill = (size: number, at: number, bytes: number[], rest: number) => {
      for (let i = 0; i < q.length; i++) want[i] = i % size < at ? rest : bytes[i % size - at] ?? 0;
    };
    if (format === "tq1_0") fill(54, 48, [0x7f, 0x7f, 0x7f, 0x7f, 0, 0], 0x80);
    if (format === "tq2_0") fill(66, 64, [0, 0], 0x55);
    if (format === "q2_0") { for (let i = 0; i < q.length; i++) want[i] = i % 18 < 2 ? 0 : 0x55; }
    if (format === "q1_0") { for (let i = 0; i < q.length; i++) want[i] = i % 18 < 2 ? 0 : 0xff; }
    assert.deepEqual(q, want, format);
    assert.ok(dequantize(format, q, n).every((v) => v === 0), format);
  }
});

/** Approximately normal values (sum of three uniforms), for the error bounds. */
function noise(n: number, seed: number, scale: number): Float32Array {
  const r = mulberry32(seed);
  return new Float32Array(n).map(() => (r() + r() + r() - 1.5) * scale);
}

Deno.test("round trip: 32-element formats stay within half a step of the block scale", () => {
  const x = noise(32 * 64, 11, 3);
  // Codes a side of zero for the symmetric formats (the extreme lands on the far code).
  const steps = { q8_0: 127, q4_0: 8, q5_0: 16 } as const;
  for (const format of ["q8_0", "q4_0", "q5_0"] as const) {
    const q = quantize(format, x);
    const y = dequantize(format, q, x.length);
    for (let b = 0; b < 64; b++) {
      const d = Math.abs(readF16(q, b * GGML_TYPES[format].blockBytes));
      let amax = 0;
      for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[32 * b + j]));
      const exact = amax / steps[format];
      // Half a step, plus what the f16 rounding of d moves the largest code; Q4_0's
      // and Q5_0's top code clips the side opposite the extreme by one more step.
      const bound = (format === "q8_0" ? exact / 2 : exact) + 128 * Math.abs(d - exact) +
        amax * 1e-6;
      for (let j = 0; j < 32; j++) {
        const err = Math.abs(y[32 * b + j] - x[32 * b + j]);
        assert.ok(err <= bound, `${format} block ${b} elem ${j}: ${err} > ${bound}`);
      }
    }
  }
  // Q4_1 / Q5_1: min and (max − min)/(2^bits − 1), both f16, codes rounded.
  for (const [format, top] of [["q4_1", 15], ["q5_1", 31]] as const) {
    const q = quantize(format, x);
    const y = dequantize(format, q, x.length);
    const B = GGML_TYPES[format].blockBytes;
    for (let b = 0; b < 64; b++) {
      const blk = x.subarray(32 * b, 32 * b + 32);
      const min = Math.min(...blk), exact = (Math.max(...blk) - min) / top;
      const d = readF16(q, b * B), m = readF16(q, b * B + 2);
      const bound = exact / 2 + top * Math.abs(d - exact) + Math.abs(m - min) + 1e-5;
      for (let j = 0; j < 32; j++) {
        const err = Math.abs(y[32 * b + j] - blk[j]);
        assert.ok(err <= bound, `${format} block ${b} elem ${j}: ${err} > ${bound}`);
      }
    }
  }
});

Deno.test("round trip: K-quant RMS error below known bounds", () => {
  // RMS error over RMS signal for near-normal data; ~1/2 per extra bit.
  // Measured: Q2_K 0.29, Q3_K 0.145, Q4_K 0.068, Q5_K 0.034, Q6_K 0.017, IQ4_NL and
  // IQ4_XS 0.074 (their levels suit bell-shaped weights), IQ3_XXS 0.21 (3.06 bits, its
  // points 256 of the 4096 of the 3-bit lattice), IQ3_S 0.16 (3.44 bits, 512 points);
  // the limits leave ~10% of headroom.
  const limits: Partial<Record<QuantizeFormat, number>> = {
    q2_k: 0.32,
    q3_k: 0.16,
    q4_k: 0.075,
    q5_k: 0.038,
    q6_k: 0.019,
    iq4_nl: 0.081,
    iq4_xs: 0.081,
    iq3_xxs: 0.23,
    iq3_s: 0.18,
  };
  for (const format of Object.keys(limits) as QuantizeFormat[]) {
    for (const [seed, scale] of [[1, 1], [2, 0.01], [3, 300]]) {
      const x = noise(256 * 16, seed, scale);
      const y = dequantize(format, quantize(format, x), x.length);
      let se = 0, ss = 0;
      for (let i = 0; i < x.length; i++) {
        se += (y[i] - x[i]) ** 2;
        ss += x[i] ** 2;
      }
      const rel = Math.sqrt(se / ss);
      assert.ok(rel < limits[format]!, `${format} scale ${scale}: relative RMS ${rel}`);
    }
  }
});

Deno.test("quantize/dequantize: RangeErrors name the format, the length or the index", () => {
  assert.throws(() => quantize("q4_k", new Float32Array(100)), (e: unknown) => {
    return e instanceof RangeError && /q4_k/.test(e.message) && /\b100\b/.test(e.message);
  });
  assert.throws(() => quantize("q8_0", new Float32Array(33)), /q8_0.*33/);
  const x = new Float32Array(64);
  x[37] = NaN;
  assert.throws(() => quantize("q4_0", x), (e: unknown) => {
    return e instanceof RangeError && /q4_0/.test(e.message) && /\b37\b/.test(e.message);
  });
  x[37] = 0;
  x[5] = -Infinity;
  assert.throws(() => quantize("q6_k", new Float32Array(256).fill(Infinity)), /element 0\b/);
  assert.throws(() => quantize("q8_0", x), /element 5\b/);
  assert.throws(() => dequantize("q6_k", new Uint8Array(210), 255), RangeError);
  assert.throws(() => dequantize("q6_k", new Uint8Array(209), 256), /q6_k.*210.*209/);
  assert.throws(() => dequantize("q8_0", new Uint8Array(35), 32), RangeError);
  assert.equal(quantize("q5_k", new Float32Array(0)).length, 0);
  assert.equal(dequantize("q5_k", new Uint8Array(0), 0).length, 0);
});
