/**
 * Chat templates against transformers' own rendering: 24 real templates
 * (fixtures/chat_templates/templates, SOURCES.md) over conversations with
 * tools, tool calls, reasoning and unicode, and ~300 one-feature templates,
 * whose outputs `tools/chat_template_reference.py` wrote by rendering each
 * case with transformers' `_compile_jinja_template` / `render_jinja_template`
 * (Jinja 3.1.6). Then the places a template comes from (chat_template.jinja,
 * tokenizer_config.json, GGUF metadata) and `kiln generate --chat`.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import {
  ChatTemplate,
  folderChatTemplate,
  folderChatTemplateSource,
  folderSpecialTokens,
  ggufChatTemplate,
  TemplateError,
} from "../app/chat_template/mod.ts";
import { chatPrompt, checkChatOptions } from "../app/cli/chat.ts";
import { Tokenizer } from "../app/tokenizer/mod.ts";
import type { Model } from "../app/model/mod.ts";
import { tinyByteLevelTokenizerJson } from "./fixtures/tiny_tokenizers.ts";

const DIR = new URL("./fixtures/chat_templates/", import.meta.url).pathname;

interface Case {
  name: string;
  template?: string;
  template_file?: string;
  context: Record<string, unknown>;
  continue_final_message?: boolean | string;
}

const CASES: Case[] = JSON.parse(await Deno.readTextFile(join(DIR, "cases.json")));
type Expected = { name: string; output?: string; error?: string };
const EXPECTED = new Map<string, Expected>(
  (JSON.parse(await Deno.readTextFile(join(DIR, "expected.json"))) as Expected[]).map(
    (e) => [e.name, e],
  ),
);

/** Cases where Kiln knowingly differs, with why; each must still differ. */
const KNOWN_DIFFERENCES = new Map([
  ["arith/big_ints", "Python's ints are unbounded; Kiln's are doubles past 2^53"],
  ["filter/tojson_numbers", "an int literal past 2^53 prints as a double"],
]);

/** The same moment the reference patched `datetime.now()` to, in local time. */
const NOW = new Date(2026, 6, 26, 12, 0, 0);

const templates = new Map<string, string>();
async function templateOf(c: Case): Promise<string> {
  if (c.template !== undefined) return c.template;
  const f = c.template_file!;
  if (!templates.has(f)) templates.set(f, await Deno.readTextFile(join(DIR, "templates", f)));
  return templates.get(f)!;
}

/** Renders a case as a user would: `apply` when it is a conversation, `render` otherwise. */
async function run(c: Case): Promise<{ output?: string; error?: Error }> {
  try {
    const t = ChatTemplate.parse(await templateOf(c));
    const { messages, tools, documents, add_generation_prompt, ...rest } = c.context;
    if (!Array.isArray(messages) || messages.length === 0) {
      return { output: t.render(c.context, NOW) };
    }
    return {
      output: t.apply(messages, {
        tools: tools as unknown[] | undefined ?? undefined,
        documents: documents as unknown[] | undefined ?? undefined,
        addGenerationPrompt: add_generation_prompt === true,
        variables: rest,
        now: NOW,
        continueFinalMessage: c.continue_final_message,
      }),
    };
  } catch (e) {
    return { error: e as Error };
  }
}

/** Whether Kiln's error is the kind transformers raised. */
function sameKind(want: string, got: Error): boolean {
  const [cls, ...msg] = want.split(": ");
  if (cls === "TemplateError") {
    return got instanceof TemplateError && got.message === msg.join(": ");
  }
  if (cls === "TemplateSyntaxError" || cls === "TemplateAssertionError" || cls === "SyntaxError") {
    return got instanceof SyntaxError;
  }
  return got instanceof TypeError || got instanceof RangeError;
}

const groups = new Map<string, Case[]>();
for (const c of CASES) {
  const parts = c.name.split("/");
  const group = parts[0] === "real" ? `${parts[0]}/${parts[1]}` : parts[0];
  groups.set(group, [...(groups.get(group) ?? []), c]);
}

