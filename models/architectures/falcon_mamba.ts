/**
 * Falcon-Mamba (`FalconMambaForCausalLM`, e.g. tiiuae/falcon-mamba-7b): Mamba
 * whose mixer passes Δ (before `dt_proj`), B and C through RMSNorms without
 * weights (epsilon `mixer_rms_eps`); the checkpoint is laid out as Mamba's.
 *
 * @module
 */

import { mamba, mambaFields } from "./mamba.ts";
import type { ArchitectureSpec } from "./spec.ts";

/**
 * The Falcon-Mamba spec.
 *
 * @example
 * ```ts
 * import { ARCHITECTURE_SPECS } from "@kiln/kiln";
 * ARCHITECTURE_SPECS.FalconMambaForCausalLM.layout.embed; // "backbone.embeddings"
 * ```
 */
export const falconMamba: ArchitectureSpec = {
  architecture: "FalconMambaForCausalLM",
  modelType: "falcon_mamba",
  summary: "Mamba with weightless RMSNorms on Δ, B and C in every mixer",
  layout: mamba.layout,
  parse: (c) => mambaFields(c, "FalconMambaForCausalLM"),
};
