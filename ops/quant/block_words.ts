/**
 * How the block GEMV (`./block_gemv.ts`) reads a weight row's words so each is
 * loaded once, with as few load instructions as it can: llvmpipe turns every
 * per-lane storage load into a loop over the SIMD lanes, so a `vec4<u32>` load
 * costs little more than one `u32` load, and the count of load *instructions*
 * is what a GEMV's time (and its compile time) follows.
 *
 * The GEMV walks a row a *unit* of blocks at a time (one loop iteration):
 *
 * - `aligned`: units 16 bytes aligned (Q5_K's 176-byte block; eight 18-byte
 *   Q4_0 blocks), read as whole `vec4<u32>`s; every byte's place is known when
 *   the code is made.
 * - `word`: units 4 bytes aligned (four 34-byte Q8_0 blocks): the `vec4<u32>`s
 *   covering the unit, its start's word inside the first one a runtime offset
 *   (`select`s per word, one where the unit is 8 bytes aligned); blocks at a
 *   2-byte offset inside the unit swap their words' halves, known when the
 *   code is made; MXFP4's 17-byte blocks (units of 4 or 8) have their bytes
 *   at every offset, joined from two words by `bytes4`.
 * - `half`: one block at a runtime 2-byte offset (Q6_K's 210 bytes, or a row
 *   of an odd count of blocks): the `vec4<u32>`s covering it, then its words'
 *   halves swapped per lane.
 *
 * Without `vec4` (a weight not a whole number of `vec4<u32>`s, whose last
 * bytes a `vec4` array cannot reach) the same offsets read single words.
 *
 * @module
 */

import type { BlockBytes, CodeQuad, CodeRequest } from "./block_codecs.ts";

/** Byte positions of a quad's four components: in place, or the word's halves swapped. */
const IN_PLACE = [0, 1, 2, 3], SWAPPED = [2, 3, 0, 1];
const u4 = (v: number[]) => `vec4<u32>(${v.map((x) => `${x >>> 0}u`).join(", ")})`;
const f4 = (v: string[]) => `vec4<f32>(${v.join(", ")})`;
/** Masks, undo factors (`2^-8p`, exact literals) and bias weights of a quad at byte positions `pos`. */
function layout(pos: number[], req: CodeRequest) {
  const m = (1 << req.bits) - 1;
  return {
    mask: u4(pos.map((p) => m * 2 ** (8 * p))),
    sv: f4(pos.map((p) => `${2 ** (-8 * p)}`)),
    bias: req.topSigned ? f4(pos.map((p) => (p === 3 ? "0.0" : "1.0"))) : undefined,
  };
}

/**
 * A way of reading a row's blocks; see the module doc.
 *
 * @example
 * ```ts
 * import type { WordMode } from "./block_words.ts";
 * const m: WordMode = { kind: "word", blocks: 4, vec4: true, evenWord: true };
 * ```
 */
export interface WordMode {
  /** `aligned`, `word` or `half` (see the module doc). */
  readonly kind: "aligned" | "word" | "half";
  /** Blocks a unit (loop iteration). */
  readonly blocks: number;
  /** Loads are `vec4<u32>`. */
  readonly vec4: boolean;
  /** `word` mode: the unit starts on an even word (8 bytes aligned). */
  readonly evenWord?: boolean;
}

/**
 * The mode for `N` rows of `blocksPerRow` blocks of `B` bytes, units of at most
 * `maxUnit` blocks: 16-byte-aligned units if a divisor of the row makes one,
 * else 4-byte-aligned ones, else (even `B`) a block at a time. Blocks of an odd
 * size (MXFP4's 17 bytes) need 4-byte-aligned units, whatever `maxUnit`
 * says: undefined when none divides the row (the caller reads the weight
 * another way).
 *
 * @example
 * ```ts
 * import { chooseWordMode } from "./block_words.ts";
 * chooseWordMode(18, 128, 4096, 8); // { kind: "aligned", blocks: 8, vec4: true }
 * chooseWordMode(17, 6, 64, 4); // undefined: no 4 blocks make a row
 * ```
 */