for (const [group, cases] of groups) {
  Deno.test(`chat templates: ${group} renders as transformers renders it (${cases.length} cases)`, async () => {
    for (const c of cases) {
      const want = EXPECTED.get(c.name);
      assert.ok(want, `${c.name}: no expected output (rerun tools/chat_template_reference.py)`);
      const got = await run(c);
      const same = want.error !== undefined
        ? got.error !== undefined && sameKind(want.error, got.error)
        : got.output === want.output;
      if (KNOWN_DIFFERENCES.has(c.name)) {
        assert.ok(!same, `${c.name} now matches: remove it from KNOWN_DIFFERENCES`);
        continue;
      }
      if (want.error !== undefined) {
        assert.ok(
          same,
          `${c.name}: transformers raised ${want.error}; Kiln ${
            got.error ? `raised ${got.error.name}: ${got.error.message}` : "rendered"
          }`,
        );
      } else {
        assert.equal(got.error, undefined, `${c.name}: ${got.error?.message}`);
        assert.equal(got.output, want.output, c.name);
      }
    }
  });
}

Deno.test("chat templates: syntax errors name the line; unknown filters fail when compiled", () => {
  assert.throws(
    () => ChatTemplate.parse("a\n{% if x %}b", "t.jinja"),
    /t\.jinja: .*line 2: unexpected end/,
  );
  assert.throws(() => ChatTemplate.parse("{{ 1 +  }}"), SyntaxError);
  // Jinja checks filter names at compile time, branches never taken included — but not
  // inside `if` blocks, where they fail only when evaluated.
  assert.throws(
    () => ChatTemplate.parse("{% for x in y %}{{ x|nope }}{% endfor %}"),
    /no filter named 'nope'/,
  );
  assert.equal(ChatTemplate.parse("{% if false %}{{ x|nope }}{% endif %}ok").render({}), "ok");
  assert.throws(
    () => ChatTemplate.parse("{% if true %}{{ x|nope }}{% endif %}").render({}),
    /no filter named 'nope'/,
  );
  assert.throws(() => ChatTemplate.parse("{% include 'x' %}"), /unknown tag 'include'/);
  assert.throws(() => ChatTemplate.parse(1 as unknown as string), TypeError);
});

Deno.test("chat templates: apply checks its messages and continueFinalMessage's limits", () => {
  const t = ChatTemplate.parse("{% for m in messages %}{{ m.role }}:{{ m.content }};{% endfor %}");
  assert.throws(() => t.apply([{ content: "x" } as never]), /message 0 needs a string "role"/);
  assert.throws(
    () =>
      t.apply([{ role: "user", content: "a" }], {
        continueFinalMessage: true,
        addGenerationPrompt: true,
      }),
    /cannot both be set/,
  );
  assert.equal(
    t.apply([{ role: "user", content: "q" }, { role: "assistant", content: "ans" }], {
      continueFinalMessage: true,
    }),
    "user:q;assistant:ans",
  );
  // A template that drops the message cannot continue it.
  const drops = ChatTemplate.parse("{% for m in messages %}{{ m.role }}{% endfor %}{# content #}");
  assert.throws(
    () => drops.apply([{ role: "assistant", content: "x" }], { continueFinalMessage: true }),
    /drops part of the final message/,
  );
});

