import { existsSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { describe, expect, it } from "vitest";
import { EXIT, setupCli } from "./helpers.js";

const cli = setupCli();

describe("cairn repo", () => {
  it("creates a repository in ./.cairn/data/<repo> by default, with a main branch", async () => {
    const [info] = await cli.json(["repo", "create", "cairn://alpha"]);
    expect(info).toMatchObject({
      name: "alpha",
      defaultBranch: "main",
      bare: false,
      namespace: pathToFileURL(join(cli.dir, ".cairn", "data", "alpha")).href,
    });
    expect(await cli.json(["branch", "list", "cairn://alpha"])).toEqual([
      expect.objectContaining({ name: "main", default: true }),
    ]);
    const log = await cli.json(["log", "cairn://alpha/main"]);
    expect(log).toHaveLength(1);
    expect(log[0]).toMatchObject({ message: "Repository created", parents: [] });
  });

  it("creates one with a namespace URL and another default branch", async () => {
    const ns = pathToFileURL(join(cli.dir, "elsewhere", "beta")).href;
    const out = await cli.ok(["repo", "create", "cairn://beta", ns, "--default-branch", "trunk"]);
    expect(out).toContain("Created repository cairn://beta");
    expect(out).toContain(ns);
    expect(await cli.ok(["branch", "list", "cairn://beta"])).toMatch(/^\* trunk {2}[0-9a-f]{12}\n$/);
  });

  it("creates a bare repository without branches", async () => {
    const ns = pathToFileURL(join(cli.dir, "bare-ns")).href;
    const [info] = await cli.json(["repo", "create-bare", "cairn://gamma", ns]);
    expect(info).toMatchObject({ name: "gamma", bare: true, namespace: ns });
    expect(await cli.json(["branch", "list", "cairn://gamma"])).toEqual([]);
  });

  it("refuses a name that exists, and a namespace another repository uses", async () => {
    expect(await cli.fails(["repo", "create", "cairn://alpha"], EXIT.ALREADY_EXISTS)).toContain(
      '"alpha" already exists',
    );
    const ns = pathToFileURL(join(cli.dir, "elsewhere", "beta")).href;
    expect(await cli.fails(["repo", "create", "cairn://delta", ns], EXIT.ALREADY_EXISTS)).toContain("beta");
    await cli.fails(["repo", "create-bare", "cairn://delta"], EXIT.USAGE);
  });

  it("lists repositories, as text and as JSON Lines", async () => {
    const names = (await cli.json<{ name: string }>(["repo", "list"])).map((r) => r.name);
    expect(names).toEqual(expect.arrayContaining(["alpha", "beta", "gamma"]));
    const text = await cli.ok(["repo", "list"]);
    expect(text).toMatch(/^alpha +main +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC +file:\/\//m);
    expect(text).toMatch(/^gamma .*\(bare\)$/m);
  });

  it("deletes with --yes, and refuses to without it when there is no terminal", async () => {
    await cli.ok(["repo", "create", "cairn://doomed"]);
    expect(await cli.fails(["repo", "delete", "cairn://doomed"], EXIT.USAGE)).toContain("--yes");
    expect((await cli.json<{ name: string }>(["repo", "list"])).map((r) => r.name)).toContain("doomed");
    expect(await cli.ok(["repo", "delete", "cairn://doomed", "--yes"])).toContain(
      "Deleted repository doomed",
    );
    expect((await cli.json<{ name: string }>(["repo", "list"])).map((r) => r.name)).not.toContain("doomed");
    await cli.fails(["repo", "delete", "cairn://doomed", "--yes"], EXIT.NOT_FOUND);
    // The name can be taken again, and so can the namespace the deleted repository released.
    await cli.ok(["repo", "create", "cairn://doomed"]);
    await cli.ok(["repo", "create", "cairn://doomed-too", pathToFileURL(join(cli.dir, "doomed-2")).href]);
  });

  it("takes global options before or after the command, and $CAIRN_META", async () => {
    const before = await cli(["--json", "--meta", cli.meta, "repo", "list"], { meta: false });
    const after = await cli(["repo", "list", "--json", "--meta", cli.meta], { meta: false });
    const between = await cli(["repo", "--json", "list", "--meta", cli.meta], { meta: false });
    const env = await cli(["repo", "list", "--json"], { meta: false, env: { CAIRN_META: cli.meta } });
    expect(before.status).toBe(0);
    for (const r of [after, between, env]) {
      expect(r.status, r.stderr).toBe(0);
      expect(r.stdout).toBe(before.stdout);
    }
    expect(before.stdout.split("\n").filter(Boolean).length).toBeGreaterThanOrEqual(3);
  });

  it("uses sqlite://./.cairn/meta.db by default", async () => {
    const r = await cli(["repo", "create", "cairn://local-default"], { meta: false });
    expect(r.status, r.stderr).toBe(0);
    expect(existsSync(join(cli.dir, ".cairn", "meta.db"))).toBe(true);
    expect((await cli(["repo", "list"], { meta: false })).stdout).toContain("local-default");
    expect(await cli.ok(["repo", "list"])).not.toContain("local-default");
  });
});
