/**
 * The comparison of the `tokenizers` campaign: one `tokenizer.json` loaded by Kiln and by
 * Hugging Face `tokenizers` (the npm binding of the Rust library, the oracle), texts
 * encoded with and without special tokens, the reference's ids decoded with and without
 * skipping specials, and given id sequences decoded both ways. Every disagreement is a
 * {@linkcode Difference}.
 *
 * Left out of the comparison on purpose:
 * - ids outside the vocabulary: Kiln's decode throws a RangeError naming the id, where
 *   Hugging Face silently drops it (generated sequences hold only known tokens);
 * - `splitSpecialTokens`: the binding cannot set `encode_special_tokens`;
 * - lone surrogates in text (see `tokenizers_texts.ts`);
 * - the reasons for refusing a file: only that both refuse is checked, and that Kiln's
 *   error is one of its own (TypeError, SyntaxError or RangeError).
 *
 * @module
 */

import { Tokenizer as HfTokenizer } from "tokenizers";
import { Tokenizer } from "../../app/tokenizer/mod.ts";
import {
  addedIds,
  type Json,
  renderTokenizerJson,
  type TokenizerCase,
  vocabOf,
} from "./tokenizers_gen.ts";

/**
 * What was compared when Kiln and Hugging Face disagreed.
 *
 * @example
 * ```ts
 * import type { DiffKind } from "./tokenizers_check.ts";
 * const k: DiffKind = "encode";
 * ```
 */
export type DiffKind =
  | "load"
  | "encode"
  | "encode_special"
  | "decode"
  | "decode_skip"
  | "decode_ids"
  | "decode_ids_skip";

/**
 * One disagreement: its kind, which text or id sequence (`at`), and both results.
 *
 * @example
 * ```ts
 * import type { Difference } from "./tokenizers_check.ts";
 * const d: Difference = { kind: "encode", at: 0, detail: "kiln [1] hf [2]" };
 * ```
 */
export interface Difference {
  kind: DiffKind;
  at: number;
  detail: string;
}

type Outcome<T> = { ok: T } | { error: unknown };

function run<T>(f: () => T): Outcome<T> {
  try {
    return { ok: f() };
  } catch (error) {
    return { error };
  }
}

async function runAsync<T>(f: () => Promise<T>): Promise<Outcome<T>> {
  try {
    return { ok: await f() };
  } catch (error) {
    return { error };
  }
}

/** Kiln's own error classes: any other exception is a bug, whatever the reference does. */
function kilnError(e: unknown): boolean {
  return e instanceof TypeError || e instanceof SyntaxError || e instanceof RangeError;
}

function show(o: Outcome<unknown>): string {
  if ("ok" in o) return JSON.stringify(o.ok);
  const e = o.error;
  const text = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
  return `throws ${text.length > 200 ? text.slice(0, 200) + "…" : text}`;
}

/** Whether two outcomes agree: equal values, or both refused (Kiln with its own error). */
function agree(kiln: Outcome<unknown>, hf: Outcome<unknown>): boolean {
  if ("error" in kiln) return "error" in hf && kilnError(kiln.error);
  return "ok" in hf && JSON.stringify(kiln.ok) === JSON.stringify(hf.ok);
}

/**
 * Compares Kiln with Hugging Face on one file: loading, encoding each of `texts` (with
 * and without special tokens), decoding the reference's ids, and decoding each of `ids`.
 *
 * @example
 * ```ts ignore
 * import { compareWithHf } from "./tokenizers_check.ts";
 * const diffs = await compareWithHf(json, ["hello world"], [[5, 6]]);
 * diffs.length; // 0 when Kiln agrees
 * ```
 */