Deno.test("chat templates: from chat_template.jinja, tokenizer_config.json (named too) and GGUF metadata", async () => {
  const dir = await Deno.makeTempDir({ prefix: "kiln_chat_" });
  try {
    assert.equal(await folderChatTemplate(dir), undefined);
    await Deno.writeTextFile(
      join(dir, "tokenizer_config.json"),
      JSON.stringify({
        bos_token: { content: "<s>", lstrip: false },
        eos_token: "</s>",
        chat_template: [
          { name: "default", template: "D{{ messages[0].content }}" },
          { name: "tool_use", template: "T{{ messages[0].content }}" },
        ],
      }),
    );
    const msgs = [{ role: "user", content: "x" }];
    assert.equal((await folderChatTemplate(dir))!.apply(msgs), "Dx");
    assert.equal((await folderChatTemplate(dir, "tool_use"))!.apply(msgs), "Tx");
    assert.equal(await folderChatTemplate(dir, "rag"), undefined);
    assert.deepEqual(await folderSpecialTokens(dir, { bos_token: "<b>", unk_token: "<u>" }), {
      bos_token: "<s>",
      eos_token: "</s>",
      unk_token: "<u>",
    });
    // transformers 5 saves the template beside, and reads that first.
    await Deno.writeTextFile(join(dir, "chat_template.jinja"), "J{{ messages[0].content }}\n");
    assert.equal((await folderChatTemplate(dir))!.apply(msgs), "Jx");
    await Deno.writeTextFile(join(dir, "tokenizer_config.json"), "{ not json");
    await Deno.remove(join(dir, "chat_template.jinja"));
    await assert.rejects(() => folderChatTemplate(dir), /tokenizer_config\.json: not JSON/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  const meta = new Map<string, unknown>([
    ["tokenizer.chat_template", "{{ bos_token }}{{ messages[0].content }}"],
    ["tokenizer.chat_template.rag", "R"],
  ]);
  assert.equal(
    ggufChatTemplate(meta, "m.gguf")!.apply([{ role: "user", content: "hi" }], {
      specialTokens: { bos_token: "<s>" },
    }),
    "<s>hi",
  );
  assert.equal(ggufChatTemplate(meta, "m.gguf", "rag")!.apply([]), "R");
  assert.throws(
    () => ggufChatTemplate(new Map([["tokenizer.chat_template", 3]]), "m.gguf"),
    /m\.gguf: metadata "tokenizer\.chat_template" must be a string/,
  );
});

Deno.test("chat templates: the text llama.cpp's converter writes to GGUF, as gguf-py finds it", async () => {
  const dir = await Deno.makeTempDir({ prefix: "kiln_chat_src_" });
  try {
    assert.equal(await folderChatTemplateSource(dir), undefined);
    await Deno.writeTextFile(
      join(dir, "chat_template.json"),
      JSON.stringify({ chat_template: "C" }),
    );
    assert.equal(await folderChatTemplateSource(dir), "C");
    await Deno.writeTextFile(join(dir, "chat_template.jinja"), "J");
    assert.equal(await folderChatTemplateSource(dir), "J");
    await Deno.mkdir(join(dir, "additional_chat_templates"));
    await Deno.writeTextFile(join(dir, "additional_chat_templates", "tool_use.jinja"), "T");
    await Deno.writeTextFile(join(dir, "additional_chat_templates", "rag.jinja"), "R");
    assert.deepEqual(await folderChatTemplateSource(dir), [
      { name: "default", template: "J" },
      { name: "rag", template: "R" },
      { name: "tool_use", template: "T" },
    ]);
    // gguf-py prefers tokenizer_config.json's own (transformers prefers the .jinja file).
    await Deno.writeTextFile(
      join(dir, "tokenizer_config.json"),
      JSON.stringify({ chat_template: "K" }),
    );
    assert.equal(await folderChatTemplateSource(dir), "K");
    assert.equal(ChatTemplate.parse("x").source, "x");
    assert.equal((await folderChatTemplate(dir))!.source, "J");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("kiln generate --chat: the conversation through the template, options checked first", async () => {
  assert.equal(await checkChatOptions({}), undefined);
  await assert.rejects(() => checkChatOptions({ system: "s" }), /--system needs --chat/);
  await assert.rejects(
    () => checkChatOptions({ chat: true, "chat-vars": "[1]" }),
    /must be a JSON object/,
  );
  await assert.rejects(
    () => checkChatOptions({ chat: true, "chat-vars": "{" }),
    /--chat-vars is not JSON/,
  );
  await assert.rejects(
    () => checkChatOptions({ chat: true, "chat-template": "/nonexistent/t.jinja" }),
    /--chat-template \/nonexistent\/t\.jinja/,
  );
  const dir = await Deno.makeTempDir({ prefix: "kiln_chat_cli_" });
  try {
    const tokenizer = Tokenizer.fromJSON(tinyByteLevelTokenizerJson());
    const model = { tokenizer } as unknown as Model;
    const flags = await checkChatOptions({
      chat: true,
      system: "Be brief.",
      "chat-vars": '{"x": 7}',
    });
    await assert.rejects(() => chatPrompt(dir, model, "hi", flags!), /has no chat template/);
    await Deno.writeTextFile(
      join(dir, "chat_template.jinja"),
      "{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}" +
        "{% if add_generation_prompt %}[assistant]{{ x }}{% endif %}" +
        "{% if messages|length > 2 %}{{ raise_exception('one turn only') }}{% endif %}",
    );
    assert.equal(
      await chatPrompt(dir, model, "hi", flags!),
      "[system]Be brief.[user]hi[assistant]7",
    );
    const file = join(dir, "other.jinja");
    await Deno.writeTextFile(file, "{{ raise_exception('no thanks') }}");
    const other = await checkChatOptions({ chat: true, "chat-template": file });
    await assert.rejects(
      () => chatPrompt(dir, model, "hi", other!),
      /the chat template refused the conversation: no thanks/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/**
 * Runs `kiln generate --chat --interactive` on the default model with template
 * `body` (written into `dir`), `stdin` as the later turns and `extra` flags.
 */
async function chatTurns(
  dir: string,
  body: string,
  stdin: string,
  extra: string[] = [],
): Promise<{ code: number; stdout: string; stderr: string }> {
  const template = join(dir, "turns.jinja");
  await Deno.writeTextFile(template, body);
  const cli = new URL("../cli.ts", import.meta.url).pathname;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", cli, "generate", "--chat", "--interactive", "--chat-template", template]
      .concat(["--prompt", "Call me Ishmael.", "--max-tokens", "3", "--quiet", ...extra]),
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  const w = child.stdin.getWriter();
  await w.write(new TextEncoder().encode(stdin));
  await w.close();
  const out = await child.output();
  const text = (b: Uint8Array) => new TextDecoder().decode(b);
  return { code: out.code, stdout: text(out.stdout), stderr: text(out.stderr) };
}

const TURNS = "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}assistant:";

Deno.test("kiln generate --chat --interactive: each stdin line is the next turn of one conversation", async () => {
  const dir = await Deno.makeTempDir({ prefix: "kiln_chat_turns_" });
  try {
    // The third user turn holds 5 messages (user, assistant, user, assistant, user): refused.
    const refuse =
      "{% if messages|length > 4 %}{{ raise_exception('turn of ' ~ (messages|length) ~ ' messages') }}" +
      "{% endif %}";
    const { code, stdout, stderr } = await chatTurns(
      dir,
      refuse + TURNS,
      "Some years ago.\nNever mind how long.\n",
    );
    assert.equal(code, 1, stderr);
    assert.match(stderr, /the chat template refused the conversation: turn of 5 messages/);
    // Two replies were streamed (and added to the conversation) before the third turn.
    assert.ok(stdout.endsWith("\n") && stdout.trim().length > 0, stdout);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("kiln generate --chat --interactive: a next turn runs only what the cache lacks", async () => {
  const dir = await Deno.makeTempDir({ prefix: "kiln_chat_reuse_" });
  try {
    const { code, stderr } = await chatTurns(dir, TURNS, "Some years ago.\n", ["--stats"]);
    assert.equal(code, 0, stderr);
    // The default model is a Mamba: the first turn's prompt, whole, is in the cache.
    const m = /prompt (\d+) tokens \((\d+) already in the cache\)/.exec(stderr);
    assert.ok(m, stderr);
    assert.ok(Number(m[2]) > 0 && Number(m[2]) < Number(m[1]), stderr);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
