/** Runs the kiln CLI in the test's own process, capturing what it prints. */

import { main } from "../cli.ts";

/** What `main(args)` returned and printed. */
export interface Run {
  /** Exit status. */
  code: number;
  /** What console.log printed. */
  stdout: string;
  /** What console.error printed. */
  stderr: string;
}

/** Runs the CLI in this process, capturing console.log and console.error. */
export async function kiln(...args: string[]): Promise<Run> {
  const out: string[] = [], err: string[] = [];
  const { log, error } = console;
  console.log = (...a: unknown[]) => out.push(a.join(" ") + "\n");
  console.error = (...a: unknown[]) => err.push(a.join(" ") + "\n");
  try {
    return { code: await main(args), stdout: out.join(""), stderr: err.join("") };
  } finally {
    console.log = log;
    console.error = error;
  }
}
