/**
 * What a generation leaves in a model's caches, for the next prompt to reuse
 * (a chat's next turn repeats the whole conversation so far). Attention's KV
 * caches are indexed by position: rows a later run did not overwrite stay
 * valid, so any common prefix of the new prompt and the tokens run so far can
 * be skipped. Recurrent states (Mamba's convolution and scan states, S4's)
 * are updated in place and cannot be rewound: the cache keeps a device copy of
 * them right after the prompt ran, so a model with such states reuses the
 * previous prompt whole or not at all.
 *
 * @module
 */

/** What the cache needs of an executable: `Executable` and `PrebuiltExecutable` have it. */
export interface StateKeeper {
  /** Keeps a device copy of these states (queued after the work already submitted). */
  saveStates(names: readonly string[]): void;
  /** Writes the kept copies back. */
  restoreStates(names: readonly string[]): void;
  /** Zeroes every persistent state. */
  resetStates(): void;
}

/**
 * The longest common prefix of two id sequences.
 *
 * @example
 * ```ts
 * import { commonPrefix } from "@kiln/kiln/runtime";
 * commonPrefix(new Uint32Array([1, 2, 3]), new Uint32Array([1, 2, 4, 5])); // 2
 * ```
 */
export function commonPrefix(a: ArrayLike<number>, b: ArrayLike<number>): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a[i] === b[i]) i++;
  return i;
}

/**
 * Tracks which tokens a model's caches hold from position 0, and starts each
 * generation either fresh or after the prefix it can reuse.
 *
 * @example
 * ```ts
 * import { compile, cpuDevice, GraphBuilder } from "@kiln/kiln";
 * import { PromptCache } from "@kiln/kiln/runtime";
 * const g = new GraphBuilder();
 * const s = g.state("s", [1]);
 * g.assign(s, s.add(1));
 * g.output("s", s);
 * const exe = compile(g.build(), cpuDevice());
 * const cache = new PromptCache(["s"]);
 * cache.begin(exe, new Uint32Array([5, 6, 7]), 0); // a fresh run: states zeroed
 * cache.promptQueued(exe); // the prompt is queued: its states kept
 * const next = new Uint32Array([5, 6, 7, 8]);
 * cache.reusable(next); // 3
 * cache.begin(exe, next, 3); // the states after [5, 6, 7] restored
 * ```
 */
export class PromptCache {
  /**
   * States a step updates in place; undefined when unknown (a module built
   * before they were recorded), which turns reuse off.
   */
  readonly recurrent: readonly string[] | undefined;
  /** Tokens whose attention rows are valid from position 0, the first `#known` of them. */
  #ids = new Uint32Array(0);
  #known = 0;
  /** Prompt length at which the recurrent states were kept (0: none). */
  #saved = 0;
  #keeper?: StateKeeper;
  /** Length of the prompt of the generation under way. */
  #prompt = 0;
  /** The last generated id: it is in the caches only once a later step ran on it. */
  #pending = -1;

  /**
   * `recurrent`: the states a step updates in place (empty for a model of
   * attention alone; undefined: unknown, never reuse).
   */
  constructor(recurrent: readonly string[] | undefined) {
    this.recurrent = recurrent;
  }

  /**
   * Prompt tokens of `ids` that need not run again: the common prefix with the
   * tokens cached (at least one token is always left to run, for the first
   * sample's logits); with recurrent states, the previous prompt whole when
   * `ids` extends it, else 0.
   */
  reusable(ids: Uint32Array): number {
    const r = this.recurrent;
    if (r === undefined || this.#known === 0) return 0;
    const common = commonPrefix(ids, this.#ids.subarray(0, this.#known));
    if (r.length === 0) return Math.min(common, ids.length - 1);
    return this.#saved > 0 && common >= this.#saved && ids.length > this.#saved ? this.#saved : 0;
  }

  /**
   * Starts a generation of prompt `ids` after its first `start` tokens
   * (`reusable(ids)`, or 0 for a fresh run): restores the recurrent states
   * kept for that prefix, or with `start` 0 zeroes every state on `exe`. The
   * cache then holds the prompt (see {@linkcode PromptCache.promptQueued},
   * {@linkcode PromptCache.generated}).
   */
  begin(exe: StateKeeper, ids: Uint32Array, start: number): void {
    if (start > this.reusable(ids)) {
      throw new RangeError(`PromptCache: ${start} tokens of this prompt are not cached`);
    }
    if (start === 0) exe.resetStates();
    else if (this.recurrent!.length) this.#keeper!.restoreStates(this.recurrent!);
    this.#ids = new Uint32Array(ids.length + 64);
    this.#ids.set(ids);
    this.#prompt = ids.length;
    // Until the prompt is queued, only the reused prefix is certain.
    this.#known = start;
    this.#saved = 0;
    this.#pending = -1;
  }

  /** The prompt is queued: its rows are written, and recurrent states are kept here. */
  promptQueued(exe: StateKeeper): void {
    this.#known = this.#prompt;
    if (this.recurrent?.length) {
      exe.saveStates(this.recurrent);
      this.#saved = this.#known;
      this.#keeper = exe;
    }
  }

  /** Generated id `id` was yielded: the one before it was run by the step that sampled it. */
  generated(id: number): void {
    if (this.#pending >= 0) {
      if (this.#known === this.#ids.length) {
        const grown = new Uint32Array(this.#ids.length * 2);
        grown.set(this.#ids);
        this.#ids = grown;
      }
      this.#ids[this.#known++] = this.#pending;
    }
    this.#pending = id;
  }

  /** Something else ran on the states (`forward`, `step`): nothing is reusable. */
  invalidate(): void {
    this.#known = 0;
    this.#saved = 0;
    this.#pending = -1;
  }
}
