import { randomBytes } from "node:crypto";
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { EXIT, expectOneLineError, setupCli } from "./helpers.js";

const cli = setupCli();
const R = "cairn://files";

/** Every file under `dir`, relative, with `/` separators. */
function tree(dir: string, base = ""): string[] {
  const out: string[] = [];
  for (const e of readdirSync(join(dir, base), { withFileTypes: true })) {
    const rel = base ? `${base}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...tree(dir, rel));
    else out.push(rel);
  }
  return out.sort();
}

const binary = randomBytes(70_000);

beforeAll(async () => {
  await cli.ok(["repo", "create", R]);
  const src = join(cli.dir, "src");
  mkdirSync(join(src, "docs", "deep"), { recursive: true });
  writeFileSync(join(src, "a.txt"), "alpha\n");
  writeFileSync(join(src, "b.bin"), binary);
  writeFileSync(join(src, "docs", "readme.md"), "# docs\n");
  writeFileSync(join(src, "docs", "deep", "x.json"), '{"x":1}\n');
  writeFileSync(join(src, "docs", "deep", "y.csv"), "y\n1\n");
  writeFileSync(join(cli.dir, "single.txt"), "just one\n");
});

describe("cairn fs", () => {
  it("uploads one file to a path, or into a folder under its own name", async () => {
    const [entry] = await cli.json(["fs", "upload", "single.txt", `${R}/main/one/single-copy.txt`]);
    expect(entry).toMatchObject({
      path: "one/single-copy.txt",
      size: 9,
      contentType: "text/plain; charset=utf-8",
    });
    expect(await cli.ok(["fs", "upload", "single.txt", `${R}/main/one/`])).toContain(
      `${R}/main/one/single.txt`,
    );
    expect(await cli.ok(["fs", "cat", `${R}/main/one/single.txt`])).toBe("just one\n");
  });

  it("uploads standard input with -, to a full path only", async () => {
    await cli.ok(["repo", "create", "cairn://piped"]);
    const r = await cli(["fs", "upload", "-", "cairn://piped/main/in.txt"], { input: "piped bytes\n" });
    expect(r.status).toBe(0);
    expect(r.stdout).toContain("Uploaded standard input");
    expect(await cli.ok(["fs", "cat", "cairn://piped/main/in.txt"])).toBe("piped bytes\n");
    const err = await cli.fails(["fs", "upload", "-", "cairn://piped/main/dir/"], EXIT.USAGE, { input: "x" });
    expect(err).toContain("full path");
  });

  it("uploads with a content type and metadata, which stat shows", async () => {
    await cli.ok([
      "fs",
      "upload",
      "single.txt",
      `${R}/main/meta/s.dat`,
      "--content-type",
      "application/x-test",
      "--metadata",
      "owner=ana",
      "--metadata",
      "note=a=b",
    ]);
    const [entry] = await cli.json(["fs", "stat", `${R}/main/meta/s.dat`]);
    expect(entry).toMatchObject({
      path: "meta/s.dat",
      size: 9,
      contentType: "application/x-test",
      metadata: { owner: "ana", note: "a=b" },
    });
    expect(entry!.sha256).toMatch(/^[0-9a-f]{64}$/);
    const text = await cli.ok(["fs", "stat", `${R}/main/meta/s.dat`]);
    expect(text).toMatch(/^size: +9 B \(9 bytes\)$/m);
    expect(text).toMatch(/^metadata: +owner=ana, note=a=b$/m);
  });

  it("uploads a directory with --recursive, keeping relative paths", async () => {
    const out = await cli.ok(["fs", "upload", "src", `${R}/main/up`, "--recursive", "--parallel", "3"]);
    expect(out).toContain(`Uploaded 5 files`);
    const paths = (await cli.json<{ path: string }>(["fs", "ls", `${R}/main/up/`, "--recursive"])).map(
      (e) => e.path,
    );
    expect(paths).toEqual([
      "up/a.txt",
      "up/b.bin",
      "up/docs/deep/x.json",
      "up/docs/deep/y.csv",
      "up/docs/readme.md",
    ]);
    expect(await cli.fails(["fs", "upload", "src", `${R}/main/up2/`], EXIT.USAGE)).toContain("--recursive");
  });

  it("lists one level with folders, or everything with --recursive", async () => {
    expect(await cli.json(["fs", "ls", `${R}/main/up/`])).toEqual([
      expect.objectContaining({ path: "up/a.txt" }),
      expect.objectContaining({ path: "up/b.bin", size: binary.length }),
      { prefix: "up/docs/" },
    ]);
    const text = await cli.ok(["fs", "ls", `${R}/main/up/`]);
    expect(text).toMatch(/^ +6 B {2}\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC {2}up\/a\.txt$/m);
    expect(text).toMatch(/^ +dir +up\/docs\/$/m);
    expect((await cli.json(["fs", "ls", `${R}/main/`])).map((r) => r.path ?? r.prefix)).toEqual([
      "meta/",
      "one/",
      "up/",
    ]);
  });

  it("pages with --limit and --after, printing where to continue", async () => {
    const first = await cli.json(["fs", "ls", `${R}/main/up/`, "--recursive", "--limit", "2"]);
    expect(first.map((r) => r.path ?? r.next)).toEqual(["up/a.txt", "up/b.bin", "up/b.bin"]);
    const rest = await cli.json([
      "fs",
      "ls",
      `${R}/main/up/`,
      "--recursive",
      "--after",
      "up/b.bin",
      "--limit",
      "10",
    ]);
    expect(rest.map((r) => r.path)).toEqual([
      "up/docs/deep/x.json",
      "up/docs/deep/y.csv",
      "up/docs/readme.md",
    ]);
    expect(await cli.ok(["fs", "ls", `${R}/main/up/`, "--recursive", "--limit", "2"])).toMatch(
      /^next: up\/b\.bin {2}\(cairn fs ls .* --after 'up\/b\.bin' --limit 2\)$/m,
    );
  });

  it("cats the exact bytes", async () => {
    const r = await cli(["fs", "cat", `${R}/main/up/b.bin`]);
    expect(r.status).toBe(0);
    expect(r.bytes.equals(binary)).toBe(true);
  });

  it("downloads one object to a file or into a directory, byte for byte", async () => {
    await cli.ok(["fs", "download", `${R}/main/up/b.bin`, "got.bin"]);
    expect(readFileSync(join(cli.dir, "got.bin")).equals(binary)).toBe(true);
    mkdirSync(join(cli.dir, "into"));
    const [rec] = await cli.json(["fs", "download", `${R}/main/up/docs/readme.md`, "into"]);
    expect(rec).toMatchObject({ path: "up/docs/readme.md", local: join("into", "readme.md") });
    expect(readFileSync(join(cli.dir, "into", "readme.md"), "utf8")).toBe("# docs\n");
    // Overwrites a file that exists, whole.
    await cli.ok(["fs", "download", `${R}/main/up/a.txt`, "got.bin"]);
    expect(readFileSync(join(cli.dir, "got.bin"), "utf8")).toBe("alpha\n");
  });

  it("downloads a prefix with --recursive, and the files equal the uploaded ones", async () => {
    const out = await cli.ok(["fs", "download", `${R}/main/up/`, "down", "--recursive", "--parallel", "2"]);
    expect(out).toContain("Downloaded 5 files");
    const down = join(cli.dir, "down");
    expect(tree(down)).toEqual(tree(join(cli.dir, "src")));
    for (const f of tree(down)) {
      expect(readFileSync(join(down, f)).equals(readFileSync(join(cli.dir, "src", f))), f).toBe(true);
    }
    // Without a trailing slash the path is still a folder; nothing half-written is left behind.
    await cli.ok(["fs", "download", `${R}/main/up/docs`, "docs-copy", "--recursive"]);
    expect(tree(join(cli.dir, "docs-copy"))).toEqual(["deep/x.json", "deep/y.csv", "readme.md"]);
    expect(readdirSync(cli.dir).filter((n) => n.includes(".partial"))).toEqual([]);
  });

  it("refuses bytes that do not match their record, and leaves the local files as they were", async () => {
    await cli.ok(["repo", "create", "cairn://damaged"]);
    const big = randomBytes(3 * 1024 * 1024 + 5);
    writeFileSync(join(cli.dir, "big.bin"), big);
    await cli.ok(["fs", "upload", "big.bin", "cairn://damaged/main/d/big.bin"]);
    await cli.ok(["fs", "upload", "single.txt", "cairn://damaged/main/d/small.txt"]);
    const [entry] = await cli.json<{ address: string }>(["fs", "stat", "cairn://damaged/main/d/big.bin"]);
    const data = join(cli.dir, ".cairn", "data", "damaged", ...entry!.address.split("/"));
    // Same size, one byte changed: only the SHA-256 can tell.
    const changed = Buffer.from(big);
    changed[big.length - 1]! ^= 1;
    writeFileSync(data, changed);
    writeFileSync(join(cli.dir, "kept.bin"), "as it was\n");
    const r = await cli(["fs", "download", "cairn://damaged/main/d/big.bin", "kept.bin"]);
    expectOneLineError(r, EXIT.CORRUPT);
    expect(r.stderr).toContain("cairn://damaged/main/d/big.bin do not match its record");
    expect(r.stderr).toContain("nothing was written");
    expect(readFileSync(join(cli.dir, "kept.bin"), "utf8")).toBe("as it was\n");
    // Cut short, in a recursive download: the other file arrives, the damaged one is not written.
    writeFileSync(data, big.subarray(0, 1024 * 1024));
    const all = await cli(["fs", "download", "cairn://damaged/main/d/", "damaged", "--recursive"]);
    expectOneLineError(all, EXIT.CORRUPT);
    expect(all.stderr).toContain(`(${1024 * 1024} bytes`);
    expect(tree(join(cli.dir, "damaged")).filter((f) => f !== "small.txt")).toEqual([]);
    expect(readdirSync(cli.dir).filter((n) => n.includes(".partial"))).toEqual([]);
  });

  it("says to use --recursive for a folder, and fails on an empty prefix", async () => {
    expect(await cli.fails(["fs", "download", `${R}/main/up/docs`, "x"], EXIT.USAGE)).toContain(
      "--recursive",
    );
    expect(await cli.fails(["fs", "cat", `${R}/main/up/docs`], EXIT.USAGE)).toContain("is a folder");
    await cli.fails(["fs", "download", `${R}/main/nothing/`, "x", "--recursive"], EXIT.NOT_FOUND);
    await cli.fails(["fs", "stat", `${R}/main/up/nope.txt`], EXIT.NOT_FOUND);
  });

  it("handles a file bigger than the in-memory upload limit", async () => {
    const big = randomBytes(9 * 1024 * 1024 + 17);
    writeFileSync(join(cli.dir, "big.bin"), big);
    await cli.ok(["fs", "upload", "big.bin", `${R}/main/big/`]);
    const [entry] = await cli.json(["fs", "stat", `${R}/main/big/big.bin`]);
    expect(entry!.size).toBe(big.length);
    await cli.ok(["fs", "download", `${R}/main/big/big.bin`, "big-back.bin"]);
    expect(readFileSync(join(cli.dir, "big-back.bin")).equals(big)).toBe(true);
  });

  it("removes one object, or a prefix with --recursive, as uncommitted changes", async () => {
    await cli.ok(["commit", `${R}/main`, "-m", "files"]);
    expect(await cli.ok(["fs", "rm", `${R}/main/one/single.txt`])).toContain("Removed");
    expect(await cli.fails(["fs", "rm", `${R}/main/up/docs`], EXIT.USAGE)).toContain("--recursive");
    const out = await cli.ok(["fs", "rm", `${R}/main/up/docs/`, "--recursive"]);
    expect(out).toContain("Removed 3 objects");
    expect(await cli.ok(["diff", `${R}/main`])).toBe(
      "- one/single.txt\n- up/docs/deep/x.json\n- up/docs/deep/y.csv\n- up/docs/readme.md\n",
    );
    await cli.fails(["fs", "cat", `${R}/main/one/single.txt`], EXIT.NOT_FOUND);
    // The commit still has them.
    const log = await cli.json<{ id: string }>(["log", `${R}/main`, "--limit", "1"]);
    expect(await cli.ok(["fs", "cat", `cairn://files/${log[0]!.id}/one/single.txt`])).toBe("just one\n");
    await cli.fails(["fs", "rm", `${R}/main/one/single.txt`], EXIT.NOT_FOUND);
    await cli.fails(["fs", "rm", `${R}/main/nothing/`, "--recursive"], EXIT.NOT_FOUND);
  });
});
