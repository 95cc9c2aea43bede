import { describe, expect, it } from "vitest";
import { type EngineFactory, hasCode, Registry, redactUrl, urlScheme } from "../src/index.js";

describe("URLs", () => {
  it("finds the scheme", () => {
    expect(urlScheme("sqlite://./x.db")).toBe("sqlite");
    expect(urlScheme("S3://bucket")).toBe("s3");
    expect(urlScheme("/just/a/path")).toBeUndefined();
  });

  it("hides passwords and secret parameters", () => {
    expect(redactUrl("mysql://root:hunter2@127.0.0.1:3306/cairn")).toBe(
      "mysql://root:***@127.0.0.1:3306/cairn",
    );
    expect(redactUrl("redis://:pw@host:6379/1")).toBe("redis://:***@host:6379/1");
    expect(redactUrl("s3://b/p?endpoint=http://x&secretKey=abc&region=eu")).toBe(
      "s3://b/p?endpoint=http://x&secretKey=***&region=eu",
    );
    expect(redactUrl("https://acct.blob.core.windows.net/c?sv=1&sig=XYZ")).toBe(
      "https://acct.blob.core.windows.net/c?sv=1&sig=***",
    );
    expect(redactUrl("file:///srv/data")).toBe("file:///srv/data");
  });
});

describe("Registry", () => {
  it("loads only the adapter a URL names", async () => {
    const loaded: string[] = [];
    const fake = (kind: string): EngineFactory => ({
      schemes: [kind],
      open: async () => {
        throw new Error(`${kind} opened`);
      },
    });
    const registry = new Registry()
      .addEngine(["sqlite"], () => {
        loaded.push("sqlite");
        return fake("sqlite");
      })
      .addEngine(["redis", "rediss"], () => {
        loaded.push("redis");
        return fake("redis");
      });
    await expect(registry.openEngine("rediss://h:1/0")).rejects.toThrow("redis opened");
    expect(loaded).toEqual(["redis"]);
    expect(registry.engineSchemes).toEqual(["redis", "rediss", "sqlite"]);
  });

  it("names the supported schemes for an unknown one, with the password hidden", async () => {
    const registry = new Registry().addStore(["file"], () => ({
      schemes: ["file"],
      open: async () => never(),
    }));
    const error = await registry.openStore("ftp://user:secret@host/x").catch((e: unknown) => e);
    expect(hasCode(error, "UNSUPPORTED")).toBe(true);
    expect((error as Error).message).toBe(
      'Unknown object store scheme "ftp:" in ftp://user:***@host/x; supported: file://.',
    );
    const noScheme = await registry.openStore("relative/dir").catch((e: unknown) => e);
    expect(hasCode(noScheme, "INVALID_ARGUMENT")).toBe(true);
  });
});

function never(): never {
  throw new Error("not reached");
}
