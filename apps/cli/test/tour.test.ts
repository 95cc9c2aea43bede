import { describe, expect, it } from "vitest";
import { setupCli } from "./helpers.js";

const cli = setupCli();

describe("cairn tour", () => {
  it("runs to completion, printing each command and its output, and can run again", async () => {
    const r = await cli(["tour"]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toBe("");
    const out = r.stdout;
    const name = /\$ cairn repo create cairn:\/\/(tour-[0-9-]+)/.exec(out)?.[1];
    expect(name).toBeDefined();
    for (const command of [
      "fs upload",
      "diff",
      "commit",
      "fs ls",
      "branch create",
      "merge",
      "log",
      "fs cat",
      "tag create",
    ]) {
      expect(out, command).toContain(`$ cairn ${command} `);
    }
    expect(out).toContain("Uploaded 3 files");
    expect(out).toMatch(/^~ data\/cities\.csv\n\+ notes\.md$/m);
    expect(out).toContain("Fast-forwarded main to");
    expect(out).toMatch(/^commit [0-9a-f]{12} \(lisbon, main\)$/m);
    expect(out).toContain("Lisbon,PT");

    // What the tour made is there afterwards, as it says.
    expect(await cli.ok(["fs", "cat", `cairn://${name}/v1/notes.md`])).toContain("Lisbon");
    expect(await cli.json(["log", `cairn://${name}/main`])).toHaveLength(3);

    const again = await cli(["tour"]);
    expect(again.status, again.stderr).toBe(0);
    expect((await cli.json(["repo", "list"])).filter((x) => String(x.name).startsWith("tour-"))).toHaveLength(
      2,
    );
  });
});
