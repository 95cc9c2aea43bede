import { describe, expect, it } from "vitest";
import {
  hasCode,
  validatePath,
  validatePrefix,
  validateRefName,
  validateRepositoryName,
} from "../src/index.js";

const rejects = (fn: () => unknown) => {
  try {
    fn();
  } catch (e) {
    expect(hasCode(e, "INVALID_ARGUMENT")).toBe(true);
    return (e as Error).message;
  }
  throw new Error("expected INVALID_ARGUMENT");
};

describe("names", () => {
  it("accepts S3-like repository names and refuses others with a sentence naming the rule", () => {
    for (const ok of ["abc", "my-repo", "a1b", "x".repeat(63)]) expect(validateRepositoryName(ok)).toBe(ok);
    for (const bad of ["ab", "ABC", "a_b", "-ab", "ab-", "a--b", "a.b", "x".repeat(64)]) {
      expect(rejects(() => validateRepositoryName(bad))).toMatch(/^Invalid repository name/);
    }
  });

  it("accepts branch and tag names a ref can always parse", () => {
    for (const ok of ["main", "feature-1", "v1.0.2", "release_2026", "a"])
      expect(validateRefName(ok, "branch")).toBe(ok);
    for (const bad of [
      "",
      "a/b",
      "a b",
      "x~1",
      "x^2",
      ".x",
      "-x",
      "a..b",
      "x.",
      "abcdef0",
      "a".repeat(256),
    ]) {
      rejects(() => validateRefName(bad, "tag"));
    }
  });

  it("validates object paths and prefixes", () => {
    for (const ok of ["a", "a/b/c.txt", "émoji/😀", "with space", ".hidden/x", "a..b"])
      expect(validatePath(ok)).toBe(ok);
    for (const bad of ["", "/a", "a/", "a//b", ".", "..", "a/../b", "a/./b", "x\u0000", "x\n", "\udc00"]) {
      rejects(() => validatePath(bad));
    }
    expect(rejects(() => validatePath("x".repeat(1025)))).toMatch(/longer than 1024 bytes/);
    expect(validatePrefix("")).toBe("");
    expect(validatePrefix("dir/")).toBe("dir/");
    rejects(() => validatePrefix("/dir"));
  });
});
