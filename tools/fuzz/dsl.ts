/**
 * Prints a fuzz case as DSL code a developer pastes into a test: the graph as
 * `GraphBuilder` calls (one line per node, in the graph's order, so the pasted
 * code builds the very same graph) and the call that checks it against the CPU
 * reference with the same input data.
 *
 * @module
 */

import type { AttrValue } from "../../core/graph.ts";
import type { Failure } from "./check.ts";
import { dataSpecs, type FuzzCase, type FuzzGraph, type Ref } from "./spec.ts";

const UNARY_METHODS = new Set([
  "neg",
  "abs",
  "exp",
  "log",
  "sqrt",
  "rsqrt",
  "tanh",
  "sigmoid",
  "silu",
  "softplus",
  "relu",
]);
const BINARY_METHODS: Readonly<Record<string, string>> = {
  add: "add",
  sub: "sub",
  mul: "mul",
  div: "div",
  pow: "pow",
  maximum: "maximum",
  minimum: "minimum",
  equal: "equal",
  not_equal: "notEqual",
  less: "less",
  less_equal: "lessEqual",
  greater: "greater",
  greater_equal: "greaterEqual",
};
const REDUCE_METHODS = new Set(["sum", "mean", "max", "min", "argmax", "logsumexp"]);

/** A JS literal of an attribute or shape (numbers exactly, strings quoted). */
function lit(v: AttrValue | undefined): string {
  if (Array.isArray(v)) return `[${v.map((x) => lit(x)).join(", ")}]`;
  if (typeof v === "string") return JSON.stringify(v);
  if (typeof v === "number") return Object.is(v, -0) ? "-0" : String(v);
  return String(v);
}

/** `{ a: 1, b: true }` */
function obj(o: Readonly<Record<string, unknown>>): string {
  const parts = Object.entries(o).map(([k, v]) =>
    `${k}: ${
      typeof v === "object" && v !== null && !Array.isArray(v)
        ? obj(v as Record<string, unknown>)
        : lit(v as AttrValue)
    }`
  );
  return parts.length ? `{ ${parts.join(", ")} }` : "{}";
}

/** The variable names of each node's results. */
function names(fg: FuzzGraph): string[][] {
  return fg.nodes.map((n, i) => {
    if (n.kind === "const") return [`c${i}`];
    if (n.kind !== "op") return [n.name];
    return n.op === "topk" ? [`v${i}`, `v${i}_idx`] : [`v${i}`];
  });
}

/**
 * The graph as DSL statements, after `const g = new GraphBuilder();`. Evaluating
 * them with `g` in scope builds exactly `buildGraph(fg)`.
 *
 * @example
 * ```ts ignore
 * const g = new GraphBuilder();
 * new Function("g", graphLines(c.graph).join("\n"))(g); // builds buildGraph(c.graph)
 * ```
 */
