import { spawn, spawnSync } from "node:child_process";
import { generateKeyPairSync } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { beforeAll, describe, expect, it } from "vitest";
import { BIN, type Cli, EXIT, expectOneLineError, setupCli, snapshot } from "./helpers.js";

const cli = setupCli();
const CORRUPT = 8;

/** Runs a command on another engine URL and returns its stdout. */
const view = (c: Cli, meta: string) => async (args: string[]) => {
  const r = await c([...args, "--meta", meta], { meta: false });
  if (r.status !== 0) throw new Error(`cairn ${args.join(" ")} exited ${r.status}:\n${r.stderr}`);
  return r.stdout;
};

/** The helpers of `cli`, on another engine URL. */
const cliOn = (c: Cli, meta: string): Cli =>
  Object.assign((args: string[], options = {}) => c([...args, "--meta", meta], { ...options, meta: false }), {
    dir: c.dir,
    meta,
    ok: view(c, meta),
    json: async <T>(args: string[]) =>
      (await view(c, meta)([...args, "--json"]))
        .split("\n")
        .filter(Boolean)
        .map((l) => JSON.parse(l) as T),
    fails: c.fails,
  }) as Cli;

async function put(text: string, dest: string) {
  const local = join(cli.dir, "upload.tmp");
  writeFileSync(local, text);
  await cli.ok(["fs", "upload", local, dest]);
}

beforeAll(async () => {
  await cli.ok(["repo", "create", "cairn://source"]);
  await put("alpha\n", "cairn://source/main/docs/a.txt");
  await put("beta ünïcode 😀\n", "cairn://source/main/docs/b ü.txt");
  await cli.ok(["commit", "cairn://source/main", "-m", "first", "--meta", "ticket=1"]);
  await cli.ok(["branch", "create", "cairn://source/dev", "--source", "main"]);
  await put("gamma\n", "cairn://source/dev/c.txt");
  await cli.ok(["commit", "cairn://source/dev", "-m", "dev work"]);
  await cli.ok(["tag", "create", "cairn://source/v1", "main"]);
  await put("staged, not committed\n", "cairn://source/dev/staged.txt");
  await cli.ok(["repo", "create", "cairn://second"]);
});

const targetMeta = (name: string) => `sqlite://${join(cli.dir, `${name}.db`)}`;

