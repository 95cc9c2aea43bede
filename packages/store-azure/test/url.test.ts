import { inspect } from "node:util";
import { AnonymousCredential, StorageSharedKeyCredential } from "@azure/storage-blob";
import { expectCode } from "@cairn/testkit";
import { AZURITE_ACCOUNT } from "@cairn/testkit/servers";
import { describe, expect, it } from "vitest";
import { azureStoreOptions, factory, parseAzureUrl, resolveAccess } from "../src/index.js";

const SIG = "c2VjcmV0LXNpZ25hdHVyZQ%3D%3D";
const SAS = `sv=2024-11-04&ss=b&srt=sco&sp=rwdlac&se=2030-01-01T00%3A00%3A00Z&sig=${SIG}`;

const invalid = async (fn: () => unknown, ...fragments: string[]) => {
  const error = await expectCode(
    (async () => {
      fn();
    })(),
    "INVALID_ARGUMENT",
  );
  for (const f of fragments) expect(error.message).toContain(f);
  return error;
};

describe("parseAzureUrl", () => {
  it("reads azure://container/prefix with percent-decoded segments and parameters", () => {
    expect(parseAzureUrl("azure://data")).toMatchObject({ form: "azure", container: "data", prefix: "" });
    expect(parseAzureUrl("azure://data/")).toMatchObject({ container: "data", prefix: "" });
    expect(parseAzureUrl("azure://data/a/b c/%C3%A9%2Fx/")).toMatchObject({
      container: "data",
      prefix: "a/b c/é/x/",
      display: "azure://data/a/b c/%C3%A9%2Fx/",
    });
    expect(
      parseAzureUrl(
        "azure://my-data-01/p?timeout=30&retries=0&concurrency=16&blockSize=4MiB&uploadBuffer=1GiB",
      ),
    ).toMatchObject({
      container: "my-data-01",
      prefix: "p/",
      timeoutSeconds: 30,
      retries: 0,
      concurrency: 16,
      blockSize: 4 * 1024 * 1024,
      uploadBuffer: 1024 * 1024 * 1024,
    });
    expect(parseAzureUrl("azure://$root/x").container).toBe("$root");
  });

  it("reads https://<account>.blob.core.windows.net/<container>/<prefix>, taking a SAS as a credential", () => {
    const plain = parseAzureUrl("https://myaccount.blob.core.windows.net/backups/cairn/prod");
    expect(plain).toMatchObject({
      form: "https",
      account: "myaccount",
      endpoint: "https://myaccount.blob.core.windows.net",
      container: "backups",
      prefix: "cairn/prod/",
    });
    expect(plain.sas).toBeUndefined();

    const withSas = parseAzureUrl(`https://myaccount.blob.core.windows.net/backups/p?${SAS}&timeout=10`);
    expect(withSas.sas).toBe(SAS);
    expect(withSas.timeoutSeconds).toBe(10);
    expect(withSas.display).toBe("https://myaccount.blob.core.windows.net/backups/p?timeout=10");
    expect(withSas.display).not.toContain(SIG);

    expect(parseAzureUrl("https://acct.blob.core.chinacloudapi.cn/c0n/x").endpoint).toBe(
      "https://acct.blob.core.chinacloudapi.cn",
    );
  });

  it("refuses other forms, bad names and unknown parameters with INVALID_ARGUMENT, naming what is wrong", async () => {
    await invalid(() => parseAzureUrl("s3://bucket/x"), "s3://bucket/x", "azure://container/prefix");
    await invalid(() => parseAzureUrl("azure://"), "names no container");
    await invalid(() => parseAzureUrl("azure://Upper/x"), '"Upper"', "not a valid container name");
    await invalid(() => parseAzureUrl("azure://ab/x"), '"ab"');
    await invalid(() => parseAzureUrl("azure://a--b/x"), '"a--b"');
    await invalid(() => parseAzureUrl("azure://data/x?mode=fast"), 'Unknown parameter "mode"', "timeout");
    await invalid(() => parseAzureUrl(`azure://data/x?${SAS}`), 'Unknown parameter "sv"');
    await invalid(() => parseAzureUrl("azure://data/x?timeout=0"), "timeout=0");
    await invalid(() => parseAzureUrl("azure://data/x?timeout=abc"), "timeout=abc");
    await invalid(() => parseAzureUrl("azure://data/x?concurrency=-1"), "concurrency=-1");
    await invalid(() => parseAzureUrl("azure://data/x?blockSize=1KiB"), "blockSize=1KiB");
    await invalid(() => parseAzureUrl("azure://data/x?uploadBuffer=1KiB"), "uploadBuffer=1KiB");
    await invalid(() => parseAzureUrl("azure://data/a./b"), 'ending in "."');
    await invalid(() => parseAzureUrl("azure://data/a//b"), "empty segment");
    await invalid(() => parseAzureUrl("azure://data/%E0%A4%A"), "percent-encoding");
    await invalid(() => parseAzureUrl("https://example.com/c/x"), "https://example.com/c/x", "BlobEndpoint");
    await invalid(() => parseAzureUrl("http://acct.blob.core.windows.net/c/x"), "http://acct");
    await invalid(
      () => parseAzureUrl("https://acct.blob.core.windows.net/data/x?sv=2024-11-04&sp=r"),
      'no "sig"',
    );
    const error = await invalid(() =>
      parseAzureUrl(`https://acct.blob.core.windows.net/data/x?${SAS}&bad=1`),
    );
    expect(error.message).not.toContain(SIG);
  });
});

