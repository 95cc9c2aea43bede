import { expect, test } from "vitest";
import { isSecretKey, redactSecrets } from "../src/index.js";

test('redactSecrets replaces credential-looking fields and URL passwords with "removed"', () => {
  const settings = {
    engine: "mysql://cairn:s3cret@db:3306/cairn",
    store: {
      url: "s3://bucket/prefix?endpoint=http://minio:9000&region=eu",
      accessKeyId: "AKIA…",
      secret_access_key: "xyz",
      sessionToken: "tok",
      azure: { connectionString: "DefaultEndpointsProtocol=…", accountKey: "k", sas: "sv=…" },
      sasUrl: "https://acct.blob.core.windows.net/c?sv=2024&sig=abc",
    },
    list: [{ password: "p", user: "u" }],
    rsaPassphrase: "pp",
    emptyPassword: "",
    tokens: 3,
    name: "photos",
  };
  const copy = structuredClone(settings);
  expect(redactSecrets(settings)).toEqual({
    engine: "mysql://cairn:removed@db:3306/cairn",
    store: {
      url: "s3://bucket/prefix?endpoint=http://minio:9000&region=eu",
      accessKeyId: "removed",
      secret_access_key: "removed",
      sessionToken: "removed",
      azure: { connectionString: "removed", accountKey: "removed", sas: "removed" },
      sasUrl: "https://acct.blob.core.windows.net/c?sv=2024&sig=removed",
    },
    list: [{ password: "removed", user: "u" }],
    rsaPassphrase: "removed",
    emptyPassword: "",
    tokens: 3,
    name: "photos",
  });
  expect(settings).toEqual(copy);
  expect(isSecretKey("API-Key")).toBe(true);
  expect(isSecretKey("tokenizer")).toBe(false);
});
