/**
 * The post-processor of a Hugging Face `tokenizer.json`: the special tokens
 * (BOS/EOS) put around one sequence's ids when they are asked for. Private to
 * the tokenizer (`tokenizer.ts`).
 *
 * @module
 */

import {
  asArray,
  asObject,
  asString,
  type JsonPath,
  quote,
  sequenceMembers,
  tokenId,
} from "./json.ts";

/**
 * A post-processor: adds special tokens around one sequence's ids.
 *
 * @example
 * ```ts
 * import type { PostProcessor } from "./post_processor.ts";
 * const bos: PostProcessor = { apply: (ids) => [1, ...ids], before: [1], after: [] };
 * bos.apply([5, 6]); // [1, 5, 6]
 * ```
 */
export interface PostProcessor {
  /** The ids with the special tokens added. */
  apply(ids: number[]): number[];
  /** Special ids the template puts before the sequence. */
  before: number[];
  /** Special ids the template puts after the sequence. */
  after: number[];
}

const POST_PROCESSORS = [
  "TemplateProcessing",
  "ByteLevel",
  "Sequence",
  "RobertaProcessing",
  "BertProcessing",
];

/**
 * Parses `post_processor` (absent or null: none). `idOf` resolves the token
 * names of Roberta/Bert processors that give no id.
 *
 * @example
 * ```ts
 * import { parsePostProcessor } from "./post_processor.ts";
 * import { JsonPath } from "./parts.ts";
 * const post = parsePostProcessor(
 *   { type: "TemplateProcessing", single: [{ SpecialToken: { id: "<s>" } }, { Sequence: { id: "A" } }],
 *     special_tokens: { "<s>": { ids: [1] } } },
 *   new JsonPath("tokenizer.json", "post_processor"),
 *   () => undefined,
 * );
 * post?.apply([5]); // [1, 5]
 * ```
 */
export function parsePostProcessor(
  value: unknown,
  at: JsonPath,
  idOf: (token: string) => number | undefined,
): PostProcessor | undefined {
  if (value === null || value === undefined) return undefined;
  const obj = asObject(value, at);
  const type = asString(obj.type, at.key("type"));
  switch (type) {
    case "ByteLevel":
      return { apply: (x) => x, before: [], after: [] };
    case "Sequence": {
      const list = sequenceMembers(
        obj,
        "processors",
        at,
        (p, here) => parsePostProcessor(p, here, idOf),
      );
      return {
        apply: (x) => list.reduce((acc, p) => p.apply(acc), x),
        before: list.flatMap((p) => p.before),
        after: list.flatMap((p) => p.after),
      };
    }
    case "TemplateProcessing": {
      const specials = asObject(obj.special_tokens ?? {}, at.key("special_tokens"));
      const before: number[] = [], after: number[] = [];
      let seenA = false;
      asArray(obj.single, at.key("single")).forEach((item, i) => {
        const here = at.key("single").index(i);
        const it = asObject(item, here);
        if (it.Sequence !== undefined) {
          seenA = true;
          return;
        }
        const name = asString(
          asObject(it.SpecialToken, here.key("SpecialToken")).id,
          here.key("SpecialToken").key("id"),
        );
        // Own keys only: a name like "toString" must not find Object.prototype's.
        const spec = Object.hasOwn(specials, name) ? specials[name] : undefined;
        if (spec === undefined) {
          throw here.error(`names special token ${quote(name)}, which special_tokens lacks`);
        }
        const specAt = at.key("special_tokens").entry(name);
        const list = asArray(asObject(spec, specAt).ids, specAt.key("ids"));
        list.forEach((id, k) => {
          (seenA ? after : before).push(
            tokenId(id, specAt.key("ids").index(k), "is not a token id"),
          );
        });
      });
      return { apply: (x) => [...before, ...x, ...after], before, after };
    }
    case "RobertaProcessing":
    case "BertProcessing": {
      const pair = (name: string): number => {
        const p = asArray(obj[name], at.key(name));
        if (typeof p[1] === "number") {
          return tokenId(p[1], at.key(name).index(1), "is not a token id");
        }
        const named = typeof p[0] === "string" ? idOf(p[0]) : undefined;
        if (named === undefined) throw at.key(name).error("is not a [token, id] pair");
        return named;
      };
      const cls = pair("cls"), sep = pair("sep");
      return { apply: (x) => [cls, ...x, sep], before: [cls], after: [sep] };
    }
    default:
      throw at.key("type").error(
        `${quote(type)} is not supported (supported: ${POST_PROCESSORS.join(", ")})`,
      );
  }
}
