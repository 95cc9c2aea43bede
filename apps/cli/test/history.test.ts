import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { type Cli, EXIT, setupCli, snapshot } from "./helpers.js";

const cli = setupCli();

interface Commit {
  id: string;
  parents: string[];
  message: string;
  author: string;
  metadata: Record<string, string>;
}

/** Writes a local file and uploads it to `cairn://<repo>/<branch>/<path>`. */
async function put(c: Cli, repo: string, branch: string, path: string, text: string) {
  const local = join(c.dir, "tmp-upload");
  writeFileSync(local, text);
  await c.ok(["fs", "upload", local, `cairn://${repo}/${branch}/${path}`]);
}

const cat = async (repo: string, ref: string, path: string) =>
  await cli.ok(["fs", "cat", `cairn://${repo}/${ref}/${path}`]);
const head = async (repo: string, ref: string) =>
  (await cli.json<Commit>(["log", `cairn://${repo}/${ref}`, "--limit", "1"]))[0]!;

beforeAll(async () => {
  await cli.ok(["repo", "create", "cairn://hist"]);
});

describe("commit and log", () => {
  it("commits with a message, author and metadata; log shows them newest first", async () => {
    await put(cli, "hist", "main", "a.txt", "a1");
    const out = await cli.ok([
      "commit",
      "cairn://hist/main",
      "-m",
      "first",
      "--author",
      "Ana <ana@example.com>",
      "--meta",
      "ticket=T-1",
      "--meta",
      "url=https://x.example/?a=b",
    ]);
    expect(out).toMatch(/^\[main [0-9a-f]{12}\] first\n$/);
    await put(cli, "hist", "main", "b.txt", "b1");
    const [second] = await cli.json<Commit>(["commit", "cairn://hist/main", "-m", "second"]);
    expect(second!.author).toBe("tester");
    const log = await cli.json<Commit>(["log", "cairn://hist/main"]);
    expect(log.map((c) => c.message)).toEqual(["second", "first", "Repository created"]);
    expect(log[1]).toMatchObject({
      author: "Ana <ana@example.com>",
      metadata: { ticket: "T-1", url: "https://x.example/?a=b" },
    });
    const text = await cli.ok(["log", "cairn://hist/main"]);
    expect(text).toContain(`commit ${second!.id.slice(0, 12)} (main)\nAuthor: tester\nDate:   `);
    expect(text).toContain("Meta:   ticket=T-1");
    expect(text).toContain("\n    first\n");
  });

  it("refuses an empty commit unless --allow-empty", async () => {
    expect(
      await cli.fails(["commit", "cairn://hist/main", "-m", "nothing"], EXIT.PRECONDITION_FAILED),
    ).toContain("Nothing to commit");
    const [c] = await cli.json<Commit>(["commit", "cairn://hist/main", "-m", "empty", "--allow-empty"]);
    expect(c!.message).toBe("empty");
  });

  it("pages the log with --limit and prints the ref to continue from", async () => {
    const all = await cli.json<Commit>(["log", "cairn://hist/main"]);
    const page = await cli.json<Commit & { next?: string }>(["log", "cairn://hist/main", "--limit", "2"]);
    expect(page.slice(0, 2).map((c) => c.id)).toEqual(all.slice(0, 2).map((c) => c.id));
    expect(page[2]).toEqual({ next: all[2]!.id });
    const rest = await cli.json<Commit>(["log", `cairn://hist/${page[2]!.next}`]);
    expect(rest.map((c) => c.id)).toEqual(all.slice(2).map((c) => c.id));
    expect(await cli.ok(["log", "cairn://hist/main", "-n", "1"])).toMatch(
      new RegExp(
        `^next: ${all[1]!.id.slice(0, 12)} {2}\\(cairn log cairn://hist/${all[1]!.id.slice(0, 12)} --limit 1\\)$`,
        "m",
      ),
    );
  });

  it("resolves refs: ~N, ^N and commit id prefixes of 7+ digits", async () => {
    const all = await cli.json<Commit>(["log", "cairn://hist/main"]);
    expect((await head("hist", "main~1")).id).toBe(all[1]!.id);
    expect((await head("hist", "main^1~1")).id).toBe(all[2]!.id);
    expect((await head("hist", all[2]!.id.slice(0, 7))).id).toBe(all[2]!.id);
    expect(await cat("hist", `${all[1]!.id.slice(0, 10)}`, "b.txt")).toBe("b1");
    await cli.fails(["log", "cairn://hist/main~99"], EXIT.NOT_FOUND);
  });
});

