/**
 * The two sides of the `chat-templates` campaign and their comparison. Python: one
 * process that imports `tools/chat_template_reference.py` (the oracle, with its fixed
 * clock) and renders each batch of cases, sent as one JSON line, with the oracle's
 * `render_case` — transformers' `_compile_jinja_template(...).render(**context)`, and
 * `render_jinja_template` beside it when there are messages; a batch is one round trip,
 * never one process per case. Kiln: `ChatTemplate.parse(...).apply(...)` when the
 * context has messages, `.render(context)` otherwise, as `tests/chat_template_test.ts`
 * runs the fixtures; and the same rules for errors: a `TemplateError` must carry the
 * same message, a `TemplateSyntaxError` / `TemplateAssertionError` is a SyntaxError (and
 * so is Python's own SyntaxError, raised when the code Jinja generates does not compile:
 * `{% break %}` in a macro), any other Python error a TypeError or RangeError. A Kiln
 * error whose message JavaScript wrote ("Cannot read properties of …") is a mismatch
 * whatever Python did.
 *
 * @module
 */

import { ChatTemplate, TemplateError } from "../../app/chat_template/mod.ts";
import type { ChatTemplateCase } from "./chat_templates_gen.ts";

/**
 * What one side did: its output, or its error as "Class: message". `oracle` marks a
 * case the oracle itself refused (its two renderings disagreed): never compared.
 *
 * @example
 * ```ts
 * import type { Outcome } from "./chat_templates_oracle.ts";
 * const o: Outcome = { error: "TemplateError: bad role" };
 * ```
 */
export interface Outcome {
  output?: string;
  error?: string;
  oracle?: string;
}

/**
 * A disagreement: what kind, a signature that a shrunk case must keep, both sides.
 *
 * @example
 * ```ts
 * import type { Mismatch } from "./chat_templates_oracle.ts";
 * const m: Mismatch = { signature: "output differs", python: { output: "a" }, kiln: { output: "b" } };
 * ```
 */
export interface Mismatch {
  signature: string;
  python: Outcome;
  kiln: Outcome;
}

/** The moment the oracle's `datetime.now()` is patched to, in local time. */
const NOW = new Date(2026, 6, 26, 12, 0, 0);

/** Messages JavaScript itself writes: a Kiln bug whatever Python did. */
const ENGINE_ERROR =
  /Cannot read propert|is not a function|Maximum call stack|Invalid (array|string) length|cannot read property Symbol|is not defined$|Cannot convert/;

/**
 * Renders `c` with Kiln, as the fixture test does.
 *
 * @example
 * ```ts
 * import { runKiln } from "./chat_templates_oracle.ts";
 * runKiln({ name: "a", seed: 0, template: "{{ x }}", context: { x: 1 } }); // { output: "1" }
 * ```
 */
export function runKiln(c: ChatTemplateCase): Outcome & { thrown?: unknown } {
  try {
    const t = ChatTemplate.parse(c.template);
    const { messages, tools, documents, add_generation_prompt, ...rest } = c.context;
    if (!Array.isArray(messages) || messages.length === 0) {
      return { output: t.render(c.context, NOW) };
    }
    return {
      output: t.apply(messages as never, {
        tools: (tools as unknown[] | null) ?? undefined,
        documents: (documents as unknown[] | null) ?? undefined,
        addGenerationPrompt: add_generation_prompt === true,
        variables: rest,
        now: NOW,
      }),
    };
  } catch (e) {
    const name = e instanceof TemplateError
      ? "TemplateError"
      : e instanceof Error
      ? e.constructor.name
      : typeof e;
    return { error: `${name}: ${e instanceof Error ? e.message : String(e)}`, thrown: e };
  }
}

/** An error message with its quoted names and numbers blotted: what a shrunk case keeps. */
function shape(message: string): string {
  const s = message.replace(/'[^']*'|"[^"]*"/g, "'_'").replace(/\d+/g, "N");
  return s.length > 60 ? s.slice(0, 60) + "…" : s;
}

/**
 * Compares the two sides; undefined when they agree.
 *
 * @example
 * ```ts
 * import { compareOutcomes } from "./chat_templates_oracle.ts";
 * compareOutcomes({ output: "a" }, { output: "a" }); // undefined
 * compareOutcomes({ output: "a" }, { output: "b" })?.signature; // "output differs"
 * ```
 */
export function compareOutcomes(
  python: Outcome,
  kiln: Outcome & { thrown?: unknown },
): Mismatch | undefined {
  if (python.oracle !== undefined) return undefined;
  // Printed generators and objects hold addresses; a case shrunk off its `|list` prints one.
  if (python.output !== undefined && / at 0x[0-9a-f]+>/.test(python.output)) return undefined;
  // Kiln's own checks of `apply`'s arguments (a message without a role): only shrinking
  // makes such contexts, and they are no question of rendering.
  if (kiln.error?.startsWith("TypeError: apply: ")) return undefined;
  const cls = (e: string) => `${e.split(": ")[0]} (${shape(e.split(": ").slice(1).join(": "))})`;
  const m = (signature: string): Mismatch => ({
    signature,
    python,
    kiln: { output: kiln.output, error: kiln.error },
  });
  if (python.error === undefined) {
    if (kiln.error !== undefined) return m(`Kiln raised ${cls(kiln.error)}, Python rendered`);
    return kiln.output === python.output ? undefined : m("output differs");
  }
  if (kiln.error === undefined) return m(`Python raised ${cls(python.error)}, Kiln rendered`);
  const e = kiln.thrown;
  const [pyCls, ...rest] = python.error.split(": ");
  if (e instanceof Error && ENGINE_ERROR.test(e.message)) {
    return m(`Kiln failed inside: ${cls(kiln.error)}, Python raised ${cls(python.error)}`);
  }
  if (pyCls === "TemplateError") {
    if (!(e instanceof TemplateError)) return m(`Python TemplateError, Kiln ${cls(kiln.error)}`);
    return e.message === rest.join(": ") ? undefined : m("TemplateError message differs");
  }
  // Python's own SyntaxError: the code Jinja generated does not compile ('continue' in a
  // macro), a template that cannot be compiled as much as a TemplateSyntaxError.
  if (
    pyCls === "TemplateSyntaxError" || pyCls === "TemplateAssertionError" || pyCls === "SyntaxError"
  ) {
    return e instanceof SyntaxError
      ? undefined
      : m(`Python ${cls(python.error)}, Kiln ${cls(kiln.error)}`);
  }
  return e instanceof TypeError || e instanceof RangeError
    ? undefined
    : m(`Python ${cls(python.error)}, Kiln ${cls(kiln.error)}`);
}