describe("credentials", () => {
  const cs = `DefaultEndpointsProtocol=http;AccountName=${AZURITE_ACCOUNT.name};AccountKey=${AZURITE_ACCOUNT.key};BlobEndpoint=http://127.0.0.1:10000/${AZURITE_ACCOUNT.name};`;

  it("takes azure:// accounts from AZURE_STORAGE_CONNECTION_STRING, or the account with a key or SAS", () => {
    const azure = parseAzureUrl("azure://data/x");
    const fromCs = resolveAccess(azure, { AZURE_STORAGE_CONNECTION_STRING: cs });
    expect(fromCs.endpoint).toBe(`http://127.0.0.1:10000/${AZURITE_ACCOUNT.name}`);
    expect(fromCs.credential).toBeInstanceOf(StorageSharedKeyCredential);

    const standard = resolveAccess(azure, {
      AZURE_STORAGE_CONNECTION_STRING:
        "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=a2V5;EndpointSuffix=core.windows.net",
    });
    expect(standard.endpoint).toBe("https://acct.blob.core.windows.net");

    const sasCs = resolveAccess(azure, {
      AZURE_STORAGE_CONNECTION_STRING: `BlobEndpoint=https://acct.blob.core.windows.net/;SharedAccessSignature=?${SAS}`,
    });
    expect(sasCs).toMatchObject({ endpoint: "https://acct.blob.core.windows.net", sas: SAS });
    expect(sasCs.credential).toBeInstanceOf(AnonymousCredential);

    const key = resolveAccess(azure, { AZURE_STORAGE_ACCOUNT: "acct", AZURE_STORAGE_KEY: "a2V5" });
    expect(key.endpoint).toBe("https://acct.blob.core.windows.net");
    expect(key.credential).toBeInstanceOf(StorageSharedKeyCredential);
    expect(
      resolveAccess(azure, { AZURE_STORAGE_ACCOUNT: "acct", AZURE_STORAGE_SAS_TOKEN: `?${SAS}` }).sas,
    ).toBe(SAS);
  });

  it("takes https:// accounts from a SAS in the URL, then the environment if it names the account, else none", () => {
    const url = parseAzureUrl(`https://acct.blob.core.windows.net/data/x?${SAS}`);
    expect(resolveAccess(url, { AZURE_STORAGE_KEY: "a2V5" }).sas).toBe(SAS);
    const bare = parseAzureUrl("https://acct.blob.core.windows.net/data/x");
    expect(resolveAccess(bare, { AZURE_STORAGE_KEY: "a2V5" }).credential).toBeInstanceOf(
      StorageSharedKeyCredential,
    );
    expect(
      resolveAccess(bare, { AZURE_STORAGE_ACCOUNT: "other", AZURE_STORAGE_KEY: "a2V5" }).credential,
    ).toBeInstanceOf(AnonymousCredential);
    const fromCs = resolveAccess(bare, {
      AZURE_STORAGE_CONNECTION_STRING: "AccountName=acct;AccountKey=a2V5;BlobEndpoint=http://elsewhere/acct",
    });
    expect(fromCs.endpoint).toBe("https://acct.blob.core.windows.net");
    expect(fromCs.credential).toBeInstanceOf(StorageSharedKeyCredential);
  });

  it("refuses missing or broken credentials without quoting them", async () => {
    const azure = parseAzureUrl("azure://data/x");
    await invalid(() => resolveAccess(azure, {}), "AZURE_STORAGE_CONNECTION_STRING", "azure://data/x");
    await invalid(() => resolveAccess(azure, { AZURE_STORAGE_ACCOUNT: "acct" }), "AZURE_STORAGE_KEY");
    const secret = "not base64 !!! secret";
    const broken = await invalid(
      () =>
        resolveAccess(azure, {
          AZURE_STORAGE_CONNECTION_STRING: `AccountName=acct;AccountKey=${secret}`,
        }),
      "not base64",
    );
    expect(broken.message).not.toContain(secret);
    const noPairs = await invalid(
      () => resolveAccess(azure, { AZURE_STORAGE_CONNECTION_STRING: secret }),
      "AZURE_STORAGE_CONNECTION_STRING",
    );
    expect(noPairs.message).not.toContain(secret);
    await invalid(
      () => resolveAccess(azure, { AZURE_STORAGE_CONNECTION_STRING: "UseDevelopmentStorage=true" }),
      "UseDevelopmentStorage",
    );
  });

  it("opens a store whose url and dumps hold no credential", async () => {
    const old = process.env.AZURE_STORAGE_CONNECTION_STRING;
    process.env.AZURE_STORAGE_CONNECTION_STRING = cs;
    try {
      const store = await factory.open("azure://data/some/prefix?timeout=5");
      expect(store.kind).toBe("azure");
      expect(store.url).toBe("azure://data/some/prefix?timeout=5");
      expect(store.prefix).toBe("some/prefix/");
      const https = await factory.open(`https://acct.blob.core.windows.net/data/p?${SAS}`);
      expect(https.url).toBe("https://acct.blob.core.windows.net/data/p");
      for (const s of [store, https]) {
        const dump = `${JSON.stringify(s)} ${inspect(s, { depth: 2 })} ${String(s.url)}`;
        expect(dump).not.toContain(AZURITE_ACCOUNT.key);
        expect(dump).not.toContain(SIG);
      }
      expect(factory.schemes).toEqual(["azure", "https"]);
      expect(azureStoreOptions("azure://data/x?concurrency=3").concurrency).toBe(3);
    } finally {
      if (old === undefined) delete process.env.AZURE_STORAGE_CONNECTION_STRING;
      else process.env.AZURE_STORAGE_CONNECTION_STRING = old;
    }
  });
});