export function graphLines(fg: FuzzGraph): string[] {
  const vars = names(fg);
  const v = (r: Ref) => vars[r.node][r.out];
  const lines: string[] = [];
  fg.nodes.forEach((n, i) => {
    const [name] = vars[i];
    if (n.kind === "const") {
      const scalar = n.shape.length === 0 && n.dtype === "f32";
      lines.push(
        scalar
          ? `const ${name} = g.constant(${lit(n.values[0])});`
          : `const ${name} = g.constant(${lit(n.values)}, ${lit(n.shape)}, ${lit(n.dtype)});`,
      );
      return;
    }
    if (n.kind !== "op") {
      const dt = n.dtype === "f32" ? "" : `, ${lit(n.dtype)}`;
      lines.push(`const ${name} = g.${n.kind}(${lit(n.name)}, ${lit(n.shape)}${dt});`);
      return;
    }
    const a = n.attrs;
    const ins = n.inputs.map(v);
    let rhs: string;
    if (UNARY_METHODS.has(n.op)) rhs = `${ins[0]}.${n.op}()`;
    else if (n.op === "gelu") rhs = `${ins[0]}.gelu()`;
    else if (n.op === "gelu_erf") rhs = `${ins[0]}.gelu({ approximate: "none" })`;
    else if (n.op === "cast") rhs = `${ins[0]}.cast(${lit(a.to)})`;
    else if (BINARY_METHODS[n.op]) rhs = `${ins[0]}.${BINARY_METHODS[n.op]}(${ins[1]})`;
    else if (n.op === "where") rhs = `${ins[1]}.where(${ins[0]}, ${ins[2]})`;
    else if (REDUCE_METHODS.has(n.op)) rhs = `${ins[0]}.${n.op}(${a.axis}, ${a.keepdims})`;
    else if (n.op === "matmul" && a.tile === undefined) {
      rhs = `${ins[0]}.matmul(${ins[1]}, ${obj({ transA: a.transA, transB: a.transB })})`;
    } else if (n.op === "softmax") rhs = `${ins[0]}.softmax(${a.axis})`;
    else if (n.op === "rmsnorm") rhs = `${ins[0]}.rmsnorm(${ins[1]}, ${lit(a.eps)})`;
    else if (n.op === "layernorm") rhs = `${ins[0]}.layernorm(${ins[1]}, ${ins[2]}, ${lit(a.eps)})`;
    else if (n.op === "reshape") rhs = `${ins[0]}.reshape(${lit(a.shape)})`;
    else if (n.op === "transpose") rhs = `${ins[0]}.transpose(${lit(a.perm)})`;
    else if (n.op === "slice") rhs = `${ins[0]}.slice(${a.axis}, ${a.start}, ${a.end})`;
    else if (n.op === "concat") rhs = `g.concat([${ins.join(", ")}], ${a.axis})`;
    else if (n.op === "gather") rhs = `${ins[0]}.gather(${ins[1]})`;
    else if (n.op === "cumsum") {
      rhs = `${ins[0]}.cumsum(${a.axis}, ${obj({ exclusive: a.exclusive, reverse: a.reverse })})`;
    } else if (n.op === "write_rows") rhs = `${ins[0]}.writeRows(${ins[1]}, ${ins[2]})`;
    else if (n.op === "rope") {
      const scaling = a.invFreq === undefined ? "" : `, ${
        obj(
          a.scale === undefined ? { invFreq: a.invFreq } : { invFreq: a.invFreq, scale: a.scale },
        )
      }`;
      rhs = `${ins[0]}.rope(${ins[1]}, ${lit(a.theta)}${scaling})`;
    } else if (n.op === "attention") {
      rhs = `g.attention(${ins.join(", ")}, ${obj(a)})`;
    } else if (n.op === "topk") {
      lines.push(`const [${vars[i].join(", ")}] = ${ins[0]}.topk(${a.k});`);
      return;
    } else rhs = `g.apply(${lit(n.op)}, [${ins.join(", ")}], ${obj(a)})[0]`;
    lines.push(`const ${name} = ${rhs};`);
  });
  for (const o of fg.outputs) lines.push(`g.output(${lit(o.name)}, ${v(o.ref)});`);
  for (const s of fg.assigns) lines.push(`g.assign(${vars[s.state][0]}, ${v(s.ref)});`);
  return lines;
}

/**
 * The whole case as code to paste into a test (imports relative to `tests/`),
 * headed by the seeds and, when given, what failed.
 *
 * @example
 * ```ts ignore
 * console.log(caseToDsl(generateCase(7, { f16: false })));
 * ```
 */
export function caseToDsl(
  c: FuzzCase,
  failures: readonly Failure[] = [],
  limits: Readonly<{ maxBindingSize?: number }> = {},
): string {
  // A device with lowered limits is part of the case: the printed test asks for it.
  const device = limits.maxBindingSize === undefined
    ? ""
    : `, await requestDevice({ limits: { maxBindingSize: ${limits.maxBindingSize} } })`;
  const head = [
    `// kiln fuzz: graph seed ${c.seed}, inputs seed ${c.inputsSeed}` +
    ` (deno task fuzz graphs --seed ${c.seed} --graphs 1${
      limits.maxBindingSize === undefined ? "" : ` --max-binding ${limits.maxBindingSize}`
    })`,
    ...failures.slice(0, 3).map((f) => `// ${f.kind} in ${f.what} (run ${f.run}): ${f.detail}`),
  ];
  const data = Object.entries(dataSpecs(c.graph)).map(([k, s]) => `${k}: ${obj(s)}`);
  return [
    ...head,
    `import { GraphBuilder } from "../compiler/builder.ts";`,
    ...(device ? [`import { requestDevice } from "../runtime/device.ts";`] : []),
    `import { assertMatchesReference } from "../tools/fuzz/mod.ts";`,
    ``,
    `Deno.test("fuzz graph seed ${c.seed}", async () => {`,
    ...[
      `const g = new GraphBuilder();`,
      ...graphLines(c.graph),
      `await assertMatchesReference(g.build(), {`,
      `  data: { ${data.join(", ")} },`,
      `  inputsSeed: ${c.inputsSeed},`,
      `  runs: [${c.runs.map((r) => `{ dims: ${obj(r.dims)} }`).join(", ")}],`,
      `}${device});`,
    ].map((l) => `  ${l}`),
    `});`,
  ].join("\n");
}