export async function compareWithHf(
  json: Json,
  texts: readonly string[],
  ids: readonly (readonly number[])[],
): Promise<Difference[]> {
  const hf = run(() => HfTokenizer.fromString(JSON.stringify(json)));
  const kiln = run(() => Tokenizer.fromJSON(structuredClone(json)));
  if ("error" in hf || "error" in kiln) {
    if (agree(kiln, "error" in hf ? hf : { ok: null })) return [];
    const detail = "error" in hf
      ? ("error" in kiln
        ? `Kiln refuses with a non-Kiln error: ${show(kiln)}`
        : `Hugging Face refuses (${show(hf)}) but Kiln loads`)
      : `Kiln refuses (${show(kiln)}) but Hugging Face loads`;
    return [{ kind: "load", at: 0, detail }];
  }
  const ref = hf.ok, ours = kiln.ok;
  const out: Difference[] = [];
  const decodeBoth = async (list: readonly number[], at: number, kinds: [DiffKind, DiffKind]) => {
    for (const skip of [false, true]) {
      const k = run(() => ours.decode(list, { skipSpecialTokens: skip }));
      const h = await runAsync(() => ref.decode([...list], skip));
      if (!agree(k, h)) {
        out.push({
          kind: kinds[skip ? 1 : 0],
          at,
          detail: `decode(${JSON.stringify(list)}, skip ${skip}): kiln ${show(k)}, hf ${show(h)}`,
        });
      }
    }
  };
  for (let i = 0; i < texts.length; i++) {
    let refIds: number[] | undefined;
    for (const add of [false, true]) {
      const k = run(() => ours.encode(texts[i], { addSpecialTokens: add }));
      const h = await runAsync(async () =>
        (await ref.encode(texts[i], null, { addSpecialTokens: add })).getIds()
      );
      if ("ok" in h) refIds = h.ok;
      if (!agree(k, h)) {
        out.push({
          kind: add ? "encode_special" : "encode",
          at: i,
          detail: `encode(${JSON.stringify(texts[i])}, addSpecialTokens ${add}): kiln ${
            show(k)
          }, hf ${show(h)}`,
        });
      }
    }
    if (refIds) await decodeBoth(refIds, i, ["decode", "decode_skip"]);
  }
  for (let j = 0; j < ids.length; j++) {
    await decodeBoth(ids[j], j, ["decode_ids", "decode_ids_skip"]);
  }
  return out;
}

/**
 * A case's decode sequences as ids of its rendered file (tokens no longer there dropped).
 *
 * @example
 * ```ts
 * import { generateTokenizerCase } from "./tokenizers_gen.ts";
 * import { caseIds } from "./tokenizers_check.ts";
 * caseIds(generateTokenizerCase(1)).length; // 3
 * ```
 */
export function caseIds(c: TokenizerCase): number[][] {
  const vocab = vocabOf(c.spec);
  const index = new Map(vocab.map((t, i) => [t, i]));
  const added = addedIds(c.spec, vocab);
  return c.decodes.map((seq) =>
    seq.map((t) => added.get(t) ?? index.get(t)).filter((id): id is number => id !== undefined)
  );
}

/**
 * Checks one generated case against Hugging Face.
 *
 * @example
 * ```ts ignore
 * import { generateTokenizerCase } from "./tokenizers_gen.ts";
 * import { checkTokenizerCase } from "./tokenizers_check.ts";
 * (await checkTokenizerCase(generateTokenizerCase(1))).length; // 0
 * ```
 */
export async function checkTokenizerCase(c: TokenizerCase): Promise<Difference[]> {
  return await compareWithHf(renderTokenizerJson(c.spec), c.texts, caseIds(c));
}

/**
 * Throws with every difference when Kiln and Hugging Face disagree on `json`: the call a
 * printed failure's `Deno.test` makes.
 *
 * @example
 * ```ts ignore
 * import { assertMatchesHf } from "./tokenizers_check.ts";
 * await assertMatchesHf(json, { texts: ["a  b"], ids: [[3, 4]] });
 * ```
 */
export async function assertMatchesHf(
  json: Json,
  input: { texts?: readonly string[]; ids?: readonly (readonly number[])[] },
): Promise<void> {
  const diffs = await compareWithHf(json, input.texts ?? [], input.ids ?? []);
  if (diffs.length) {
    throw new Error(
      `Kiln differs from Hugging Face tokenizers:\n${
        diffs.map((d) => `  ${d.kind}: ${d.detail}`).join("\n")
      }`,
    );
  }
}
