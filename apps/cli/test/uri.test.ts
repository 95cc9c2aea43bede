import { describe, expect, it } from "vitest";
import { expectUri, formatUri, parseUri, refArgument } from "../src/uri.js";

describe("cairn:// URIs", () => {
  it("splits repository, ref and path", () => {
    expect(parseUri("cairn://photos")).toEqual({ repo: "photos" });
    expect(parseUri("cairn://photos/")).toEqual({ repo: "photos" });
    expect(parseUri("cairn://photos/main")).toEqual({ repo: "photos", ref: "main" });
    expect(parseUri("cairn://photos/main/")).toEqual({ repo: "photos", ref: "main", path: "" });
    expect(parseUri("cairn://photos/main~2/a/b c.png")).toEqual({
      repo: "photos",
      ref: "main~2",
      path: "a/b c.png",
    });
    expect(parseUri("cairn://photos/main/dir/")).toEqual({ repo: "photos", ref: "main", path: "dir/" });
  });

  it("rejects what is not a cairn:// URI, naming the expected forms", () => {
    for (const bad of ["photos/main", "s3://photos/main", "cairn:/photos", "", "cairn://", "cairn:///main"]) {
      expect(() => parseUri(bad), bad).toThrow(/cairn:\/\//);
    }
    expect(() => parseUri("cairn://photos//a")).toThrow(/empty ref/);
  });

  it("checks the shape a command expects", () => {
    expect(() => expectUri("cairn://photos/main", "repo")).toThrow(/expected cairn:\/\/<repo>\./);
    expect(() => expectUri("cairn://photos", "ref")).toThrow(/names no ref/);
    expect(() => expectUri("cairn://photos/main/a", "ref")).toThrow(/has a path after the ref/);
    expect(() => expectUri("cairn://photos/main/", "ref-path")).toThrow(/names no object path/);
    expect(expectUri("cairn://photos/main", "ref-prefix")).toEqual({ repo: "photos", ref: "main" });
    expect(expectUri("cairn://photos/main/a", "ref-path").path).toBe("a");
  });

  it("takes a ref bare or as a URI of the same repository", () => {
    expect(refArgument("main~1", "photos", "--source")).toBe("main~1");
    expect(refArgument("cairn://photos/v1", "photos", "--source")).toBe("v1");
    expect(() => refArgument("cairn://other/v1", "photos", "--source")).toThrow(/same repository/);
    expect(() => refArgument("a/b", "photos", "--source")).toThrow(/neither a ref/);
  });

  it("formats back", () => {
    expect(formatUri("photos", "main", "a/b")).toBe("cairn://photos/main/a/b");
    expect(formatUri("photos")).toBe("cairn://photos");
  });
});
