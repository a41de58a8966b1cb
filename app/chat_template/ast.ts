/**
 * The tree a chat template parses into: statements (`Node`), expressions
 * (`Expr`), call arguments and assignment targets.
 *
 * @module
 */

/** An expression. */
export type Expr =
  | { readonly t: "const"; readonly value: unknown }
  | { readonly t: "name"; readonly name: string }
  | { readonly t: "list" | "tuple"; readonly items: readonly Expr[] }
  | { readonly t: "dict"; readonly pairs: readonly (readonly [Expr, Expr])[] }
  | { readonly t: "getattr"; readonly obj: Expr; readonly name: string }
  | { readonly t: "getitem"; readonly obj: Expr; readonly index: Expr }
  | { readonly t: "slice"; readonly start?: Expr; readonly stop?: Expr; readonly step?: Expr }
  | { readonly t: "call"; readonly fn: Expr; readonly args: Args; readonly line: number }
  | {
    readonly t: "filter" | "test";
    readonly value: Expr | undefined;
    readonly name: string;
    readonly args: Args;
    readonly line: number;
  }
  | { readonly t: "unary"; readonly op: "-" | "+" | "not"; readonly value: Expr }
  | { readonly t: "binary"; readonly op: string; readonly left: Expr; readonly right: Expr }
  | { readonly t: "concat"; readonly items: readonly Expr[] }
  | { readonly t: "compare"; readonly first: Expr; readonly ops: readonly [string, Expr][] }
  | { readonly t: "cond"; readonly test: Expr; readonly then: Expr; readonly else?: Expr };

/** A call's arguments. */
export interface Args {
  /** Positional arguments. */
  readonly pos: readonly Expr[];
  /** Keyword arguments, in order. */
  readonly kw: readonly (readonly [string, Expr])[];
  /** `*args`. */
  readonly star?: Expr;
  /** `**kwargs`. */
  readonly dstar?: Expr;
}

/** What `for` and `set` assign to. */
export type Target =
  | { readonly t: "name"; readonly name: string }
  | { readonly t: "tuple"; readonly items: readonly Target[] }
  | { readonly t: "ns"; readonly name: string; readonly attr: string };

/** A statement of the template's body. */
export type Node =
  | { readonly t: "data"; readonly text: string }
  | { readonly t: "output"; readonly expr: Expr; readonly line: number }
  | {
    readonly t: "if";
    readonly branches: readonly { readonly test: Expr; readonly body: Node[] }[];
    readonly else: Node[];
  }
  | {
    readonly t: "for";
    readonly target: Target;
    readonly iter: Expr;
    readonly filter?: Expr;
    readonly body: Node[];
    readonly else: Node[];
    readonly recursive: boolean;
    readonly line: number;
  }
  | { readonly t: "set"; readonly target: Target; readonly value: Expr; readonly line: number }
  | {
    readonly t: "setblock";
    readonly target: Target;
    readonly filters: readonly Expr[];
    readonly body: Node[];
  }
  | {
    readonly t: "macro";
    readonly name: string;
    readonly params: readonly { readonly name: string; readonly default?: Expr }[];
    readonly body: Node[];
  }
  | {
    readonly t: "callblock";
    readonly params: readonly { readonly name: string; readonly default?: Expr }[];
    readonly call: Expr;
    readonly body: Node[];
  }
  | { readonly t: "filterblock"; readonly filters: readonly Expr[]; readonly body: Node[] }
  | { readonly t: "with"; readonly sets: readonly [Target, Expr][]; readonly body: Node[] }
  | { readonly t: "scope"; readonly body: Node[] }
  | { readonly t: "break" | "continue"; readonly line: number };