export function chooseWordMode(
  B: number,
  blocksPerRow: number,
  N: number,
  maxUnit: number,
): WordMode | undefined {
  const most = B % 2 === 1 ? Math.max(4, maxUnit) : Math.max(1, maxUnit);
  const units = [8, 4, 2, 1].filter((u) => u <= most && blocksPerRow % u === 0);
  const vec4 = (N * blocksPerRow * B) % 16 === 0;
  const aligned = units.find((u) => (u * B) % 16 === 0);
  if (aligned !== undefined && vec4) return { kind: "aligned", blocks: aligned, vec4 };
  const word = units.find((u) => (u * B) % 4 === 0);
  if (word !== undefined) {
    return { kind: "word", blocks: word, vec4, evenWord: (word * B) % 8 === 0 };
  }
  return B % 2 === 0 ? { kind: "half", blocks: 1, vec4 } : undefined;
}

/**
 * The loads of one weight row (column `c` of an invocation) inside the GEMV's
 * loop over units (`b`), each emitted once, on first use, into `L`.
 *
 * @example
 * ```ts
 * import { BlockWords } from "./block_words.ts";
 * const L: string[] = [];
 * const w = new BlockWords(L, "in1", { kind: "aligned", blocks: 1, vec4: true }, 176, 0);
 * w.reader(0).bytes4(4); // "V0_0.y", after L gained `let V0_0 = in1[rb0 + b * 11u + 0u];`
 * ```
 */
export class BlockWords {
  readonly #names = new Map<string, string>();
  readonly #unitBytes: number;
  constructor(
    readonly L: string[],
    readonly W: string,
    readonly mode: WordMode,
    readonly B: number,
    readonly c: number,
    readonly eager = false,
  ) {
    this.#unitBytes = mode.blocks * B;
  }

  /** The row's base (before the loop): `row` times the row's size in the mode's units. */
  base(row: string, rowBytes: number): string {
    const per = this.mode.kind === "aligned" ? rowBytes / (this.mode.vec4 ? 16 : 4) : rowBytes;
    return `  let rb${this.c} = ${row} * ${per}u;`;
  }

  /** Lines at the top of each iteration of the unit loop. */
  begin(): void {
    const { c, mode } = this;
    if (mode.kind === "aligned") {
      if (this.eager) this.prefetch();
      return;
    }
    this.L.push(`    let o${c} = rb${c} + b * ${this.#unitBytes}u;`);
    if (mode.kind === "half") {
      this.L.push(
        `    let s${c} = (o${c} & 2u) * 8u;`,
        `    let is${c} = 16u - s${c};`,
        `    let odd${c} = s${c} != 0u;`,
      );
    }
    if (mode.vec4) {
      this.L.push(`    let q${c} = o${c} >> 4u;`, `    let kb${c} = (o${c} & 8u) != 0u;`);
      if (!mode.evenWord) this.L.push(`    let ka${c} = (o${c} & 4u) != 0u;`);
    }
    if (this.eager) this.prefetch();
  }

  /** Loads every vec4 (or word) of the unit now (`eager`), not on first use. */
  prefetch(): void {
    const { c, W, mode } = this;
    const U = this.#unitBytes;
    if (mode.kind === "aligned") {
      const per = mode.vec4 ? 16 : 4, n = U / per;
      for (let i = 0; i < n; i++) {
        this.#memo(mode.vec4 ? `V${i}` : `w${i}`, () => `${W}[rb${c} + b * ${n}u + ${i}u]`);
      }
      return;
    }
    if (mode.vec4) {
      const n = Math.ceil((U + (mode.kind === "half" ? 14 : mode.evenWord ? 8 : 12)) / 16);
      for (let i = 0; i < n; i++) this.#memo(`V${i}`, () => `${W}[q${c} + ${i}u]`);
      return;
    }
    const n = Math.ceil((U + (mode.kind === "half" ? 2 : 0)) / 4);
    for (let i = 0; i < n; i++) this.#memo(`w${i}`, () => `${W}[(o${c} >> 2u) + ${i}u]`);
  }

