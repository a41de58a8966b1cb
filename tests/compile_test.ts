/**
 * The standalone binary: `deno compile` of cli.ts runs `inspect` on a model folder.
 * `deno compile` needs a denort runtime, which it downloads from a server this
 * environment cannot reach; with DENORT_BIN pointing at one the test runs, else it is
 * ignored with that reason in its name.
 */
import assert from "node:assert/strict";
import { MIXTRAL_8X7B_CONFIG } from "./fixtures/published_configs.ts";

const denort = (() => {
  try {
    return Deno.env.get("DENORT_BIN");
  } catch {
    return undefined;
  }
})();

Deno.test({
  name: `deno compile builds a standalone kiln that inspects a model folder${
    denort ? "" : " (ignored: DENORT_BIN is not set, and deno compile cannot download denort here)"
  }`,
  ignore: !denort,
  async fn() {
    const dir = await Deno.makeTempDir();
    try {
      const bin = `${dir}/kiln`;
      const root = new URL("../", import.meta.url).pathname;
      const built = await new Deno.Command(Deno.execPath(), {
        args: ["compile", "-A", "--output", bin, `${root}cli.ts`],
        stdout: "piped",
        stderr: "piped",
      }).output();
      assert.equal(built.code, 0, new TextDecoder().decode(built.stderr));
      await Deno.writeTextFile(
        `${dir}/config.json`,
        JSON.stringify(MIXTRAL_8X7B_CONFIG),
      );
      const run = await new Deno.Command(bin, {
        args: ["inspect", dir],
        stdout: "piped",
        stderr: "piped",
      })
        .output();
      const out = new TextDecoder().decode(run.stdout);
      assert.equal(run.code, 0, new TextDecoder().decode(run.stderr));
      assert.match(out, /46\.70B total, 12\.88B active/);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