describe("cairn dump and load", () => {
  it("moves every repository to a fresh engine: same log, listing, staged changes and bytes", async () => {
    const file = join(cli.dir, "all.json");
    expect(await cli.ok(["dump", cli.meta, file])).toContain("Dumped");
    expect(existsSync(`${file}.tmp`)).toBe(false);
    const lines = readFileSync(file, "utf8").trim().split("\n");
    expect(JSON.parse(lines[0]!)).toMatchObject({
      type: "header",
      format: "cairn.dump",
      consistency: "snapshot",
    });
    expect(JSON.parse(lines.at(-1)!)).toMatchObject({ type: "footer", counts: { repository: 2, tag: 1 } });
    const meta = targetMeta("moved");
    expect(await cli.ok(["load", meta, file])).toContain("2 repositories");
    const before = await snapshot(cli, "source");
    const after = await snapshot(cliOn(cli, meta), "source");
    expect(after).toBe(before);
    expect(await view(cli, meta)(["fs", "cat", "cairn://source/v1/docs/b ü.txt"])).toBe("beta ünïcode 😀\n");
    expect(await view(cli, meta)(["fs", "cat", "cairn://source/dev/staged.txt"])).toBe(
      "staged, not committed\n",
    );
  });

  it("loads on its reader thread under `node --input-type=module -e`, a flag worker threads refuse", async () => {
    const file = join(cli.dir, "eval.json");
    await cli.ok(["dump", cli.meta, file]);
    const meta = targetMeta("evaluated");
    // `node -e` gives the arguments after the script from process.argv[1]: the first one stands for the script.
    const r = spawnSync(
      process.execPath,
      [
        "--input-type=module",
        "-e",
        `await import(${JSON.stringify(pathToFileURL(BIN).href)})`,
        "-",
        "load",
        meta,
        file,
      ],
      { cwd: cli.dir, encoding: "utf8", env: { ...process.env, CAIRN_META: "" } },
    );
    expect(r.stderr).toBe("");
    expect(r.stdout).toContain("2 repositories");
    expect(r.status).toBe(0);
  });

  it("pipes dump into load between two processes, gzip and --no-staging included", async () => {
    const meta = targetMeta("piped");
    const dump = spawn(process.execPath, [BIN, "dump", cli.meta, "-", "--gzip", "--no-staging"], {
      cwd: cli.dir,
    });
    const load = spawn(process.execPath, [BIN, "load", meta, "-"], { cwd: cli.dir });
    dump.stdout.pipe(load.stdin);
    let err = "";
    load.stderr.on("data", (d) => {
      err += d;
    });
    const [a, b] = await Promise.all(
      [dump, load].map((p) => new Promise<number | null>((resolve) => p.on("close", resolve))),
    );
    expect([a, b], err).toEqual([0, 0]);
    expect(await view(cli, meta)(["fs", "cat", "cairn://source/dev/c.txt"])).toBe("gamma\n");
    const r = await cli(["fs", "stat", "cairn://source/dev/staged.txt", "--meta", meta], { meta: false });
    expect(r.status).toBe(EXIT.NOT_FOUND);
  });

  it("loads one repository into an engine that holds others, and refuses it twice", async () => {
    const file = join(cli.dir, "one.json.gz");
    await cli.ok(["dump", cli.meta, file, "--repo", "source"]);
    const meta = targetMeta("one");
    await view(cli, meta)(["repo", "create", "cairn://other"]);
    expect(await cli.ok(["load", meta, file, "--repo", "source"])).toContain("1 repository");
    const names = (await view(cli, meta)(["repo", "list", "--json"]))
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l).name);
    expect(names.sort()).toEqual(["other", "source"]);
    await cli.fails(["load", meta, file, "--repo", "source", "--meta", meta], EXIT.PRECONDITION_FAILED, {
      meta: false,
    });
  });

  it("encrypts for an RSA key, and refuses a wrong passphrase", async () => {
    const { publicKey, privateKey } = generateKeyPairSync("rsa", {
      modulusLength: 2048,
      publicKeyEncoding: { type: "spki", format: "pem" },
      privateKeyEncoding: { type: "pkcs8", format: "pem", cipher: "aes-256-cbc", passphrase: "s3cret" },
    });
    writeFileSync(join(cli.dir, "pub.pem"), publicKey);
    writeFileSync(join(cli.dir, "priv.pem"), privateKey);
    const file = join(cli.dir, "secret.dump");
    await cli.ok(["dump", cli.meta, file, "--encrypt-rsa-key", "pub.pem", "--encrypt-algo", "chacha20-rsa"]);
    expect(readFileSync(file).includes("alpha")).toBe(false);
    const bad = await cli(["load", targetMeta("enc-bad"), file, "--encrypt-rsa-key", "priv.pem"], {
      env: { CAIRN_RSA_PASSPHRASE: "wrong" },
    });
    expectOneLineError(bad, EXIT.INVALID_ARGUMENT);
    const meta = targetMeta("enc");
    const ok = await cli(["load", meta, file, "--encrypt-rsa-key", "priv.pem"], {
      env: { CAIRN_RSA_PASSPHRASE: "s3cret" },
    });
    expect(ok.status, ok.stderr).toBe(0);
    expect(await view(cli, meta)(["fs", "cat", "cairn://source/main/docs/a.txt"])).toBe("alpha\n");
  });

  describe("bad input: one line, non-zero, target unchanged", () => {
    let good: string;
    beforeAll(async () => {
      good = join(cli.dir, "good.json");
      await cli.ok(["dump", cli.meta, good]);
    });

    const expectEmpty = async (meta: string) => {
      const r = await cli(["repo", "list", "--json", "--meta", meta], { meta: false });
      expect(r.stdout).toBe("");
    };

    it("refuses to load into a non-empty engine", async () => {
      const before = await snapshot(cli, "source");
      await cli.fails(["load", cli.meta, good, "--meta", cli.meta], EXIT.PRECONDITION_FAILED, {
        meta: false,
      });
      expect(await snapshot(cli, "source")).toBe(before);
    });

    it("refuses a truncated dump", async () => {
      const text = readFileSync(good);
      const file = join(cli.dir, "truncated.json");
      writeFileSync(file, text.subarray(0, Math.floor(text.length * 0.6)));
      const meta = targetMeta("t1");
      expect(await cli.fails(["load", meta, file], CORRUPT)).toMatch(/cut off|ends/);
      await expectEmpty(meta);
    });

    it("refuses an altered record (digest), with the target left empty", async () => {
      const file = join(cli.dir, "altered.json");
      writeFileSync(file, readFileSync(good, "utf8").replace('"message":"first"', '"message":"forged"'));
      const meta = targetMeta("t2");
      expect(await cli.fails(["load", meta, file], CORRUPT)).toContain("sha256");
      await expectEmpty(meta);
    });

    it("refuses a branch pointing at a commit the dump does not hold", async () => {
      const lines = readFileSync(good, "utf8").trim().split("\n");
      const records = lines.slice(1, -1).map((l) => JSON.parse(l));
      const branch = records.find((r) => r.type === "branch");
      branch.commitId = "f".repeat(64);
      // A consistent footer, so only the reference is wrong.
      const body = `${records.map((r) => JSON.stringify(r)).join("\n")}\n`;
      const { createHash } = await import("node:crypto");
      const footer = {
        ...JSON.parse(lines.at(-1)!),
        sha256: createHash("sha256").update(body).digest("hex"),
      };
      const file = join(cli.dir, "dangling.json");
      writeFileSync(file, `${lines[0]}\n${body}${JSON.stringify(footer)}\n`);
      const meta = targetMeta("t3");
      expect(await cli.fails(["load", meta, file], CORRUPT)).toContain("not in the dump");
      await expectEmpty(meta);
    });

    it("names a JSON syntax error's line, and a missing file", async () => {
      const lines = readFileSync(good, "utf8").split("\n");
      lines[2] = "{not json";
      const file = join(cli.dir, "syntax.json");
      writeFileSync(file, lines.join("\n"));
      expect(await cli.fails(["load", targetMeta("t4"), file], CORRUPT)).toContain("line 3");
      expect(await cli.fails(["load", targetMeta("t5"), "missing.json"], EXIT.INVALID_ARGUMENT)).toContain(
        "missing.json",
      );
    });
  });
});
