import { existsSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { collect, randomName, tempDir } from "../src/index.js";

const fileDir = await tempDir("cairn-testkit-");
let testDir = "";

afterAll(() => {
  expect(existsSync(fileDir)).toBe(true);
});

describe("tempDir", () => {
  it("creates an empty folder that lives for the test", async () => {
    testDir = await tempDir("cairn-testkit-");
    expect(testDir).toMatch(/cairn-testkit-/);
    expect(existsSync(testDir)).toBe(true);
    await writeFile(join(testDir, "file"), "x");
  });

  it("removes it, with its content, after the test that made it", () => {
    expect(testDir).not.toBe("");
    expect(existsSync(testDir)).toBe(false);
  });

  it("keeps a folder made while collecting until the suite ends", () => {
    expect(existsSync(fileDir)).toBe(true);
  });
});

describe("randomName", () => {
  it("starts with the prefix and differs on every call", () => {
    const names = Array.from({ length: 1000 }, () => randomName("p"));
    expect(new Set(names).size).toBe(1000);
    for (const name of names) expect(name).toMatch(/^p-[0-9a-z]+-[0-9a-f]{12}$/);
  });
});

describe("collect", () => {
  it("gathers an async iterable in order", async () => {
    async function* three() {
      yield 1;
      yield 2;
      yield 3;
    }
    expect(await collect(three())).toEqual([1, 2, 3]);
  });
});
