/**
 * Shrinking a failing `tokenizers` case: greedy, one smaller candidate at a time (keep
 * only the failing text or id sequence, drop added tokens, components, Sequence members,
 * model flags, merges with the merges built on them, base symbols no merge needs, then
 * characters of the text and ids of the sequence), keeping each candidate that still
 * fails the same way. Private to the campaign.
 *
 * @module
 */

import type { Json, TokenizerCase, TokSpec } from "./tokenizers_gen.ts";
import type { DiffKind } from "./tokenizers_check.ts";

/** Most candidates tried per failure: shrinking stays within seconds. */
const MAX_TRIES = 800;

type Candidate = () => TokenizerCase;

function withSpec(c: TokenizerCase, patch: Partial<TokSpec>): TokenizerCase {
  return { ...c, spec: { ...c.spec, ...patch } };
}

/** A component without one member of its Sequence, the lone member, or null. */
function componentCandidates(value: Json | null, key: string): (Json | null)[] {
  if (value === null) return [];
  const out: (Json | null)[] = [null];
  const list = value[key];
  if (value.type === "Sequence" && Array.isArray(list)) {
    if (list.length === 1) out.push(list[0] as Json);
    for (let i = 0; i < list.length; i++) {
      out.push({ ...value, [key]: list.filter((_, j) => j !== i) });
    }
  }
  return out;
}

/** Merges less `drop` and every later merge that needs a token only they make. */
function dropMerges(spec: TokSpec, drop: Set<number>): [string, string][] {
  const base = new Set(spec.base);
  const made = new Set<string>();
  const out: [string, string][] = [];
  spec.merges.forEach(([a, b], i) => {
    const ok = !drop.has(i) && (base.has(a) || made.has(a)) && (base.has(b) || made.has(b));
    if (!ok) return;
    out.push([a, b]);
    made.add(a + b);
  });
  return out;
}

/** Chunks of `n` indices: halves, quarters, … down to single indices, last first. */
function* chunks(n: number): Generator<Set<number>> {
  for (let size = Math.max(1, n >> 1); size >= 1; size >>= 1) {
    for (let start = n - size; start > -size; start -= size) {
      const s = new Set<number>();
      for (let i = Math.max(0, start); i < start + size; i++) s.add(i);
      yield s;
    }
    if (size === 1) break;
  }
}

function* candidates(c: TokenizerCase, kind: DiffKind, at: number): Generator<Candidate> {
  const textKind = kind === "encode" || kind === "encode_special" || kind === "decode" ||
    kind === "decode_skip";
  if (kind === "load" && (c.texts.length || c.decodes.length)) {
    yield () => ({ ...c, texts: [], decodes: [] });
  }
  if (textKind && (c.texts.length > 1 || c.decodes.length)) {
    yield () => ({ ...c, texts: [c.texts[at]], decodes: [] });
  }
  if (!textKind && kind !== "load" && (c.texts.length || c.decodes.length > 1)) {
    yield () => ({ ...c, texts: [], decodes: [c.decodes[at]] });
  }
  const s = c.spec;
  if (s.fault) yield () => withSpec(c, { fault: null });
  for (let i = s.added.length - 1; i >= 0; i--) {
    yield () => withSpec(c, { added: s.added.filter((_, j) => j !== i) });
  }
  if (s.post) yield () => withSpec(c, { post: null });
  for (const n of componentCandidates(s.normalizer, "normalizers")) {
    yield () => withSpec(c, { normalizer: n });
  }
  for (const p of componentCandidates(s.pre_tokenizer, "pretokenizers")) {
    yield () => withSpec(c, { pre_tokenizer: p });
  }
  for (const d of componentCandidates(s.decoder, "decoders")) {
    yield () => withSpec(c, { decoder: d });
  }
  for (const [k, v] of Object.entries(s.model)) {
    if (v === true) yield () => withSpec(c, { model: { ...s.model, [k]: false } });
    if (typeof v === "string") yield () => withSpec(c, { model: { ...s.model, [k]: null } });
  }
  if (!s.mergeStrings && !s.merges.flat().some((t) => t.includes(" "))) {
    yield () => withSpec(c, { mergeStrings: true });
  }
  for (const drop of chunks(s.merges.length)) {
    yield () => withSpec(c, { merges: dropMerges(s, drop) });
  }
  const needed = new Set(s.merges.flat());
  const free = s.base.map((t, i) => needed.has(t) ? -1 : i).filter((i) => i >= 0);
  for (const drop of chunks(free.length)) {
    const gone = new Set([...drop].map((i) => free[i]));
    yield () => withSpec(c, { base: s.base.filter((_, i) => !gone.has(i)) });
  }
  if (textKind) {
    const chars = Array.from(c.texts[at] ?? "");
    for (const drop of chunks(chars.length)) {
      const text = chars.filter((_, i) => !drop.has(i)).join("");
      yield () => ({ ...c, texts: c.texts.map((t, i) => i === at ? text : t) });
    }
  } else if (kind !== "load") {
    const seq = c.decodes[at] ?? [];
    for (const drop of chunks(seq.length)) {
      const kept = seq.filter((_, i) => !drop.has(i));
      yield () => ({ ...c, decodes: c.decodes.map((d, i) => i === at ? kept : d) });
    }
  }
}

/**
 * The smallest case found that still fails with a difference of `kind`, and the index of
 * the failing text or sequence in it.
 *
 * @example
 * ```ts ignore
 * const small = await shrinkTokenizerCase(c, "encode", 2, async (x) => (await checkTokenizerCase(x)).find(d => d.kind === "encode")?.at);
 * ```
 */
export async function shrinkTokenizerCase(
  c: TokenizerCase,
  kind: DiffKind,
  at: number,
  failsAt: (c: TokenizerCase) => Promise<number | undefined>,
): Promise<{ shrunk: TokenizerCase; at: number; tries: number }> {
  let current = c, where = at, tries = 0;
  for (let progress = true; progress && tries < MAX_TRIES;) {
    progress = false;
    for (const make of candidates(current, kind, where)) {
      if (++tries > MAX_TRIES) break;
      const next = make();
      const found = await failsAt(next);
      if (found !== undefined) {
        current = next;
        where = found;
        progress = true;
        break;
      }
    }
  }
  return { shrunk: current, at: where, tries };
}
