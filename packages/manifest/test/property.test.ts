import fc from "fast-check";
import { expect, test } from "vitest";
import type { DumpRecord } from "../src/index.js";
import { dump, keys, read, SECTIONS } from "./helpers.js";

const recordArbitrary = fc
  .tuple(fc.constantFrom(...SECTIONS), fc.dictionary(fc.string(), fc.jsonValue(), { maxKeys: 6 }))
  .map(([type, fields]): DumpRecord => ({ ...fields, type }));

test("random records round-trip through every combination of gzip and encryption", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(recordArbitrary, { maxLength: 40 }),
      fc.boolean(),
      fc.constantFrom(undefined, "aes256gcm-rsa", "chacha20-rsa"),
      fc.integer({ min: 1, max: 4096 }),
      async (records, gzip, algorithm, _chunk) => {
        const sorted = [...records].sort(
          (a, b) => SECTIONS.indexOf(a.type as never) - SECTIONS.indexOf(b.type as never),
        );
        const bytes = await dump(sorted, {
          gzip,
          ...(algorithm === undefined ? {} : { encrypt: { publicKeyPem: keys.publicKeyPem, algorithm } }),
        });
        const back = await read(bytes, {
          decrypt: { privateKeyPem: keys.privateKeyPem, passphrase: keys.passphrase },
        });
        expect(back.records).toEqual(sorted.map((record) => JSON.parse(JSON.stringify(record))));
        for (const type of SECTIONS) {
          expect(back.footer?.counts[type]).toBe(sorted.filter((record) => record.type === type).length);
        }
      },
    ),
    { numRuns: 60 },
  );
});