describe("diff", () => {
  it("shows a branch's uncommitted changes with one ref, and left → right with two", async () => {
    const base = (await head("hist", "main")).id;
    await put(cli, "hist", "main", "a.txt", "a2");
    await put(cli, "hist", "main", "c.txt", "c1");
    await cli.ok(["fs", "rm", "cairn://hist/main/b.txt"]);
    expect(await cli.ok(["diff", "cairn://hist/main"])).toBe("~ a.txt\n- b.txt\n+ c.txt\n");
    expect((await cli.json(["diff", "cairn://hist/main"])).map((d) => [d.type, d.path])).toEqual([
      ["changed", "a.txt"],
      ["removed", "b.txt"],
      ["added", "c.txt"],
    ]);
    await cli.ok(["commit", "cairn://hist/main", "-m", "third"]);
    const r = await cli(["diff", "cairn://hist/main"]);
    expect(r.stdout).toBe("");
    expect(r.stderr).toContain("No uncommitted changes");
    expect(await cli.ok(["diff", `cairn://hist/${base}`, "main"])).toBe("~ a.txt\n- b.txt\n+ c.txt\n");
    expect(await cli.ok(["diff", "cairn://hist/main", `cairn://hist/${base.slice(0, 8)}`])).toBe(
      "~ a.txt\n+ b.txt\n- c.txt\n",
    );
    expect(await cli.ok(["diff", "cairn://hist/main~1/c", "main"])).toBe("+ c.txt\n");
  });

  it("asks for a second ref when the one ref is not a branch", async () => {
    await cli.ok(["tag", "create", "cairn://hist/t-diff", "main"]);
    expect(await cli.fails(["diff", "cairn://hist/t-diff"], EXIT.USAGE)).toContain("not a branch");
    await cli.fails(["diff", "cairn://hist/nope"], EXIT.NOT_FOUND);
  });
});

describe("branches", () => {
  it("creates from a ref or a URI, lists, resets and deletes", async () => {
    const main = (await head("hist", "main")).id;
    expect(await cli.ok(["branch", "create", "cairn://hist/dev", "--source", "main"])).toContain(
      `Created branch cairn://hist/dev at ${main.slice(0, 12)}`,
    );
    await cli.ok(["branch", "create", "cairn://hist/old", "--source", "cairn://hist/main~2"]);
    await cli.ok(["branch", "create", "cairn://hist/from-tag", "-s", "t-diff"]);
    expect(await cli.json(["branch", "list", "cairn://hist"])).toEqual([
      { name: "dev", commitId: main, default: false },
      { name: "from-tag", commitId: main, default: false },
      { name: "main", commitId: main, default: true },
      { name: "old", commitId: (await head("hist", "main~2")).id, default: false },
    ]);
    expect(await cli.ok(["branch", "list", "cairn://hist"])).toMatch(
      new RegExp(`^\\* main +${main.slice(0, 12)}$`, "m"),
    );

    await put(cli, "hist", "dev", "wip.txt", "wip");
    await put(cli, "hist", "dev", "a.txt", "changed");
    expect(await cli.ok(["branch", "reset", "cairn://hist/dev"])).toContain("dropped 2 uncommitted changes");
    expect(await cli.ok(["diff", "cairn://hist/dev"])).toBe("");
    expect(await cat("hist", "dev", "a.txt")).toBe("a2");

    expect(await cli.ok(["branch", "delete", "cairn://hist/old"])).toContain(
      "Deleted branch cairn://hist/old",
    );
    await cli.fails(["branch", "delete", "cairn://hist/old"], EXIT.NOT_FOUND);
    await cli.fails(["branch", "delete", "cairn://hist/main"], EXIT.PRECONDITION_FAILED);
    await cli.fails(["branch", "create", "cairn://hist/dev", "--source", "main"], EXIT.ALREADY_EXISTS);
    await cli.fails(["branch", "create", "cairn://hist/x", "--source", "cairn://other/main"], EXIT.USAGE);
    await cli.fails(["branch", "create", "cairn://hist/x"], EXIT.USAGE);
  });
});

