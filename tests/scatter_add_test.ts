/**
 * `scatter_add` (the embedding gradient) on the GPU against its CPU
 * reference: the segmented lowering (counting sort of the positions by id,
 * then one sum per output element over its row's segment) adds in position
 * order as the reference does, so results are bit-identical — with repeated
 * ids, rows no id touches, ids out of range (and negative i32 ids) that add
 * nothing, awkward sizes and multi-dimensional ids; also a prologue fused into
 * `src`.
 */
import { GraphBuilder } from "../mod.ts";
import { assertBitsEqual, randomData, rng, runBoth } from "./_util.ts";

const CASES: { lead: number[]; D: number; rows: number }[] = [
  { lead: [1], D: 1, rows: 1 },
  { lead: [7], D: 3, rows: 5 },
  { lead: [33], D: 17, rows: 9 },
  { lead: [2, 37], D: 5, rows: 64 },
  { lead: [130], D: 24, rows: 301 },
];

for (const dtype of ["u32", "i32"] as const) {
  Deno.test(`scatter_add: GPU equals the CPU reference bit for bit (${dtype} ids)`, async () => {
    for (const [k, c] of CASES.entries()) {
      const T = c.lead.reduce((a, b) => a * b, 1);
      const r = rng(100 + k);
      // Mostly a few hot rows (repeats), some anywhere, some out of range.
      const pick = () => {
        const u = r();
        if (u < 0.1) return dtype === "i32" ? -1 - Math.floor(r() * 3) : c.rows + 2;
        if (u < 0.6) return Math.floor(r() * Math.min(3, c.rows));
        return Math.floor(r() * c.rows);
      };
      const raw = Array.from({ length: T }, pick);
      const ids = dtype === "i32" ? Int32Array.from(raw) : Uint32Array.from(raw);
      const g = new GraphBuilder();
      const src = g.input("src", [...c.lead, c.D]);
      const id = g.input("ids", [...c.lead], dtype);
      // `src.mul(3)` is fused into the kernel's loads (a prologue).
      g.output("out", g.apply("scatter_add", [src.mul(3), id], { rows: c.rows })[0]);
      const { gpu, cpu } = await runBoth(g.build(), {
        src: randomData(T * c.D, "f32", 7 + k),
        ids,
      });
      assertBitsEqual(
        gpu.out.data as Float32Array,
        cpu.out.data as Float32Array,
        `case ${k} ${JSON.stringify(c)}`,
      );
    }
  });
}
