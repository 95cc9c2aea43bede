import { cpSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { beforeAll, describe, expect, it } from "vitest";
import { EXIT, setupCli } from "./helpers.js";

const cli = setupCli();

async function put(text: string, dest: string) {
  const local = join(cli.dir, "upload.tmp");
  writeFileSync(local, text);
  await cli.ok(["fs", "upload", local, dest]);
}

const log = async (repo: string, ref: string) =>
  (await cli.json<{ id: string; message: string }>(["log", `cairn://${repo}/${ref}`, "--all-parents"])).map(
    (c) => `${c.id} ${c.message}`,
  );

beforeAll(async () => {
  await cli.ok(["repo", "create", "cairn://origin"]);
  await put("one\n", "cairn://origin/main/a.txt");
  await cli.ok(["commit", "cairn://origin/main", "-m", "one"]);
  await cli.ok(["branch", "create", "cairn://origin/dev", "--source", "main"]);
  await put("two ✓\n", "cairn://origin/dev/docs/b.txt");
  await cli.ok(["commit", "cairn://origin/dev", "-m", "two"]);
  await cli.ok(["tag", "create", "cairn://origin/v1", "dev"]);
  await cli.ok(["merge", "cairn://origin/dev", "cairn://origin/main"]);
});

describe("refs-dump and refs-restore", () => {
  it("bring a repository back from a copy of its namespace: same log, listing and bytes", async () => {
    await put("not yet committed\n", "cairn://origin/dev/wip.txt");
    const dumped = await cli(["refs-dump", "cairn://origin", "-o", "refs.json"]);
    expect(dumped.status, dumped.stderr).toBe(0);
    expect(dumped.stderr).toContain("branch dev has uncommitted changes");
    const source = join(cli.dir, ".cairn", "data", "origin");
    expect(readFileSync(join(source, "_cairn", "refs_manifest.json"), "utf8")).toBe(
      readFileSync(join(cli.dir, "refs.json"), "utf8"),
    );
    const copy = join(cli.dir, "copy");
    cpSync(source, copy, { recursive: true });
    await cli.ok(["repo", "create-bare", "cairn://back", pathToFileURL(copy).href]);
    expect(await cli.ok(["refs-restore", "cairn://back", "--manifest", "refs.json"])).toContain(
      "Restored 3 commits",
    );
    for (const ref of ["main", "dev", "v1"]) expect(await log("back", ref)).toEqual(await log("origin", ref));
    expect(await cli.ok(["fs", "cat", "cairn://back/v1/docs/b.txt"])).toBe("two ✓\n");
    const ls = (r: string) =>
      cli.json<{ path: string; sha256: string }>(["fs", "ls", `cairn://${r}/main/`, "--recursive"]);
    expect(await ls("back")).toEqual(await ls("origin"));
    expect(
      (await cli.json<{ name: string; bare: boolean }>(["repo", "list"])).find((r) => r.name === "back")
        ?.bare,
    ).toBe(false);
  });

  it("commits everything first with --commit-all", async () => {
    await put("more\n", "cairn://origin/main/more.txt");
    const r = await cli(["refs-dump", "cairn://origin", "--commit-all"]);
    expect(r.status, r.stderr).toBe(0);
    expect(await cli.ok(["diff", "cairn://origin/main"])).toBe("");
  });

  it("refuses a non-bare target, a namespace without the trees, and another default branch", async () => {
    await cli.ok(["refs-dump", "cairn://origin", "-o", "refs2.json"]);
    expect(
      await cli.fails(
        ["refs-restore", "cairn://origin", "--manifest", "refs2.json"],
        EXIT.PRECONDITION_FAILED,
      ),
    ).toContain("not bare");
    await cli.ok(["repo", "create-bare", "cairn://hollow", pathToFileURL(join(cli.dir, "hollow")).href]);
    expect(
      await cli.fails(
        ["refs-restore", "cairn://hollow", "--manifest", "refs2.json"],
        EXIT.PRECONDITION_FAILED,
      ),
    ).toMatch(/lacks \d+ tree object/);
    expect(await cli.json(["branch", "list", "cairn://hollow"])).toEqual([]);
    const copy = join(cli.dir, "copy-trunk");
    cpSync(join(cli.dir, ".cairn", "data", "origin"), copy, { recursive: true });
    await cli.ok([
      "repo",
      "create-bare",
      "cairn://trunk",
      pathToFileURL(copy).href,
      "--default-branch",
      "trunk",
    ]);
    expect(
      await cli.fails(
        ["refs-restore", "cairn://trunk", "--manifest", "refs2.json"],
        EXIT.PRECONDITION_FAILED,
      ),
    ).toContain("--default-branch main");
    expect(
      await cli.fails(["refs-restore", "cairn://trunk", "--manifest", "nope.json"], EXIT.INVALID_ARGUMENT),
    ).toContain("nope.json");
  });
});
