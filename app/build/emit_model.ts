/**
 * Emits the TypeScript source of an ahead-of-time model module with
 * `ts-morph`: the prefill and decode plans of every prebuilt sampling setting
 * as data (one shader table for all of them) and a `load()` that streams the
 * weight bundle into a `PrebuiltModel` on the runtime alone.
 *
 * @module
 */

import { type CodeBlockWriter, Project, VariableDeclarationKind } from "ts-morph";
import type { PrebuiltModelData } from "../../runtime/prebuilt_model.ts";
import { loadOptionProperties } from "./emit_module.ts";

/**
 * What {@linkcode emitModelModule} needs besides the prebuilt data.
 *
 * @example
 * ```ts
 * import type { EmitModelOptions } from "./emit_model.ts";
 * const options: EmitModelOptions = { runtime: "../runtime/mod.ts", bundle: "tiny.kwb" };
 * ```
 */
export interface EmitModelOptions {
  /** Module specifier of Kiln's runtime entry, as the emitted module imports it. */
  readonly runtime: string;
  /** File name of the weight bundle beside the module. */
  readonly bundle: string;
  /** The model folder it was built from, for the module's doc comment. */
  readonly source?: string;
}

/** A template literal holding `text` verbatim. */
function templateLiteral(text: string): string {
  return "`" + text.replace(/\\/g, "\\\\").replace(/`/g, "\\`").replace(/\$\{/g, "\\${") + "`";
}

const SHADERS_MARK = "\u0000SHADERS\u0000";

/**
 * The source of an ahead-of-time model module for `data`, whose graphs all
 * index the one shader table `shaders` (formatted by ts-morph; the writer runs
 * `deno fmt` and `deno check` on the file).
 *
 * @example
 * ```ts ignore
 * import { emitModelModule } from "./emit_model.ts";
 * const source = emitModelModule(data, shaders, { runtime: "../runtime/mod.ts", bundle: "tiny.kwb" });
 * ```
 */
export function emitModelModule(
  data: PrebuiltModelData,
  shaders: readonly string[],
  options: EmitModelOptions,
): string {
  const project = new Project({ useInMemoryFileSystem: true });
  const file = project.createSourceFile("module.ts", "");
  const sampling = data.variants.map((v) =>
    `temperature ${v.sampling.temperature}, topK ${v.sampling.topK}, topP ${v.sampling.topP}`
  );
  file.insertText(
    0,
    `/**\n * Ahead-of-time model module "${data.name}" (${data.architecture}), made by \`kiln build\`${
      options.source ? ` from ${options.source}` : ""
    }: do not edit.\n *\n` +
      ` * Prebuilt: the decode step and prefill chunks of ${
        data.prefillBuckets.join(", ")
      } tokens, maxSeq ${data.maxSeq}, for sampling (${sampling.join("), (")}). ` +
      `It runs on Kiln's runtime alone (no DSL, model builder, passes or planner); ` +
      `token ids in, token ids out (the tokenizer is the caller's).\n *\n` +
      ` * \`\`\`ts ignore\n * const model = await load();\n` +
      ` * for await (const id of model.generateIds([1, 2, 3], { maxTokens: 8 })) console.log(id);\n` +
      ` * \`\`\`\n *\n * @module\n */\n\n`,
  );
  file.addImportDeclaration({
    moduleSpecifier: options.runtime,
    namedImports: [
      "type BundleSource",
      "type GpuDevice",
      "PrebuiltModel",
      "type PrebuiltModelData",
      "readBundle",
      "requestDevice",
    ],
  });
  file.addVariableStatement({
    declarationKind: VariableDeclarationKind.Const,
    isExported: true,
    docs: [
      "Every kernel's WGSL, each distinct text once, for all the graphs.\n\n@example\n```ts ignore\nSHADERS.length;\n```",
    ],
    declarations: [{
      name: "SHADERS",
      type: "readonly string[]",
      initializer: (w: CodeBlockWriter) => {
        w.write("[").newLine();
        for (const s of shaders) w.write(templateLiteral(s)).write(",").newLine();
        w.write("]");
      },
    }],
  });
  file.addVariableStatement({
    declarationKind: VariableDeclarationKind.Const,
    isExported: true,
    docs: [
      "The model's sizes and its graphs' interfaces and prebuilt plans, as data.\n\n" +
      "@example\n```ts ignore\nMODEL.variants[0].prefill.plans.map((p) => p.dims);\n```",
    ],
    declarations: [{
      name: "MODEL",
      type: "PrebuiltModelData",
      initializer: (w: CodeBlockWriter) => {
        // Each graph's shader table is the one above, by name.
        const json = JSON.stringify(
          data,
          (k, v) => k === "shaders" ? SHADERS_MARK : v,
          2,
        );
        w.write(json.replaceAll(JSON.stringify(SHADERS_MARK), "SHADERS"));
      },
    }],
  });
  emitLoad(file, options);
  file.formatText({ indentSize: 2, convertTabsToSpaces: true });
  return file.getFullText();
}

/** The `LoadOptions` interface and the `load()` function. */
function emitLoad(file: ReturnType<Project["createSourceFile"]>, options: EmitModelOptions): void {
  file.addInterface({
    name: "LoadOptions",
    isExported: true,
    docs: [
      "Options of {@linkcode load}.\n\n@example\n```ts ignore\nconst options: LoadOptions = { compile: false };\n```",
    ],
    properties: [
      {
        name: "device",
        hasQuestionToken: true,
        type: "GpuDevice",
        docs: [
          "The device (default: a new one from `requestDevice()`, destroyed by the model's `dispose`).",
        ],
      },
      ...loadOptionProperties(options.bundle, false),
    ],
  });
  file.addFunction({
    name: "load",
    isExported: true,
    isAsync: true,
    docs: [
      "Makes the model on a device, streaming the weights from the bundle (verified as they arrive).\n\n" +
      "@example\n```ts ignore\nconst model = await load();\nconst logits = await model.forward([1, 2, 3]);\nmodel.dispose();\n```",
    ],
    parameters: [{ name: "options", type: "LoadOptions", initializer: "{}" }],
    returnType: "Promise<PrebuiltModel>",
    statements: (w) => {
      w.writeLine("const device = options.device ?? await requestDevice();");
      w.writeLine("let model: PrebuiltModel | undefined;");
      w.write("try").block(() => {
        w.writeLine("model = new PrebuiltModel(MODEL, device, { ownsDevice: !options.device });");
        w.writeLine(
          `const where = options.bundle ?? new URL(${
            JSON.stringify(`./${options.bundle}`)
          }, import.meta.url);`,
        );
        w.writeLine("let source: BundleSource;");
        w.writeLine("let name: string;");
        w.writeLine("let size: number | undefined;");
        w.write('if (typeof where === "string" || where instanceof URL)').block(() => {
          w.writeLine(
            'const url = typeof where === "string" ? new URL(where, `file://${Deno.cwd()}/`) : where;',
          );
          w.writeLine(
            'name = typeof where === "string" ? where : url.protocol === "file:" ? decodeURIComponent(url.pathname) : url.href;',
          );
          w.writeLine("const cannot = (e: Error) => {");
          w.writeLine("  throw new Error(`Weight bundle ${name}: cannot be read (${e.message})`);");
          w.writeLine("};");
          w.write('if (url.protocol === "file:")').block(() => {
            w.writeLine(
              "// Through the file system: this also reads a bundle embedded in a `deno compile` binary.",
            );
            w.writeLine("const f = await Deno.open(url).catch(cannot);");
            w.writeLine("size = (await f.stat()).size;");
            w.writeLine("source = f.readable;");
          }).write("else").block(() => {
            w.writeLine("const res = await fetch(url).catch(cannot);");
            w.writeLine(
              "if (!res.ok || !res.body) throw new Error(`Weight bundle ${name}: cannot be read (${res.status} ${res.statusText})`);",
            );
            w.writeLine("source = res.body;");
          });
        }).write("else").block(() => {
          w.writeLine("source = where;");
          w.writeLine('name = "(bytes given to load)";');
        });
        w.writeLine("const target = model;");
        w.writeLine(
          "// The decode step compiles while the weights stream in (the compile needs only its plan).",
        );
        w.writeLine("const ahead = options.compile ? undefined : await model.compileAhead();");
        w.write("try").block(() => {
          w.writeLine(
            "await readBundle(source, { name, size, onTensor: (entry, data) => target.setParams({ [entry.name]: data }) });",
          );
        }).write("catch (e)").block(() => {
          w.writeLine("// A bad bundle is the error now, not after the compile.");
          w.writeLine("ahead?.finish().catch(() => {});");
          w.writeLine("throw e;");
        });
        w.writeLine("if (ahead?.total) options.onCompile?.(0, ahead.total);");
        w.writeLine("await ahead?.finish();");
        w.writeLine("if (ahead?.total) options.onCompile?.(ahead.total, ahead.total);");
        w.writeLine("const missing = model.missingParams();");
        w.writeLine(
          "if (missing.length) throw new TypeError(`Weight bundle ${name}: lacks ${missing.length} weight(s), e.g. ${missing[0]}`);",
        );
        w.writeLine(
          "if (options.compile) await model.compilePipelines(options.onCompile);",
        );
      }).write("catch (e)").block(() => {
        w.writeLine("if (model) model.dispose();");
        w.writeLine("else if (!options.device) device.destroy();");
        w.writeLine("throw e;");
      });
      w.writeLine("return model;");
    },
  });
}
