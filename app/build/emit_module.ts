/**
 * Emits the TypeScript source of an ahead-of-time module with `ts-morph`:
 * typed interfaces for the inputs, outputs, parameters and states (dtypes as
 * typed arrays, shapes and symbolic dims in the types and JSDoc), the plans
 * and WGSL as data, and a `load()` that runs them on the runtime alone.
 *
 * @module
 */

import { type CodeBlockWriter, Project, VariableDeclarationKind } from "ts-morph";
import type { DType } from "../../core/dtype.ts";
import type { Dim } from "../../core/shape.ts";
import type { PrebuiltData } from "../../runtime/plan_data.ts";
import type { TensorSpec } from "../../runtime/bind.ts";

/**
 * What {@linkcode emitModule} needs besides the prebuilt data.
 *
 * @example
 * ```ts
 * import type { EmitOptions } from "./emit_module.ts";
 * const options: EmitOptions = { runtime: "jsr:@kiln/kiln@0.1.0/runtime", source: "mlp.ts" };
 * ```
 */
export interface EmitOptions {
  /** Module specifier of Kiln's runtime entry, as the emitted module imports it. */
  readonly runtime: string;
  /** Where the graph came from, for the module's doc comment. */
  readonly source?: string;
  /** File name of the weight bundle beside the module, when weights are packed. */
  readonly bundle?: string;
}

const ARRAY: Record<DType, string> = {
  f32: "Float32Array",
  f16: "Float16Array",
  i32: "Int32Array",
  u32: "Uint32Array",
};

const showShape = (shape: readonly Dim[]) => `[${shape.join(", ")}]`;

/** A property name as TypeScript source: quoted unless it is an identifier. */
function key(name: string): string {
  return /^[A-Za-z_$][\w$]*$/.test(name) ? name : JSON.stringify(name);
}

