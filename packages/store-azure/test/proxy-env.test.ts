import { StorageSharedKeyCredential } from "@azure/storage-blob";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { DirectReads, proxiedBySdk } from "../src/direct-reads.js";

const endpoint = new URL("https://acct.blob.core.windows.net");

describe("proxiedBySdk", () => {
  it("follows the proxy variables the SDK reads, in either case", () => {
    expect(proxiedBySdk(endpoint, {})).toBe(false);
    for (const name of ["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "HTTP_PROXY", "http_proxy"]) {
      expect(proxiedBySdk(endpoint, { [name]: "http://proxy:3128" })).toBe(true);
    }
    // The SDK proxies plain http too, whichever variable is set.
    expect(proxiedBySdk(new URL("http://127.0.0.1:10000"), { HTTPS_PROXY: "http://proxy:3128" })).toBe(true);
    expect(proxiedBySdk(endpoint, { HTTPS_PROXY: "" })).toBe(false);
  });

  it("leaves hosts that NO_PROXY names, exactly or by domain", () => {
    const proxy = { HTTPS_PROXY: "http://proxy:3128" };
    expect(proxiedBySdk(endpoint, { ...proxy, NO_PROXY: "acct.blob.core.windows.net" })).toBe(false);
    expect(proxiedBySdk(endpoint, { ...proxy, no_proxy: "localhost, .core.windows.net" })).toBe(false);
    expect(
      proxiedBySdk(new URL("https://core.windows.net"), { ...proxy, NO_PROXY: ".core.windows.net" }),
    ).toBe(false);
    expect(proxiedBySdk(endpoint, { ...proxy, NO_PROXY: "blob.core.windows.net" })).toBe(true);
    expect(proxiedBySdk(endpoint, { ...proxy, NO_PROXY: "windows.net.evil" })).toBe(true);
    expect(proxiedBySdk(endpoint, { ...proxy, NO_PROXY: "," })).toBe(true);
  });
});

describe("DirectReads.create", () => {
  const names = ["HTTPS_PROXY", "ALL_PROXY", "HTTP_PROXY", "NO_PROXY"].flatMap((n) => [n, n.toLowerCase()]);
  const saved = Object.fromEntries(names.map((name) => [name, process.env[name]]));
  beforeEach(() => {
    for (const name of names) delete process.env[name];
  });
  afterEach(() => {
    for (const name of names) {
      if (saved[name] === undefined) delete process.env[name];
      else process.env[name] = saved[name];
    }
  });
  const options = {
    endpoint: endpoint.href,
    container: "c",
    credential: new StorageSharedKeyCredential("acct", Buffer.from("key").toString("base64")),
    sas: undefined,
    timeoutMs: 1000,
  };

  it("reads directly without a proxy, and leaves reads to the SDK where it would use one", () => {
    const direct = DirectReads.create(options);
    expect(direct).toBeInstanceOf(DirectReads);
    direct?.close();
    process.env.HTTPS_PROXY = "http://proxy.example:3128";
    expect(DirectReads.create(options)).toBeUndefined();
    process.env.NO_PROXY = ".windows.net";
    const bypassing = DirectReads.create(options);
    expect(bypassing).toBeInstanceOf(DirectReads);
    bypassing?.close();
  });
});