const DRIVER = `
import json, sys
sys.path.insert(0, sys.argv[1])
import chat_template_reference as ref
print("ready", flush=True)
for line in sys.stdin.buffer:
    out = []
    for c in json.loads(line.decode("utf-8")):
        try:
            out.append(ref.render_case(c, sys.argv[1]))
        except SystemExit as e:
            out.append({"name": c["name"], "oracle": str(e)})
    sys.stdout.write(json.dumps(out) + "\\n")
    sys.stdout.flush()
`;

/**
 * The Python side: one process, fed a batch per line, answering a line per batch.
 * Restarted after a batch that does not come back in time (that batch's cases are then
 * split until the one that hangs is found, and marked `oracle: "timeout"`).
 *
 * @example
 * ```ts ignore
 * const oracle = new PythonOracle("/tmp/tfenv/bin/python");
 * const [r] = await oracle.render([{ name: "a", seed: 0, template: "{{ 1 }}", context: {} }]);
 * r.output; // "1"
 * await oracle.close();
 * ```
 */
export class PythonOracle {
  #child?: Deno.ChildProcess;
  #writer?: WritableStreamDefaultWriter<Uint8Array>;
  #lines: string[] = [];
  #waiting?: (line: string | undefined) => void;
  #stderr = "";
  /** Batches sent so far. */
  batches = 0;

  /** @param python the interpreter, with transformers and jinja2 installed */
  constructor(readonly python: string) {}

  async #start(): Promise<void> {
    const tools = new URL("../", import.meta.url).pathname;
    const child = new Deno.Command(this.python, {
      args: ["-c", DRIVER, tools],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#child = child;
    this.#writer = child.stdin.getWriter();
    this.#lines = [];
    this.#stderr = "";
    (async () => {
      for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) {
        this.#stderr = (this.#stderr + chunk).slice(-4000);
      }
    })().catch(() => {});
    (async () => {
      let buffered = "";
      for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
        const parts = (buffered + chunk).split("\n");
        buffered = parts.pop()!;
        for (const p of parts) if (this.#child === child) this.#deliver(p);
      }
      if (this.#child === child) this.#deliver(undefined);
    })().catch(() => this.#child === child && this.#deliver(undefined));
    if (await this.#next(120_000) !== "ready") {
      await this.close();
      throw new Error(
        `chat-templates: ${this.python} could not load tools/chat_template_reference.py ` +
          `(it needs transformers and jinja2; --python picks the interpreter)\n${this.#stderr}`,
      );
    }
  }

  #deliver(line: string | undefined): void {
    if (this.#waiting) {
      const w = this.#waiting;
      this.#waiting = undefined;
      w(line);
    } else if (line !== undefined) this.#lines.push(line);
  }

  /** The next line from Python; undefined when it ends or `ms` pass first. */
  async #next(ms: number): Promise<string | undefined> {
    if (this.#lines.length) return this.#lines.shift();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const line = await new Promise<string | undefined>((resolve) => {
      this.#waiting = resolve;
      timer = setTimeout(() => {
        this.#waiting = undefined;
        resolve(undefined);
      }, ms);
    });
    clearTimeout(timer);
    return line;
  }

  async #roundTrip(cases: readonly ChatTemplateCase[], ms: number): Promise<Outcome[] | undefined> {
    if (!this.#child) await this.#start();
    const payload = cases.map((c) => ({ name: c.name, template: c.template, context: c.context }));
    this.batches++;
    let line: string | undefined;
    try {
      await this.#writer!.write(new TextEncoder().encode(JSON.stringify(payload) + "\n"));
      line = await this.#next(ms);
    } catch {
      line = undefined; // the process is gone
    }
    if (line === undefined) {
      await this.close();
      return undefined;
    }
    return JSON.parse(line) as Outcome[];
  }

  /** Renders `cases` (names unique within the batch); results in the same order. */
  async render(cases: readonly ChatTemplateCase[]): Promise<Outcome[]> {
    if (!cases.length) return [];
    const got = await this.#roundTrip(cases, 30_000 + 200 * cases.length);
    if (got) return got;
    if (cases.length === 1) return [{ oracle: "timeout or crash" }];
    const half = cases.length >> 1;
    return [...await this.render(cases.slice(0, half)), ...await this.render(cases.slice(half))];
  }

  /** Ends the process. */
  async close(): Promise<void> {
    const child = this.#child;
    if (!child) return;
    this.#child = undefined;
    try {
      await this.#writer?.close();
    } catch { /* already gone */ }
    try {
      child.kill();
    } catch { /* already exited */ }
    await child.status;
  }
}
