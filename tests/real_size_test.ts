/**
 * Published configs at their true size, from config.json alone: `kiln inspect
 * --dtype f16 --gpu-memory X` plans Mixtral-8x7B and Jamba-v0.1 on this
 * adapter (lavapipe: 128 MiB storage bindings, so every expert stack, the
 * embedding and the LM head are bound in segments) and prints the placement:
 * Mixtral fully resident under 100 GiB, with the expert scheduler under 24 GiB.
 */
import {
  GRANITE_4_H_TINY_SHAPED_CONFIG,
  JAMBA_V01_CONFIG,
  MAMBA_CODESTRAL_7B_CONFIG_TEXT,
  MIXTRAL_8X7B_CONFIG,
  QWEN3_30B_A3B_CONFIG,
} from "./fixtures/published_configs.ts";
import assert from "node:assert/strict";
import { join } from "node:path";
import { kiln } from "./fixtures/kiln_cli.ts";

async function withConfig(
  config: object | string,
  fn: (dir: string) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "kiln_real_size_" });
  try {
    const text = typeof config === "string" ? config : JSON.stringify(config);
    await Deno.writeTextFile(join(dir, "config.json"), text);
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Experts on the GPU per layer, from the placement lines. */
function residentPerLayer(stdout: string): number[] {
  return [...stdout.matchAll(/layer \d+: GPU \[[^\]]*\] \((\d+)\/\d+\)/g)].map((m) => Number(m[1]));
}

Deno.test("kiln inspect: Mixtral-8x7B at f16 plans under 24, 48 and 100 GiB", async () => {
  await withConfig(MIXTRAL_8X7B_CONFIG, async (dir) => {
    const run = async (budget: string) => {
      const r = await kiln("inspect", dir, "--dtype", "f16", "--gpu-memory", budget);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /placement at f16:/);
      assert.match(r.stdout, /336\.00 MiB/, "one f16 expert: 3 · 14336 · 4096 · 2 bytes");
      const per = residentPerLayer(r.stdout);
      assert.equal(per.length, 32, r.stdout);
      return { out: r.stdout, resident: per.reduce((a, b) => a + b, 0) };
    };
    const full = await run("100GiB");
    assert.match(full.out, /all experts resident/);
    assert.equal(full.resident, 256);
    const mid = await run("48GiB");
    const small = await run("24GiB");
    assert.doesNotMatch(small.out, /all experts resident/, "24 GiB needs the expert scheduler");
    assert.ok(
      small.resident < mid.resident && mid.resident < 256,
      `${small.resident} ${mid.resident}`,
    );
    assert.ok(small.resident > 0);
  });
});

Deno.test("kiln inspect: Mixtral-8x7B at Q4_K plans under 16 and 24 GiB in block bytes", async () => {
  await withConfig(MIXTRAL_8X7B_CONFIG, async (dir) => {
    const resident: number[] = [];
    for (const budget of ["16GiB", "24GiB", "32GiB"]) {
      const r = await kiln("inspect", dir, "--quantize", "q4_k", "--gpu-memory", budget);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /placement at q4_k:/);
      // One expert's three [14336, 4096] Q4_K matrices: 3 · 14336 · 16 blocks · 144 bytes.
      assert.match(r.stdout, /slots of 94\.50 MiB|all experts resident/, r.stdout);
      // 46.7B weights at 4.5 bits (f32 norms aside): about 24.5 GiB.
      assert.match(r.stdout, /24\.\d\d GiB at q4_k/);
      const per = residentPerLayer(r.stdout);
      assert.equal(per.length, 32, r.stdout);
      resident.push(per.reduce((a, b) => a + b, 0));
    }
    assert.ok(resident[0] > 0 && resident[0] < resident[1], `${resident}`);
    assert.equal(resident[2], 256, "32 GiB holds every Q4_K expert");
  });
});

Deno.test("kiln inspect: Jamba-v0.1 at f16 plans under 24 and 100 GiB", async () => {
  await withConfig(JAMBA_V01_CONFIG, async (dir) => {
    for (const [budget, all] of [["24GiB", false], ["100GiB", true]] as const) {
      const r = await kiln("inspect", dir, "--dtype", "f16", "--gpu-memory", budget);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /layer pattern .*: Mf Me Mf Me Af Me/);
      assert.match(r.stdout, /16 experts, top-2/);
      assert.equal(residentPerLayer(r.stdout).length, 16, "16 MoE layers");
      assert.equal(/all experts resident/.test(r.stdout), all, r.stdout);
    }
  });
});

Deno.test("kiln inspect: Qwen3-30B-A3B at f16 plans under 24 and 80 GiB", async () => {
  await withConfig(QWEN3_30B_A3B_CONFIG, async (dir) => {
    for (const [budget, all] of [["24GiB", false], ["80GiB", true]] as const) {
      const r = await kiln("inspect", dir, "--dtype", "f16", "--gpu-memory", budget);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /128 experts, top-8/);
      assert.match(r.stdout, /head dim 128, .*QK-norm per head/);
      assert.match(r.stdout, /parameters: 30\.53B total, 3\.35B active per token/);
      assert.match(r.stdout, /9\.00 MiB/, "one f16 expert: 3 · 768 · 2048 · 2 bytes");
      assert.equal(residentPerLayer(r.stdout).length, 48, "48 MoE layers");
      assert.equal(/all experts resident/.test(r.stdout), all, r.stdout);
    }
  });
});

Deno.test("kiln inspect: Mamba-Codestral-7B's hub config (bare Infinity and all)", async () => {
  await withConfig(MAMBA_CODESTRAL_7B_CONFIG_TEXT, async (dir) => {
    const r = await kiln("inspect", dir, "--dtype", "f16");
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /128 heads × 64 \(inner 8192\), 8 B\/C groups, conv 4/);
    // 64 · (18560·4096 in_proj + 10240·5 conv + 3·128 + 8192 norm + 4096·8192 out_proj + 4096)
    // + 2 · 32768·4096 (untied) + 4096 = 7,285,403,648.
    assert.match(r.stdout, /parameters: 7\.29B total, 7\.29B active per token/);
    assert.match(r.stdout, /13\.57 GiB at f16/);
  });
});

Deno.test("kiln inspect: a Granite-4.0-H-Tiny-sized hybrid, and its experts under 8 GiB", async () => {
  await withConfig(GRANITE_4_H_TINY_SHAPED_CONFIG, async (dir) => {
    const r = await kiln("inspect", dir, "--dtype", "f16", "--gpu-memory", "8GiB");
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /48 heads × 64 \(inner 3072\), 1 B\/C group, conv 4/);
    assert.match(
      r.stdout,
      /64 experts, top-6 \(renormalised\), expert width 512, shared expert width 1024\n/,
    );
    // 36 Mamba-2 mixers of 14,642,576, 4 attention blocks of 6,291,456, 40 × (64 experts of
    // 2,359,296 + router 98,304 + shared MLP 4,718,592 + 2 norms of 1536), the tied 100352 × 1536
    // embedding and the final norm: 6,939,037,248.
    assert.match(r.stdout, /parameters: 6\.94B total, 1\.47B active per token/);
    assert.equal(residentPerLayer(r.stdout).length, 40, "40 MoE layers");
    assert.match(r.stdout, /streamed/);
  });
});

Deno.test("kiln inspect: --dtype takes f32 or f16", async () => {
  await withConfig(MIXTRAL_8X7B_CONFIG, async (dir) => {
    const r = await kiln("inspect", dir, "--dtype", "bf16");
    assert.equal(r.code, 1);
    assert.match(r.stderr, /--dtype must be f32 or f16, got "bf16"/);
  });
});
