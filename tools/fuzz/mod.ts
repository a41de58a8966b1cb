/**
 * Differential testing of the compiler: random valid graphs run on the GPU and
 * on the CPU reference, compared within tolerances that follow from the graph,
 * failing cases shrunk and printed as DSL to paste into a test.
 *
 * - `generate.ts`: seeds → graphs (and the ops covered and skipped);
 * - `check.ts`: the GPU/CPU comparison and its tolerances;
 * - `shrink.ts`: smaller failing cases;
 * - `dsl.ts`: cases as code;
 * - `graphs.ts`: the campaign and its report.
 *
 * @module
 */

export {
  checkGraph,
  type CheckOptions,
  type CheckResult,
  compareIndices,
  type Failure,
  interpret,
  PERTURB_FACTOR,
  RTOL,
  tolerances,
  worstElement,
} from "./check.ts";
export { caseToDsl, graphLines } from "./dsl.ts";
export { generateCase, GENERATED_OPS, type GenerateOptions, SKIPPED_OPS } from "./generate.ts";
export {
  assertMatchesReference,
  caseFeatures,
  checkCase,
  formatReport,
  type FoundFailure,
  type GraphCampaignOptions,
  type GraphCampaignReport,
  quickSeeds,
  runGraphCampaign,
} from "./graphs.ts";
export { shrinkCase, type ShrinkOptions, specFor } from "./shrink.ts";
export {
  buildGraph,
  type DataSpec,
  dataSpecs,
  drawData,
  type FuzzCase,
  type FuzzGraph,
  type FuzzNode,
  opsOf,
  prune,
} from "./spec.ts";
