/**
 * LFM2's short-convolution mixer (`shortConvMixer`): prefill, decode steps and a
 * prompt fed in pieces carry its conv state so that they equal one stateless
 * pass over the whole sequence, with and without biases. Its numbers against
 * transformers are in `hf_fixtures_test.ts` (the `lfm2*` checkpoints).
 */

import { GraphBuilder } from "../compiler/builder.ts";
import { compile } from "../runtime/executable.ts";
import { shortConvMixer } from "../models/short_conv.ts";
import { assertClose, gpu, randomData } from "./_util.ts";

const D = 12, K = 4;

function graph(mode: "prefill" | "decode" | "stateless", B: number, bias: boolean) {
  const g = new GraphBuilder();
  const x = g.input("x", [B, mode === "decode" ? 1 : "L", D]);
  g.output("y", shortConvMixer(g, x, { name: "m", d: D, kernel: K, bias, mode }));
  return g.build();
}

Deno.test("short conv mixer: prefill, decode and a prompt in pieces equal one stateless pass", async () => {
  const B = 2, L = 9, M = 3, T = L + M;
  const dev = await gpu();
  const x = randomData(B * T * D, "f32", 4, -1, 1) as Float32Array;
  const rows = (t0: number, t1: number, src: Float32Array) => {
    const out = new Float32Array(B * (t1 - t0) * D);
    for (let b = 0; b < B; b++) {
      out.set(src.subarray((b * T + t0) * D, (b * T + t1) * D), b * (t1 - t0) * D);
    }
    return out;
  };
  for (const bias of [false, true]) {
    const r = (n: number, s: number) => randomData(n, "f32", s, -0.5, 0.5) as Float32Array;
    const w: Record<string, Float32Array> = {
      "m.in_proj.weight": r(3 * D * D, 1),
      "m.conv.weight": r(D * K, 2),
      "m.out_proj.weight": r(D * D, 3),
      ...(bias
        ? { "m.in_proj.bias": r(3 * D, 4), "m.conv.bias": r(D, 5), "m.out_proj.bias": r(D, 6) }
        : {}),
    };
    const full = compile(graph("stateless", B, bias), dev, { params: w });
    const want = (await full.run({ x })).y.data as Float32Array;
    full.dispose();
    const pre = compile(graph("prefill", B, bias), dev, { params: w });
    const dec = compile(graph("decode", B, bias), dev, { params: w });
    try {
      assertClose(
        (await pre.run({ x: rows(0, L, x) })).y.data,
        rows(0, L, want),
        1e-5,
        1e-6,
        "prefill",
      );
      dec.writeState("m.conv_state", (await pre.readState("m.conv_state")).data);
      for (let t = L; t < T; t++) {
        const { y } = await dec.run({ x: rows(t, t + 1, x) });
        assertClose(y.data, rows(t, t + 1, want), 1e-5, 1e-6, `decode token ${t}, bias ${bias}`);
      }
      pre.resetStates();
      await pre.run({ x: rows(0, 2, x) });
      const y2 = (await pre.run({ x: rows(2, T, x) })).y;
      assertClose(y2.data, rows(2, T, want), 1e-5, 1e-6, `a prompt in two pieces, bias ${bias}`);
    } finally {
      pre.dispose();
      dec.dispose();
    }
  }
});
