/**
 * S4 training cost: one S4D-Lin layer's forward alone vs forward + backward
 * (gradients of x, A, B, C, log Δ and D through the FFT convolution and the
 * Vandermonde kernel's backward), B = 1, H = 64, N = 64 (32 stored conjugate
 * pairs), L = 1024 … 4096; and the stateful layer's forward + backward
 * (`s4_state`: the initial state's terms too).
 *
 * Prints a side-by-side table (median wall time of submit → work done, the two
 * graphs interleaved so a shared machine's load hits them alike) and `uptime`.
 *
 * Run: `deno run -A bench/s4_grad_bench.ts` (S4_BENCH_QUICK=1: L = 1024 only).
 *
 * @module
 */
import { compile, GraphBuilder, requestDevice, type Tensor } from "../mod.ts";
import type { DType } from "../core/dtype.ts";
import type { Dim } from "../core/shape.ts";
import { initS4, s4Layer, s4ParamRecord } from "../models/s4.ts";
import { interleavedMedians } from "./_timing.ts";

const device = await requestDevice();
const [H, N] = [64, 64];
const quick = Deno.env.get("S4_BENCH_QUICK") === "1";
const lengths = quick ? [1024] : [1024, 2048, 4096];
const params = s4ParamRecord("s4", initS4({ H, N, init: "lin", seed: 1 }));

/** Remembers the params a layer declares, to differentiate with respect to them. */
class Recording extends GraphBuilder {
  readonly seen: Tensor[] = [];
  override param(name: string, shape: readonly Dim[], dtype?: DType): Tensor {
    const t = super.param(name, shape, dtype);
    this.seen.push(t);
    return t;
  }
}

async function prepared(L: number, backward: boolean, stateful = false) {
  const g = new Recording();
  const x = g.input("x", [1, L, H]);
  const y = s4Layer(g, x, { name: "s4", H, N, mode: "conv", stateful });
  if (backward) {
    const loss = y.mul(y).reshape([-1]).sum(0);
    g.output("loss", loss);
    g.grad(loss, [x, ...g.seen]).forEach((d, i) => g.output(`d${i}`, d));
  } else {
    g.output("y", y);
  }
  const exe = compile(g.build(), device, { params });
  const xs = Float32Array.from({ length: L * H }, (_, i) => Math.sin(i * 0.013));
  const run = await exe.prepare({ x: xs });
  return async () => {
    const enc = device.device.createCommandEncoder();
    run.encode(enc);
    device.device.queue.submit([enc.finish()]);
    await device.device.queue.onSubmittedWorkDone();
  };
}

async function uptime(): Promise<string> {
  try {
    const out = await new Deno.Command("uptime").output();
    return new TextDecoder().decode(out.stdout).trim();
  } catch {
    return "(uptime unavailable)";
  }
}

console.log(`uptime before: ${await uptime()}`);
console.log(`S4D-Lin layer (FFT conv), B = 1, H = ${H}, N = ${N}: median ms (interleaved)`);
console.log("L\tforward\tforward+backward\tratio\tstateful forward+backward");
for (const L of lengths) {
  const fns = [await prepared(L, false), await prepared(L, true), await prepared(L, true, true)];
  const med = await interleavedMedians(fns, 5);
  console.log(
    `${L}\t${med[0].toFixed(1)}\t${med[1].toFixed(1)}\t\t\t${(med[1] / med[0]).toFixed(2)}×\t${
      med[2].toFixed(1)
    }`,
  );
}
console.log(`uptime after: ${await uptime()}`);
