"""Renders chat-template cases with transformers' own Jinja machinery: the oracle
for Kiln's chat-template interpreter.

Usage: python tools/chat_template_reference.py CASES.json OUT.json

CASES.json is a list of `{"name", "template", "context"}` (or `"template_file"`, a
file of the `templates/` folder beside CASES.json, instead of `"template"`; and
optionally `"continue_final_message"`: true or a field name, rendered through
`render_jinja_template` with it, as `apply_chat_template(...,
continue_final_message=...)` does). `context` is the whole
set of variables the template sees, exactly what `tokenizer.apply_chat_template`
hands to the template: `messages`, `tools`, `documents`, `add_generation_prompt`,
the tokenizer's special tokens as strings (`bos_token`, `eos_token`, ...) and any
extra keyword arguments (`enable_thinking`, `reasoning_effort`, ...). A case whose
context lacks one of those keys really renders without it (the variable is
undefined), so cases of real templates spell all four out.

OUT.json is a list, in the same order, of `{"name", "output"}`, or
`{"name", "error": "<exception class>: <message>"}` where compiling or rendering
raised.

The environment is not re-implemented here: every template is compiled by
`transformers.utils.chat_template_utils._compile_jinja_template` (the cached
compiler `apply_chat_template` uses: `ImmutableSandboxedEnvironment(trim_blocks=True,
lstrip_blocks=True, extensions=[AssistantTracker, loopcontrols])`, its own `tojson`
filter (`json.dumps(x, ensure_ascii=False, indent=None, separators=None,
sort_keys=False)`) and the globals `raise_exception` and `strftime_now`), and
rendered with `compiled.render(**context)`. When the context has a `messages` list,
the case is also rendered through `render_jinja_template` (the function
`apply_chat_template` calls, with `conversations=[messages]` and the rest of the
context as its keyword arguments), and the two must agree: that checks that the
context is the full variable set transformers would build.

Determinism: `strftime_now` reads `datetime.now()` from the module
`transformers.utils.chat_template_utils`; that name is patched here to a datetime
class whose `now()` is always 2026-07-26 12:00:00 (a Sunday), so
`strftime_now("%d %b %Y")` gives "26 Jul 2026". Python's default "C" locale is used
for `%b`/`%a` names. Nothing else is patched.
"""

import datetime as _dt
import json
import os
import sys

from transformers.utils import chat_template_utils as ctu

FIXED_NOW = _dt.datetime(2026, 7, 26, 12, 0, 0)


class _FixedDatetime(_dt.datetime):
    """`datetime` whose `now()` is FIXED_NOW (with `tz`, FIXED_NOW in that zone's clock)."""

    @classmethod
    def now(cls, tz=None):
        return FIXED_NOW if tz is None else FIXED_NOW.replace(tzinfo=tz)


ctu.datetime = _FixedDatetime

# Arguments of render_jinja_template itself; a context may not use them as variables.
_RESERVED = {"conversations", "chat_template", "return_assistant_tokens_mask", "continue_final_message"}


def _error(e):
    return f"{type(e).__name__}: {e}"


def _render_direct(template, context):
    try:
        return {"output": ctu._compile_jinja_template(template).render(**context)}
    except Exception as e:  # noqa: BLE001 - every failure is a result
        return {"error": _error(e)}


def _render_transformers(template, context, continue_final_message=False):
    rest = {k: v for k, v in context.items() if k not in ("messages", "tools", "documents", "add_generation_prompt")}
    try:
        rendered, _ = ctu.render_jinja_template(
            conversations=[context["messages"]],
            tools=context.get("tools"),
            documents=context.get("documents"),
            chat_template=template,
            add_generation_prompt=context.get("add_generation_prompt", False),
            continue_final_message=continue_final_message,
            **rest,
        )
        return {"output": rendered[0]}
    except Exception as e:  # noqa: BLE001
        return {"error": _error(e)}


def render_case(case, folder):
    name, context = case["name"], case["context"]
    if "template_file" in case:
        with open(os.path.join(folder, "templates", case["template_file"]), encoding="utf-8", newline="") as f:
            template = f.read()
    else:
        template = case["template"]
    if case.get("continue_final_message"):
        return {"name": name, **_render_transformers(template, context, case["continue_final_message"])}
    bad = _RESERVED & set(context)
    if bad:
        raise SystemExit(f"{name}: context uses reserved names {sorted(bad)}")
    result = _render_direct(template, context)
    if isinstance(context.get("messages"), list) and context["messages"]:
        via = _render_transformers(template, context)
        if via != result:
            raise SystemExit(
                f"{name}: render(**context) and render_jinja_template disagree "
                f"(is the context missing tools/documents/add_generation_prompt?)\n{result}\n{via}"
            )
    return {"name": name, **result}


def main(argv):
    if len(argv) != 3:
        raise SystemExit(__doc__.split("\n\n")[1])
    with open(argv[1], encoding="utf-8") as f:
        cases = json.load(f)
    names = [c["name"] for c in cases]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise SystemExit(f"duplicate case names: {dup}")
    folder = os.path.dirname(os.path.abspath(argv[1]))
    results = [render_case(c, folder) for c in cases]
    with open(argv[2], "w", encoding="utf-8") as f:
        json.dump(results, f, ensure_ascii=False, indent=2)
        f.write("\n")
    errors = sum("error" in r for r in results)
    print(f"{len(results)} cases, {errors} errors -> {argv[2]}")


if __name__ == "__main__":
    main(sys.argv)
