/**
 * Typed access to the fields of one config.json, with errors that name the
 * file, the field and the value. `null` counts as absent, as transformers reads
 * it (`"head_dim": null` means "derive it").
 *
 * @module
 */

import { HF_HIDDEN_ACTS, type HiddenAct } from "../activation.ts";

/**
 * Largest size or count a field may hold: every size Kiln builds from a config
 * indexes GPU buffers with 32-bit integers, and a bigger value is a corrupt or
 * hostile file, not a model.
 *
 * @example
 * ```ts
 * import { MAX_CONFIG_INT } from "./reader.ts";
 * MAX_CONFIG_INT; // 2147483647
 * ```
 */
export const MAX_CONFIG_INT = 2 ** 31 - 1;

/**
 * A config value for messages: JSON, cut to 100 characters, "nothing (missing)"
 * for an absent field — a huge or deeply nested value must not make a huge
 * message (or overflow the stack while being written).
 *
 * @example
 * ```ts
 * import { show } from "./reader.ts";
 * show("x".repeat(1000)).length; // about 120
 * show(undefined); // "nothing (missing)"
 * ```
 */
export function show(v: unknown): string {
  if (v === undefined) return "nothing (missing)";
  if (typeof v === "number") return String(v); // NaN and ±Infinity (JSON would say null)
  let text: string;
  try {
    text = JSON.stringify(v) ?? String(v);
  } catch {
    return Array.isArray(v) ? "a deeply nested array" : "a deeply nested object";
  }
  return text.length <= 100 ? text : `${text.slice(0, 100)}… (${text.length} characters)`;
}

/**
 * Reads fields of a config.json object for one architecture.
 *
 * @example
 * ```ts
 * import { ConfigReader } from "./reader.ts";
 * const c = new ConfigReader({ hidden_size: 64, head_dim: null }, "config.json", "MixtralForCausalLM");
 * c.int("hidden_size"); // 64
 * c.has("head_dim"); // false
 * ```
 */
export class ConfigReader {
  /** The raw object. */
  readonly json: Record<string, unknown>;
  /** The file, for messages. */
  readonly file: string;
  /** The architecture being read, for messages. */
  readonly architecture: string;

  /** Wraps `json` read from `file` as `architecture`. */
  constructor(json: Record<string, unknown>, file: string, architecture: string) {
    this.json = json;
    this.file = file;
    this.architecture = architecture;
  }

  /** The field is present and not null. */
  has(name: string): boolean {
    const v = this.json[name];
    return v !== undefined && v !== null;
  }

  /** The raw value, `undefined` when absent or null. */
  raw(name: string): unknown {
    return this.has(name) ? this.json[name] : undefined;
  }

  /** A non-negative integer field (at most {@linkcode MAX_CONFIG_INT}), or `fallback` when absent. */
  int(name: string, fallback?: number): number {
    const v = this.raw(name) ?? fallback;
    if (typeof v !== "number" || !Number.isInteger(v) || v < 0) {
      throw new TypeError(
        `${this.file}: field "${name}" must be a non-negative integer, got ${
          show(this.json[name])
        }`,
      );
    }
    if (v > MAX_CONFIG_INT) {
      throw new RangeError(
        `${this.file}: field "${name}" is ${v}, over the limit of ${MAX_CONFIG_INT}`,
      );
    }
    return v;
  }

  /** A positive integer field. */
  positive(name: string, fallback?: number): number {
    const v = this.int(name, fallback);
    if (v === 0) throw new RangeError(`${this.file}: field "${name}" must be > 0, got 0`);
    return v;
  }

  /** A finite number field. */
  num(name: string, fallback?: number): number {
    const v = this.raw(name) ?? fallback;
    if (typeof v !== "number" || !Number.isFinite(v)) {
      throw new TypeError(
        `${this.file}: field "${name}" must be a number, got ${show(this.json[name])}`,
      );
    }
    return v;
  }

  /** A finite number field that must not be negative (an epsilon, a rate). */
  nonNegative(name: string, fallback?: number): number {
    const v = this.num(name, fallback);
    if (v < 0) throw new RangeError(`${this.file}: field "${name}" must be >= 0, got ${v}`);
    return v;
  }

  /** A boolean field. */
  bool(name: string, fallback: boolean): boolean {
    const v = this.raw(name) ?? fallback;
    if (typeof v !== "boolean") {
      throw new TypeError(`${this.file}: field "${name}" must be a boolean, got ${show(v)}`);
    }
    return v;
  }

  /** A string field. */
  str(name: string, fallback: string): string {
    const v = this.raw(name) ?? fallback;
    if (typeof v !== "string") {
      throw new TypeError(`${this.file}: field "${name}" must be a string, got ${show(v)}`);
    }
    return v;
  }

  /** A list of non-negative integers (each at most {@linkcode MAX_CONFIG_INT}). */
  intList(name: string): number[] {
    const v = this.raw(name) ?? [];
    if (
      !Array.isArray(v) ||
      v.some((x) => typeof x !== "number" || !Number.isInteger(x) || x < 0 || x > MAX_CONFIG_INT)
    ) {
      throw new TypeError(
        `${this.file}: field "${name}" must be a list of non-negative integers up to ${MAX_CONFIG_INT}, got ${
          show(v)
        }`,
      );
    }
    return v as number[];
  }

  /** A list of strings, or undefined when absent. */
  strList(name: string): string[] | undefined {
    const v = this.raw(name);
    if (v === undefined) return undefined;
    if (!Array.isArray(v) || v.some((x) => typeof x !== "string")) {
      throw new TypeError(
        `${this.file}: field "${name}" must be a list of strings, got ${show(v)}`,
      );
    }
    return v as string[];
  }

  /** Refuses a field whose value asks for semantics Kiln does not implement. */
  refuse(name: string, why: string): never {
    throw new TypeError(
      `${this.file}: ${name} ${
        show(this.json[name])
      } is not supported by ${this.architecture} (${why})`,
    );
  }

  /**
   * `hidden_act` (or `name`) as Kiln's activation: nothing for silu (the
   * default), `{ hiddenAct }` for the other activations transformers' `ACT2FN`
   * names that Kiln implements; anything else refused by name.
   */
  hiddenAct(name = "hidden_act"): { hiddenAct?: Exclude<HiddenAct, "silu"> } {
    const raw = this.str(name, "silu");
    const act = Object.hasOwn(HF_HIDDEN_ACTS, raw) ? HF_HIDDEN_ACTS[raw] : undefined;
    if (act === undefined) {
      this.refuse(name, `implemented: ${Object.keys(HF_HIDDEN_ACTS).join(", ")}`);
    }
    return act === "silu" ? {} : { hiddenAct: act };
  }

  /** Refuses `name` when it is present and truthy (a feature the architecture does not have). */
  absent(name: string, why: string): void {
    const v = this.raw(name);
    if (v !== undefined && v !== false && v !== 0) this.refuse(name, why);
  }
}
