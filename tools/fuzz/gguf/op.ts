/**
 * What a mutation of the GGUF fuzzer is ({@linkcode Op}) and what a seed
 * offers to one ({@linkcode SeedInfo}); the mutations themselves are in
 * `./mutations_*.ts`, picked and applied by `./mutations.ts`.
 *
 * @module
 */

import type { Layout, RawGguf } from "./codec.ts";

/** One mutation: of the fields (`model`) or of the encoded bytes (`bytes`). */
export interface Op {
  /** What it does, for the report. */
  what: string;
  /** Its family (`tensor`, `data/nonfinite`, …), for grouping failures. */
  kind?: string;
  /** A reader must refuse the result. */
  refuse?: boolean;
  /** The result is only judged by loading and running the model. */
  run?: boolean;
  /** Changes the fields, before the file is encoded. */
  model?: (g: RawGguf) => void;
  /** Changes the encoded file (laid out as `l` says), after the field mutations. */
  bytes?: (b: Uint8Array, l: Layout) => { bytes: Uint8Array; refuse?: boolean; what?: string };
}

/** What a seed offers to mutations. */
export interface SeedInfo {
  /** Short name, for case descriptions. */
  name: string;
  /** Whether it is a model Kiln runs. */
  model: boolean;
  /** Its fields. */
  raw: RawGguf;
  /** `general.architecture`, for model seeds. */
  arch?: string;
}