/** A template literal holding `text` verbatim. */
function templateLiteral(text: string): string {
  return "`" + text.replace(/\\/g, "\\\\").replace(/`/g, "\\`").replace(/\$\{/g, "\\${") + "`";
}

/**
 * The source of an ahead-of-time module for `data` (formatted by ts-morph;
 * `writeModule` runs `deno fmt` and `deno check` on the file).
 *
 * @example
 * ```ts ignore
 * import { emitModule } from "./emit_module.ts";
 * const source = emitModule(data, { runtime: "../runtime/mod.ts" });
 * ```
 */
export function emitModule(data: PrebuiltData, options: EmitOptions): string {
  const project = new Project({ useInMemoryFileSystem: true });
  const file = project.createSourceFile("module.ts", "");
  const iface = data.interface;
  const prebuilt = data.plans.map((p) => p.dims);
  const valuesOf = (sym: string) => [...new Set(prebuilt.map((d) => d[sym]))].sort((a, b) => a - b);
  const symbolsNote = (shape: readonly Dim[]) => {
    const syms = [...new Set(shape.filter((d): d is string => typeof d === "string"))];
    return syms.map((s) => `; ${s} ∈ {${valuesOf(s).join(", ")}}`).join("");
  };
  const doc = (t: TensorSpec) => `${t.dtype} ${showShape(t.shape)}${symbolsNote(t.shape)}`;
  const dimsText = prebuilt.map((d) =>
    `${Object.entries(d).map(([k, v]) => `${k}=${v}`).join(", ")}`
  )
    .map((t) => t || "no symbols");

  file.insertText(
    0,
    `/**\n * Ahead-of-time module "${data.name}", made by \`kiln build\`${
      options.source ? ` from ${options.source}` : ""
    }: do not edit.\n *\n * Prebuilt for: ${
      dimsText.join("; ")
    }. It runs on Kiln's runtime alone ` +
      `(no DSL, passes or planner).\n *\n * @module\n */\n\n`,
  );
  const runtimeNames = [
    "type GpuDevice",
    "type HostTensor",
    "PrebuiltExecutable",
    "type PrebuiltData",
    ...(options.bundle ? ["readBundle", "type BundleSource"] : []),
    "requestDevice",
  ];
  file.addImportDeclaration({ moduleSpecifier: options.runtime, namedImports: runtimeNames });

  const symbols = iface.symbols.filter((s) => prebuilt.some((d) => s in d));
  file.addTypeAlias({
    name: "Dims",
    isExported: true,
    docs: [
      `The bindings of the symbolic dims that have a prebuilt plan (runs with others throw a RangeError).\n\n` +
      `@example\n\`\`\`ts ignore\nconst dims: Dims = ${JSON.stringify(prebuilt[0] ?? {})};\n\`\`\``,
    ],
    type: prebuilt.length && symbols.length
      ? prebuilt.map((d) =>
        `{ ${Object.entries(d).map(([k, v]) => `readonly ${key(k)}: ${v}`).join("; ")} }`
      )
        .join(" | ")
      : "Record<never, never>",
  });
  const tensors = (
    name: string,
    what: string,
    specs: readonly TensorSpec[],
    type: (t: TensorSpec) => string,
    example: string,
  ) =>
    file.addInterface({
      name,
      isExported: true,
      docs: [`${what}\n\n@example\n\`\`\`ts ignore\n${example}\n\`\`\``],
      properties: specs.map((t) => ({
        name: key(t.name),
        isReadonly: true,
        type: type(t),
        docs: [doc(t)],
      })),
    });
  const given = (t: TensorSpec) => `${ARRAY[t.dtype]} | readonly number[]`;
  const read = (t: TensorSpec) => `HostTensor & { readonly data: ${ARRAY[t.dtype]} }`;
  tensors("Inputs", "The inputs of a run.", iface.inputs, given, "await runner.run(inputs);");
  tensors(
    "Outputs",
    "What a run returns.",
    iface.outputs,
    read,
    "const outputs: Outputs = await runner.run(inputs);",
  );
  tensors("Params", "The parameters (weights).", iface.params, given, "runner.setParams(params);");
  tensors(
    "States",
    "The persistent states, as read back.",
    iface.states,
    read,
    "await runner.readStates([]);",
  );
  file.addTypeAlias({
    name: "Runner",
    isExported: true,
    docs: [
      "The prebuilt executable, typed for this module.\n\n@example\n```ts ignore\nconst runner: Runner = await load();\n```",
    ],
    type: "PrebuiltExecutable<Inputs, Outputs, Params, States>",
  });
  file.addVariableStatement({
    declarationKind: VariableDeclarationKind.Const,
    isExported: true,
    docs: [
      "Every kernel's WGSL, each distinct text once.\n\n@example\n```ts ignore\nSHADERS.length;\n```",
    ],
    declarations: [{
      name: "SHADERS",
      type: "readonly string[]",
      initializer: (w: CodeBlockWriter) => {
        w.write("[").newLine();
        for (const s of data.shaders) w.write(templateLiteral(s)).write(",").newLine();
        w.write("]");
      },
    }],
  });
  const { shaders: _, ...rest } = data;
  file.addVariableStatement({
    declarationKind: VariableDeclarationKind.Const,
    isExported: true,
    docs: [
      "The graph's interface and its prebuilt plans, as data.\n\n@example\n```ts ignore\nPREBUILT.plans.map((p) => p.dims);\n```",
    ],
    declarations: [{
      name: "PREBUILT",
      type: "PrebuiltData",
      initializer: (w: CodeBlockWriter) => {
        // The shader table by name: each WGSL text once, readable above.
        const json = JSON.stringify(rest, null, 2);
        w.write(`${json.slice(0, -1).trimEnd()},\n  "shaders": SHADERS,\n}`);
      },
    }],
  });
  emitLoad(file, options);
  file.formatText({ indentSize: 2, convertTabsToSpaces: true });
  return file.getFullText();
}