  #memo(key: string, expr: () => string): string {
    let n = this.#names.get(key);
    if (n === undefined) {
      n = `${key[0]}${this.#names.size}_${this.c}`;
      const e = expr();
      this.L.push(`    let ${n} = ${e};`);
      this.#names.set(key, n);
    }
    return n;
  }

  /**
   * Word `j` of the unit, counted from the word holding its start (`aligned`:
   * the unit's own word j).
   */
  #w(j: number): string {
    const { c, W, mode } = this;
    if (mode.kind === "aligned") {
      if (!mode.vec4) {
        return this.#memo(`w${j}`, () => `${W}[rb${c} + b * ${this.#unitBytes / 4}u + ${j}u]`);
      }
      const v = this.#memo(
        `V${j >> 2}`,
        () => `${W}[rb${c} + b * ${this.#unitBytes / 16}u + ${j >> 2}u]`,
      );
      return `${v}.${"xyzw"[j & 3]}`;
    }
    if (!mode.vec4) return this.#memo(`w${j}`, () => `${W}[(o${c} >> 2u) + ${j}u]`);
    // Word i of the vec4s from q: the unit's word j is word j + (o / 4) % 4 of them.
    const f = (i: number) => {
      const v = this.#memo(`V${i >> 2}`, () => `${W}[q${c} + ${i >> 2}u]`);
      return `${v}.${"xyzw"[i & 3]}`;
    };
    if (mode.evenWord) return this.#memo(`G${j}`, () => `select(${f(j)}, ${f(j + 2)}, kb${c})`);
    const h = (i: number) => this.#memo(`H${i}`, () => `select(${f(i)}, ${f(i + 1)}, ka${c})`);
    return this.#memo(`G${j}`, () => `select(${h(j)}, ${h(j + 2)}, kb${c})`);
  }

  /**
   * `f` of the request over source words (memoized by key and words), with
   * the request's top bits OR-ed in where the quad's layout puts each code.
   */
  #combined(req: CodeRequest, words: string[], top?: string): string {
    const w = this.#memo(`c${req.key}${words.join("")}`, () => req.f(...words));
    return top === undefined ? w : this.#memo(`t${w}${top}`, () => `(${w} | ${top})`);
  }

  /**
   * The request's top bits as a word: code k's bit at bit `bits − 1` of byte k
   * (`swapped`: of byte k + 2 mod 4, the word's halves swapped). One multiply
   * spreads four adjacent bits a byte apart (bit k lands at 8k: k + 7k).
   */
  #top(req: CodeRequest, swapped: boolean): string | undefined {
    if (!req.top) return undefined;
    const { word, bit } = req.top, s = req.bits - 1;
    const hex = (v: number) => `0x${(v >>> 0).toString(16)}u`;
    const inPlace = this.#memo(
      `T${word}_${bit}_${s}`,
      () => `(((${word} >> ${bit}u) & 0xfu) * ${hex(0x00204081 << s)}) & ${hex(0x01010101 << s)}`,
    );
    if (!swapped) return inPlace;
    return this.#memo(`R${inPlace}`, () => `((${inPlace} >> 16u) | (${inPlace} << 16u))`);
  }

  /** The quad of `req` for block `u`; see {@linkcode CodeQuad}. */
  #codes(u: number, req: CodeRequest): CodeQuad {
    const { c } = this;
    const r = req.offs[0] % 4;
    if (req.offs.some((o) => o % 4 !== r)) {
      throw new Error("internal: code words of mixed alignment");
    }
    const quad = (comps: string[], mask: string) =>
      `vec4<f32>(bitcast<vec4<i32>>(vec4<u32>(${comps.join(", ")}) & ${mask}))`;
    if (this.mode.kind !== "half") {
      const ps = req.offs.map((o) => u * this.B + o);
      // Odd-sized blocks (MXFP4) read their codes through bytes4, not here.
      if (ps[0] % 2 === 1) throw new Error("internal: code quad at an odd byte");
      const inPlace = ps[0] % 4 === 0;
      const top = this.#top(req, !inPlace);
      const w0 = this.#combined(req, ps.map((p) => this.#w(p >> 2)), top);
      const w1 = inPlace ? w0 : this.#combined(req, ps.map((p) => this.#w((p >> 2) + 1)), top);
      const l = layout(inPlace ? IN_PLACE : SWAPPED, req);
      const pat = `${req.bits}${req.topSigned ? "s" : ""}${inPlace}`;
      return { q: quad([w0, w0, w1, w1], l.mask), pat, sv: l.sv, bias: l.bias };
    }
    // The block starts at the half-word `odd` of word w(0).
    const ts = req.offs.map((o) => o >> 2);
    // An even offset is in place unless the block is odd; an odd one the reverse.
    const [a, b] = r === 0 ? [IN_PLACE, SWAPPED] : [SWAPPED, IN_PLACE];
    let top: string | undefined;
    if (req.top) {
      const [ta, tb] = [this.#top(req, a === SWAPPED)!, this.#top(req, b === SWAPPED)!];
      top = this.#memo(`P${ta}`, () => `select(${ta}, ${tb}, odd${c})`);
    }
    const w0 = this.#combined(req, ts.map((t) => this.#w(t)), top);
    const w1 = this.#combined(req, ts.map((t) => this.#w(t + 1)), top);
    const sel = this.#memo(`S${req.key}${w0}`, () => `select(${w0}, ${w1}, odd${c})`);
    const la = layout(a, req), lb = layout(b, req);
    const key = `${r}${req.bits}${req.topSigned ? "s" : ""}`;
    const mask = this.#memo(`M${key}`, () => `select(${la.mask}, ${lb.mask}, odd${c})`);
    const sv = this.#memo(`F${r}`, () => `select(${la.sv}, ${lb.sv}, odd${c})`);
    const bias = la.bias && this.#memo(`Z${r}`, () => `select(${la.bias}, ${lb.bias}, odd${c})`);
    const comps = r === 0 ? [w0, w0, sel, sel] : [sel, sel, w1, w1];
    return { q: quad(comps, mask), pat: `r${key}`, sv, bias };
  }

  /** Block `u` of the unit, as bytes. */
  reader(u: number): BlockBytes {
    const { c, B } = this;
    const codes = (req: CodeRequest) => this.#codes(u, req);
    if (this.mode.kind !== "half") {
      return {
        codes,
        bytes4: (off) => {
          const p = u * B + off, sh = 8 * (p % 4);
          if (sh === 0) return this.#w(p >> 2);
          return this.#memo(
            `j${p}`,
            () => `(${this.#w(p >> 2)} >> ${sh}u) | (${this.#w((p >> 2) + 1)} << ${32 - sh}u)`,
          );
        },
        half: (off) => {
          const p = u * B + off;
          return `unpack2x16float(${this.#w(p >> 2)}).${p & 2 ? "y" : "x"}`;
        },
      };
    }
    const w = (t: number) => this.#w(t);
    return {
      codes,
      bytes4: (off) => {
        const t = off >> 2;
        return this.#memo(
          `j${off}`,
          () =>
            off % 4 === 0
              ? `(${w(t)} >> s${c}) | ((${w(t + 1)} << 16u) << is${c})`
              : `select((${w(t)} >> 16u) | (${w(t + 1)} << 16u), ${w(t + 1)}, odd${c})`,
        );
      },
      half: (off) => {
        const t = off >> 2;
        const x = off % 4 === 0
          ? `${w(t)} >> s${c}`
          : `select(${w(t)} >> 16u, ${w(t + 1)}, odd${c})`;
        return `unpack2x16float(${x}).x`;
      },
    };
  }
}