describe("merge", () => {
  beforeAll(async () => {
    await cli.ok(["repo", "create", "cairn://mrg"]);
    await put(cli, "mrg", "main", "shared.txt", "base");
    await put(cli, "mrg", "main", "keep.txt", "keep");
    await cli.ok(["commit", "cairn://mrg/main", "-m", "base"]);
  });

  it("fast-forwards when the destination has not moved", async () => {
    await cli.ok(["branch", "create", "cairn://mrg/ff", "--source", "main"]);
    await put(cli, "mrg", "ff", "new.txt", "new");
    const [c] = await cli.json<Commit>(["commit", "cairn://mrg/ff", "-m", "ff work"]);
    expect(await cli.ok(["merge", "cairn://mrg/ff", "cairn://mrg/main"])).toBe(
      `Fast-forwarded main to ${c!.id.slice(0, 12)} (1 changed path).\n`,
    );
    expect((await head("mrg", "main")).id).toBe(c!.id);
    expect(await cli.ok(["merge", "cairn://mrg/ff", "main"])).toContain("Already up to date");
  });

  it("makes a merge commit when both sides moved, and log --all-parents shows both", async () => {
    await cli.ok(["branch", "create", "cairn://mrg/side", "--source", "main"]);
    await put(cli, "mrg", "side", "side.txt", "side");
    await cli.ok(["commit", "cairn://mrg/side", "-m", "side work"]);
    await put(cli, "mrg", "main", "main.txt", "main");
    await cli.ok(["commit", "cairn://mrg/main", "-m", "main work"]);
    const [result] = await cli.json(["merge", "cairn://mrg/side", "cairn://mrg/main", "-m", "join side"]);
    expect(result).toMatchObject({
      fastForward: false,
      upToDate: false,
      changes: 1,
      source: "side",
      destination: "main",
    });
    const merge = await head("mrg", "main");
    expect(merge).toMatchObject({ id: result!.commitId, message: "join side", author: "tester" });
    expect(merge.parents).toHaveLength(2);
    expect(await cat("mrg", "main", "side.txt")).toBe("side");
    expect(await cat("mrg", "main", "main.txt")).toBe("main");
    expect(await cli.ok(["log", "cairn://mrg/main", "-n", "1"])).toMatch(
      /^Merge: {2}[0-9a-f]{12} [0-9a-f]{12}$/m,
    );
    const first = (await cli.json<Commit>(["log", "cairn://mrg/main"])).map((c) => c.message);
    const every = (await cli.json<Commit>(["log", "cairn://mrg/main", "--all-parents"])).map(
      (c) => c.message,
    );
    expect(first).not.toContain("side work");
    expect(every).toContain("side work");
    expect((await head("mrg", "main^2")).message).toBe("side work");
  });

  // Some 40 runs of the binary, most of them for the two snapshots: over a minute on two busy cores.
  it("stops on a conflict, lists the paths, exits 6 and changes nothing", { timeout: 180_000 }, async () => {
    await cli.ok(["branch", "create", "cairn://mrg/theirs", "--source", "main"]);
    await put(cli, "mrg", "theirs", "shared.txt", "theirs");
    await put(cli, "mrg", "theirs", "keep.txt", "theirs keep");
    await cli.ok(["commit", "cairn://mrg/theirs", "-m", "theirs"]);
    await put(cli, "mrg", "main", "shared.txt", "ours");
    await put(cli, "mrg", "main", "keep.txt", "ours keep");
    await cli.ok(["commit", "cairn://mrg/main", "-m", "ours"]);
    const before = await snapshot(cli, "mrg");
    const r = await cli(["merge", "cairn://mrg/theirs", "cairn://mrg/main"]);
    expect(r.status).toBe(EXIT.CONFLICT);
    expect(r.stderr).toMatch(/^cairn: .*conflicts on 2 path\(s\).*\n/);
    expect(r.stderr).toContain("conflicting paths (2):\n  keep.txt\n  shared.txt\n");
    expect(r.stderr).not.toMatch(/\n\s+at /);
    expect(await snapshot(cli, "mrg")).toBe(before);
    const j = await cli(["merge", "cairn://mrg/theirs", "main", "--json"]);
    expect(JSON.parse(j.stderr)).toEqual({
      error: expect.objectContaining({ code: "CONFLICT", status: 6, paths: ["keep.txt", "shared.txt"] }),
    });
  });

  it("settles conflicts with --strategy source-wins or dest-wins", async () => {
    await cli.ok(["branch", "create", "cairn://mrg/ours-copy", "--source", "main"]);
    await cli.ok(["merge", "cairn://mrg/theirs", "cairn://mrg/ours-copy", "--strategy", "dest-wins"]);
    expect(await cat("mrg", "ours-copy", "shared.txt")).toBe("ours");
    expect(await cat("mrg", "ours-copy", "keep.txt")).toBe("ours keep");
    await cli.ok(["merge", "cairn://mrg/theirs", "cairn://mrg/main", "--strategy", "source-wins"]);
    expect(await cat("mrg", "main", "shared.txt")).toBe("theirs");
    expect(await cat("mrg", "main", "keep.txt")).toBe("theirs keep");
    await cli.fails(["merge", "cairn://mrg/theirs", "main", "--strategy", "mine"], EXIT.USAGE);
  });

  it("refuses to merge into a branch with uncommitted changes", async () => {
    await put(cli, "mrg", "main", "dirty.txt", "dirty");
    await cli.fails(["merge", "cairn://mrg/side", "main"], EXIT.PRECONDITION_FAILED);
    await cli.ok(["branch", "reset", "cairn://mrg/main"]);
  });
});

