import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { EXIT, expectOneLineError, setupCli, snapshot } from "./helpers.js";

const cli = setupCli();
let before = "";

beforeAll(async () => {
  await cli.ok(["repo", "create", "cairn://safe"]);
  writeFileSync(join(cli.dir, "f.txt"), "f");
  await cli.ok(["fs", "upload", "f.txt", "cairn://safe/main/f.txt"]);
  await cli.ok(["commit", "cairn://safe/main", "-m", "one"]);
  await cli.ok(["fs", "upload", "f.txt", "cairn://safe/main/staged.txt"]);
  before = await snapshot(cli, "safe");
});

/** Each case: the command line, the exit status, and a piece of the one-line message. */
const cases: [string, string[], number, RegExp, { meta: false }?][] = [
  [
    "invalid repository name",
    ["repo", "create", "cairn://Not_Valid"],
    EXIT.INVALID_ARGUMENT,
    /Invalid repository name "Not_Valid"/,
  ],
  [
    "invalid repository name in a ref",
    ["log", "cairn://a/main"],
    EXIT.INVALID_ARGUMENT,
    /Invalid repository name "a"/,
  ],
  ["unknown repository", ["log", "cairn://nothere/main"], EXIT.NOT_FOUND, /Repository "nothere" not found/],
  [
    "invalid branch name",
    ["branch", "create", "cairn://safe/-x", "--source", "main"],
    EXIT.INVALID_ARGUMENT,
    /Invalid branch name/,
  ],
  [
    "invalid path",
    ["fs", "upload", "f.txt", "cairn://safe/main/a//b.txt"],
    EXIT.INVALID_ARGUMENT,
    /Invalid object path "a\/\/b\.txt"/,
  ],
  [
    "path with ..",
    ["fs", "upload", "f.txt", "cairn://safe/main/../x"],
    EXIT.INVALID_ARGUMENT,
    /'\.\.' segment/,
  ],
  ["unknown ref", ["fs", "ls", "cairn://safe/nope/"], EXIT.NOT_FOUND, /Ref "nope" not found/],
  [
    "unknown ref as a source",
    ["branch", "create", "cairn://safe/b", "--source", "nope"],
    EXIT.NOT_FOUND,
    /Ref "nope" not found/,
  ],
  [
    "unknown branch for upload",
    ["fs", "upload", "f.txt", "cairn://safe/nope/x"],
    EXIT.NOT_FOUND,
    /Branch "nope" not found/,
  ],
  ["unknown commit prefix", ["log", "cairn://safe/abcdef1"], EXIT.NOT_FOUND, /Ref "abcdef1" not found/],
  [
    "unknown scheme in --meta",
    ["repo", "list", "--meta", "nosuch://x"],
    EXIT.UNSUPPORTED,
    /Unknown metadata engine scheme "nosuch:" in nosuch:\/\/x; supported: dynamodb:\/\/, mysql:\/\/, redis:\/\/, rediss:\/\/, sqlite:\/\//,
    { meta: false },
  ],
  [
    "--meta that is not a URL",
    ["repo", "list", "--meta", "meta.db"],
    EXIT.INVALID_ARGUMENT,
    /not a metadata engine URL/,
    { meta: false },
  ],
  [
    "unknown scheme of a namespace",
    ["repo", "create", "cairn://other", "nosuch://bucket/x"],
    EXIT.UNSUPPORTED,
    /Unknown object store scheme "nosuch:".*file:\/\//,
  ],
  [
    "missing local file",
    ["fs", "upload", "missing.txt", "cairn://safe/main/m.txt"],
    EXIT.NOT_FOUND,
    /Local file or directory "missing\.txt" does not exist/,
  ],
  ["malformed URI: no scheme", ["log", "safe/main"], EXIT.USAGE, /"safe\/main" is not a cairn:\/\/ URI/],
  [
    "malformed URI: other scheme",
    ["fs", "cat", "s3://safe/main/f.txt"],
    EXIT.USAGE,
    /is not a cairn:\/\/ URI/,
  ],
  ["malformed URI: no repository", ["branch", "list", "cairn://"], EXIT.USAGE, /names no repository/],
  ["malformed URI: empty ref", ["fs", "cat", "cairn://safe//f.txt"], EXIT.USAGE, /has an empty ref/],
  [
    "URI without a ref",
    ["log", "cairn://safe"],
    EXIT.USAGE,
    /names no ref; expected cairn:\/\/<repo>\/<ref>/,
  ],
  [
    "URI with more than a repository",
    ["branch", "list", "cairn://safe/main"],
    EXIT.USAGE,
    /names more than a repository/,
  ],
  ["URI without a path", ["fs", "cat", "cairn://safe/main"], EXIT.USAGE, /names no object path/],
  ["unknown command", ["lgo", "cairn://safe/main"], EXIT.USAGE, /unknown command 'lgo'/],
  ["unknown option", ["log", "cairn://safe/main", "--colour"], EXIT.USAGE, /unknown option '--colour'/],
  ["missing argument", ["fs", "upload", "f.txt"], EXIT.USAGE, /missing required argument 'destination'/],
  ["excess argument", ["branch", "list", "cairn://safe", "extra"], EXIT.USAGE, /too many arguments/],
  [
    "bad --limit",
    ["log", "cairn://safe/main", "--limit", "-3"],
    EXIT.USAGE,
    /--limit must be a positive integer/,
  ],
  [
    "bad commit metadata",
    ["commit", "cairn://safe/main", "-m", "x", "--meta", "=v"],
    EXIT.USAGE,
    /"=v" is not key=value/,
  ],
  [
    "empty commit message",
    ["commit", "cairn://safe/main", "-m", " "],
    EXIT.INVALID_ARGUMENT,
    /non-empty message/,
  ],
  [
    "directory without --recursive",
    ["fs", "upload", ".", "cairn://safe/main/d/"],
    EXIT.USAGE,
    /is a directory; add --recursive/,
  ],
  ["ambiguous or bad ref syntax", ["log", "cairn://safe/main~x"], EXIT.INVALID_ARGUMENT, /Invalid ref/],
];

