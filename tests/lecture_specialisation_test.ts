/**
 * Lecture experiment 6 (expert specialisation): the token classes, the
 * routing probe against the model `loadModel` serves, and the quick run's tables.
 */

import assert from "node:assert/strict";
import { runQuick } from "./lecture_helpers.ts";
import { classifyPieces, TOKEN_CLASSES } from "../examples/lecture/token_classes.ts";
import { loadRoutingProbe, topKExperts } from "../examples/lecture/routing.ts";
import { microBatch } from "../app/train/data.ts";
import { mobyDickTokens } from "../examples/moby_dick.ts";
import { loadModel } from "../mod.ts";

Deno.test("token classes: each rule, and whole words decided by the neighbours", () => {
  const pieces = [
    " The",
    " whale",
    ",",
    " and",
    " Ahab",
    "'s",
    " 18",
    "51",
    "\n\n",
    "ship",
    " the",
    "ory",
    " I",
    "—",
    "ahab",
  ];
  assert.deepEqual(classifyPieces(pieces), [
    "function word", // " The": a whole word in the list, any case
    "word start",
    "punctuation",
    "function word",
    "capitalised", // " Ahab": followed by "'s", not a letter: a whole word, not in the list
    "word-internal", // "'s" continues "Ahab"
    "digits",
    "digits",
    "whitespace",
    "word start", // "ship" after a newline starts a word
    "word start", // " the" + "ory": not the word "the"
    "word-internal",
    "function word",
    "punctuation",
    "word start", // after punctuation, at the text's end
  ]);
  assert.equal(new Set(classifyPieces(pieces)).size, TOKEN_CLASSES.length, "every class seen");
});

Deno.test("routing probe: the default model's loss as loadModel computes it, top-k as the device routes", async () => {
  const data = await mobyDickTokens();
  const B = 8, T = 128;
  const probe = await loadRoutingProbe("assets/default_model", { batch: B, seq: T });
  const { ids, targets } = microBatch(data.held, 3, B, T);
  const r = await probe.run(ids, targets);
  probe.exe.dispose();
  // The same windows through the inference model: its mean next-token cross-entropy.
  const model = await loadModel("assets/default_model", { quiet: true });
  let ce = 0;
  try {
    for (let b = 0; b < B; b++) {
      const logits = await model.forward([...ids.subarray(b * T, (b + 1) * T)]);
      const V = logits.length / T;
      for (let t = 0; t < T; t++) {
        const row = logits.subarray(t * V, (t + 1) * V);
        const max = row.reduce((a, v) => Math.max(a, v), -Infinity);
        const lse = max + Math.log(row.reduce((a, v) => a + Math.exp(v - max), 0));
        ce += lse - row[targets[b * T + t]];
      }
    }
  } finally {
    model.dispose();
  }
  ce /= B * T;
  assert.ok(Math.abs(r.loss - ce) < 1e-3, `probe ${r.loss} vs loadModel ${ce}`);
  // The host's top-k of the router logits counts exactly the pairs the device routed.
  assert.equal(r.counts.length, 2, "MoE layers 1 and 3");
  r.logits.forEach((lg, l) => {
    const host = new Uint32Array(4);
    for (const e of topKExperts(lg, 4, 2)) host[e]++;
    assert.deepEqual([...host], [...r.counts[l]], `layer ${l}`);
    assert.equal(host.reduce((a, b) => a + b), B * T * 2);
  });
});

Deno.test("lecture: expert specialisation (quick run) — every class tabled, shares and counts agree", async () => {
  const md = await runQuick("specialisation");
  for (const layer of [1, 3]) {
    const at = md.indexOf(`### MoE layer ${layer}:`);
    assert.ok(at >= 0, md);
    const rows = md.slice(at).split("\n").filter((l) => l.startsWith("| ")).slice(2, 2 + 8)
      .map((l) => l.slice(1, -1).split("|").map((c) => c.trim()));
    assert.deepEqual(rows.map((r) => r[0]), [...TOKEN_CLASSES, "all tokens"]);
    let tokens = 0;
    for (const r of rows) {
      const n = Number(r[1]), counts = r.at(-1)!.split(" / ").map(Number);
      assert.equal(counts.length, 4);
      // k = 2 pairs per token, and a share is that class's pairs to the expert.
      assert.equal(counts.reduce((a, b) => a + b), 2 * n, r.join(" "));
      if (n > 0) {
        r.slice(2, 6).forEach((s, e) =>
          assert.ok(Math.abs(Number(s) - 100 * counts[e] / (2 * n)) < 0.06, r.join(" "))
        );
      }
      if (r[0] !== "all tokens") tokens += n;
    }
    assert.equal(tokens, Number(rows[7][1]), "the classes partition the tokens");
    assert.equal(tokens, 8 * 128);
  }
  const mi = [...md.matchAll(/^\| (\d) \| ([\d.]+) \| ([\d.]+) \/ ([\d.]+) \|/gm)];
  assert.equal(mi.length, 2, md);
  for (const [, , v, mean, max] of mi) {
    assert.ok(Number(v) >= 0 && Number(mean) <= Number(max), `${v} ${mean} ${max}`);
  }
});