/** The `LoadOptions` interface and the `load()` function. */
function emitLoad(
  file: ReturnType<Project["createSourceFile"]>,
  options: EmitOptions,
): void {
  file.addInterface({
    name: "LoadOptions",
    isExported: true,
    docs: [
      "Options of {@linkcode load}.\n\n@example\n```ts ignore\nconst options: LoadOptions = { params };\n```",
    ],
    properties: [
      {
        name: "device",
        hasQuestionToken: true,
        type: "GpuDevice",
        docs: ["The device (default: a new one from `requestDevice()`)."],
      },
      {
        name: "params",
        hasQuestionToken: true,
        type: "Partial<Params>",
        docs: ["Parameter values, set after the bundle's (if any)."],
      },
      ...loadOptionProperties(options.bundle, true),
    ],
  });
  file.addFunction({
    name: "load",
    isExported: true,
    isAsync: true,
    docs: [
      `Makes the runner on a device${
        options.bundle ? ", streaming the weights from the bundle (verified as they arrive)" : ""
      }.\n\n` +
      "@example\n```ts ignore\nconst runner = await load();\nconst outputs = await runner.run(inputs);\nrunner.dispose();\n```",
    ],
    parameters: [{ name: "options", type: "LoadOptions", initializer: "{}" }],
    returnType: "Promise<Runner>",
    statements: (w) => {
      w.writeLine("const device = options.device ?? await requestDevice();");
      w.writeLine("const runner: Runner = new PrebuiltExecutable(PREBUILT, device);");
      w.write("try").block(() => {
        if (options.bundle) {
          w.writeLine(
            `const where = options.bundle ?? new URL(${
              JSON.stringify(`./${options.bundle}`)
            }, import.meta.url);`,
          );
          w.writeLine("let source: BundleSource;");
          w.writeLine("let name: string;");
          w.write('if (typeof where === "string" || where instanceof URL)').block(() => {
            w.writeLine(
              'const url = typeof where === "string" ? new URL(where, `file://${Deno.cwd()}/`) : where;',
            );
            w.writeLine(
              'name = typeof where === "string" ? where : where.protocol === "file:" ? decodeURIComponent(where.pathname) : where.href;',
            );
            w.writeLine("const res = await fetch(url).catch((e: Error) => {");
            w.writeLine(
              "  throw new Error(`Weight bundle ${name}: cannot be read (${e.message})`);",
            );
            w.writeLine("});");
            w.writeLine(
              "if (!res.ok || !res.body) throw new Error(`Weight bundle ${name}: cannot be read (${res.status} ${res.statusText})`);",
            );
            w.writeLine("source = res.body;");
          }).write("else").block(() => {
            w.writeLine("source = where;");
            w.writeLine('name = "(bytes given to load)";');
          });
          w.writeLine("await readBundle(source, {");
          w.writeLine("  name,");
          w.writeLine(
            "  onTensor: (entry, data) => runner.setParams({ [entry.name]: data } as Partial<Params>),",
          );
          w.writeLine("});");
        }
        w.writeLine("if (options.params) runner.setParams(options.params);");
        w.writeLine(
          "if (options.compile ?? true) await runner.compilePipelines(options.onCompile);",
        );
      }).write("catch (e)").block(() => {
        w.writeLine("runner.dispose();");
        w.writeLine("throw e;");
      });
      w.writeLine("return runner;");
    },
  });
}

/** A property of the emitted `LoadOptions` interface (ts-morph's structure). */
export interface OptionProperty {
  /** Property name. */
  name: string;
  /** Optional. */
  hasQuestionToken: boolean;
  /** Its TypeScript type. */
  type: string;
  /** Its doc comment. */
  docs: string[];
}

/**
 * The `LoadOptions` properties every emitted module has: the bundle (when
 * weights are packed into `bundle`), `compile` (whose default is
 * `compileDefault`: graph modules compile at load, model modules on first
 * use) and `onCompile`.
 *
 * @example
 * ```ts
 * import { loadOptionProperties } from "./emit_module.ts";
 * loadOptionProperties("mlp.kwb", true).map((p) => p.name); // ["bundle", "compile", "onCompile"]
 * ```
 */
export function loadOptionProperties(
  bundle: string | undefined,
  compileDefault: boolean,
): OptionProperty[] {
  return [
    ...(bundle
      ? [{
        name: "bundle",
        hasQuestionToken: true,
        type: "string | URL | BundleSource",
        docs: [
          `The weight bundle: a path or URL, or its bytes or stream (default: ${bundle} beside this module).`,
        ],
      }]
      : []),
    {
      name: "compile",
      hasQuestionToken: true,
      type: "boolean",
      docs: [
        compileDefault
          ? "Compile every prebuilt plan's pipelines now (default true)."
          : "Compile every prebuilt plan's pipelines at load (default false: each run compiles what it " +
            "needs on first use, and a short first prompt runs through the decode step so the first " +
            "token waits only for the decode step's pipelines).",
      ],
    },
    {
      name: "onCompile",
      hasQuestionToken: true,
      type: "(done: number, total: number) => void",
      docs: ["Hears pipeline compilation progress."],
    },
  ];
}
