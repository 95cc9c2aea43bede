import { describe, expect, test } from "vitest";
import { ENVELOPE_MAGIC, type EncryptionAlgorithm, SEGMENT_SIZE } from "../src/index.js";
import { dump, expectManifestError, keys, read, sampleRecords } from "./helpers.js";

const decrypt = { privateKeyPem: keys.privateKeyPem, passphrase: keys.passphrase };
const HEADER_LENGTH = 8 + 1 + 1 + 4 + 7 + 2 + 256; // RSA-2048 wraps the data key into 256 bytes

/** A dump of about 200 KiB of JSONL, so its ciphertext has four segments. */
const bigRecords = () =>
  Array.from({ length: 2000 }, (_, i) => ({ type: "commit", id: `c${i}`, message: "m".repeat(80) }));

/** Offsets of each segment (its 4-byte length word) in an envelope. */
const segmentOffsets = (bytes: Buffer): number[] => {
  const offsets: number[] = [];
  let at = HEADER_LENGTH;
  while (at < bytes.length) {
    offsets.push(at);
    at += 4 + (bytes.readUInt32BE(at) & 0x7fffffff) + 16;
  }
  return offsets;
};

describe.each<EncryptionAlgorithm>(["aes256gcm-rsa", "chacha20-rsa"])("envelope %s", (algorithm) => {
  const encrypted = (records = sampleRecords()) =>
    dump(records, { encrypt: { publicKeyPem: keys.publicKeyPem, algorithm } });

  test("the header lays out magic, version, algorithm, segment size, nonce prefix and wrapped key", async () => {
    const bytes = await encrypted(bigRecords());
    expect(bytes.subarray(0, 8)).toEqual(ENVELOPE_MAGIC);
    expect(bytes[8]).toBe(1);
    expect(bytes[9]).toBe(algorithm === "aes256gcm-rsa" ? 1 : 2);
    expect(bytes.readUInt32BE(10)).toBe(SEGMENT_SIZE);
    expect(bytes.readUInt16BE(21)).toBe(256);
    const offsets = segmentOffsets(bytes);
    expect(offsets.length).toBe(4);
    const last = bytes.readUInt32BE(offsets.at(-1)!);
    expect(last & 0x80000000).not.toBe(0);
  });

  test("without a private key the dump is refused as ENCRYPTED", async () => {
    await expectManifestError(read(await encrypted()), "ENCRYPTED", /encrypted and no private key was given/);
  });

  test("the wrong RSA key is WRONG_KEY", async () => {
    await expectManifestError(
      read(await encrypted(), { decrypt: { privateKeyPem: keys.otherPrivateKeyPem } }),
      "WRONG_KEY",
      /cannot unwrap the data key: the dump was encrypted for a different key/,
    );
  });

  test("a wrong or missing passphrase is BAD_PASSPHRASE", async () => {
    const bytes = await encrypted();
    await expectManifestError(
      read(bytes, { decrypt: { privateKeyPem: keys.privateKeyPem, passphrase: "wrong" } }),
      "BAD_PASSPHRASE",
      /passphrase of the private key is wrong/,
    );
    await expectManifestError(
      read(bytes, { decrypt: { privateKeyPem: keys.privateKeyPem } }),
      "BAD_PASSPHRASE",
      /no passphrase was given \(set CAIRN_RSA_PASSPHRASE\)/,
    );
  });

  test("one flipped ciphertext byte is DECRYPT_FAILED", async () => {
    const bytes = Buffer.from(await encrypted(bigRecords()));
    const second = segmentOffsets(bytes)[1]!;
    bytes[second + 100]! ^= 0x01;
    await expectManifestError(
      read(bytes, { decrypt }),
      "DECRYPT_FAILED",
      new RegExp(`^Segment 1 at byte ${second} failed authentication`),
    );
  });

  test("one flipped header byte is detected", async () => {
    const bytes = Buffer.from(await encrypted());
    bytes[16]! ^= 0x01; // inside the nonce prefix
    await expectManifestError(
      read(bytes, { decrypt }),
      "DECRYPT_FAILED",
      /Segment 0 at byte \d+ failed authentication/,
    );
  });

  test("truncated ciphertext is TRUNCATED", async () => {
    const bytes = await encrypted(bigRecords());
    const offsets = segmentOffsets(bytes);
    await expectManifestError(
      read(bytes.subarray(0, offsets[2]! + 1000), { decrypt }),
      "TRUNCATED",
      /^The ciphertext ends at byte \d+ inside segment 2\.$/,
    );
    await expectManifestError(
      read(bytes.subarray(0, offsets.at(-1)!), { decrypt }),
      "TRUNCATED",
      /^The ciphertext ends at byte \d+ after segment 2, before its final segment\.$/,
    );
    await expectManifestError(read(bytes.subarray(0, 100), { decrypt }), "TRUNCATED", /wrapped data key/);
  });

  test("reordered segments are DECRYPT_FAILED", async () => {
    const bytes = await encrypted(bigRecords());
    const [s0, s1, s2] = segmentOffsets(bytes) as [number, number, number];
    const swapped = Buffer.concat([
      bytes.subarray(0, s0),
      bytes.subarray(s1, s2),
      bytes.subarray(s0, s1),
      bytes.subarray(s2),
    ]);
    await expectManifestError(
      read(swapped, { decrypt }),
      "DECRYPT_FAILED",
      /^Segment 0 at byte \d+ failed authentication/,
    );
  });

  test("bytes appended after the final segment are CORRUPT", async () => {
    const bytes = Buffer.concat([await encrypted(), Buffer.from("extra")]);
    await expectManifestError(read(bytes, { decrypt }), "CORRUPT", /after the final encrypted segment/);
  });
});

test("an unencrypted private key needs no passphrase; a non-RSA public key is refused", async () => {
  const { generateKeyPairSync } = await import("node:crypto");
  const pair = generateKeyPairSync("rsa", {
    modulusLength: 2048,
    publicKeyEncoding: { type: "pkcs1", format: "pem" },
    privateKeyEncoding: { type: "pkcs1", format: "pem" },
  });
  const bytes = await dump(sampleRecords(), { encrypt: { publicKeyPem: pair.publicKey } });
  expect((await read(bytes, { decrypt: { privateKeyPem: pair.privateKey } })).records).toHaveLength(8);
  const ec = generateKeyPairSync("ec", {
    namedCurve: "P-256",
    publicKeyEncoding: { type: "spki", format: "pem" },
    privateKeyEncoding: { type: "pkcs8", format: "pem" },
  });
  await expectManifestError(
    dump([], { encrypt: { publicKeyPem: ec.publicKey } }),
    "INVALID_OPTIONS",
    /ec key, not an RSA key/,
  );
});