describe("bad input: one line, a distinct status, no stack trace, nothing changed", () => {
  // Independent of each other, so they run side by side; the check that nothing changed runs after them.
  for (const [name, args, status, message, options] of cases) {
    it.concurrent(name, async () => {
      const r = await cli(args, options);
      expectOneLineError(r, status);
      expect(r.stderr).toMatch(message);
    });
  }

  it("left the repository as it was", async () => {
    expect(await snapshot(cli, "safe")).toBe(before);
    expect((await cli.json<{ name: string }>(["repo", "list"])).map((r) => r.name)).toEqual(["safe"]);
  });

  it("prints the error as one JSON document with --json", async () => {
    const r = await cli(["log", "cairn://safe/nope", "--json"]);
    expect(r.status).toBe(EXIT.NOT_FOUND);
    expect(r.stdout).toBe("");
    expect(JSON.parse(r.stderr)).toEqual({
      error: { code: "NOT_FOUND", status: EXIT.NOT_FOUND, message: expect.stringContaining('Ref "nope"') },
    });
    const u = await cli(["--json", "log", "nope"]);
    expect(JSON.parse(u.stderr).error).toMatchObject({ code: "USAGE", status: EXIT.USAGE });
  });

  it("points at the help of the command for usage errors", async () => {
    expect(await cli.fails(["fs", "upload", "f.txt"], EXIT.USAGE)).toContain("(see: cairn fs upload --help)");
  });

  it("shows help with status 0 when asked, and with status 2 when a command is missing", async () => {
    const help = await cli(["fs", "upload", "--help"]);
    expect(help.status).toBe(0);
    expect(help.stdout).toContain("Usage: cairn fs upload [options] <local> <destination>");
    expect(help.stdout).toContain("--meta <engine-url>");
    const none = await cli(["repo"]);
    expect(none.status).toBe(EXIT.USAGE);
    expect(none.stderr).toContain("Usage: cairn repo <command> [options]");
    const version = await cli(["--version"], { meta: false });
    expect(version.status).toBe(0);
    expect(version.stdout).toMatch(/^\d+\.\d+\.\d+/);
  });

  it("reports an engine URL given after commit, as on every command", async () => {
    const r = await cli(["commit", "cairn://safe/main", "-m", "x", "--meta", "nosuch://x"], { meta: false });
    expectOneLineError(r, EXIT.UNSUPPORTED);
  });
});