describe("tags", () => {
  it("creates from a ref or URI, reads through them, lists and deletes", async () => {
    const main = (await head("hist", "main")).id;
    expect(await cli.ok(["tag", "create", "cairn://hist/v1", "main"])).toContain(`at ${main.slice(0, 12)}`);
    await cli.ok(["tag", "create", "cairn://hist/v0", "cairn://hist/main~1"]);
    expect(await cli.json(["tag", "list", "cairn://hist"])).toEqual([
      { name: "t-diff", commitId: main },
      { name: "v0", commitId: (await head("hist", "main~1")).id },
      { name: "v1", commitId: main },
    ]);
    expect(await cli.ok(["tag", "list", "cairn://hist"])).toMatch(
      new RegExp(`^v1 +${main.slice(0, 12)}$`, "m"),
    );
    expect(await cat("hist", "v1", "c.txt")).toBe("c1");
    expect(await cli.ok(["log", "cairn://hist/v1", "-n", "1"])).toContain("tag: v1");
    await cli.fails(["tag", "create", "cairn://hist/v1", "main"], EXIT.ALREADY_EXISTS);
    await cli.fails(["tag", "create", "cairn://hist/v2", "nope"], EXIT.NOT_FOUND);
    await cli.fails(["tag", "create", "cairn://hist/bad..name", "main"], EXIT.INVALID_ARGUMENT);
    expect(await cli.ok(["tag", "delete", "cairn://hist/v0"])).toContain("Deleted tag cairn://hist/v0");
    await cli.fails(["tag", "delete", "cairn://hist/v0"], EXIT.NOT_FOUND);
    // Tags are read-only refs: uploads go to branches.
    writeFileSync(join(cli.dir, "t.txt"), "t");
    await cli.fails(["fs", "upload", "t.txt", "cairn://hist/v1/t.txt"], EXIT.NOT_FOUND);
  });
});
