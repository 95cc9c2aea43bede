import { PassThrough } from "node:stream";
import {
  type DumpEngineOptions,
  dumpEngine,
  ENGINE_DUMP_SCHEMAS,
  ENGINE_DUMP_SECTIONS,
  type MetadataEngine,
} from "@cairn/core";
import { type DumpRecord, readDump, writeDump } from "@cairn/manifest";
import { collect } from "./helpers.js";

/**
 * Dumps `engine` as `cairn dump` does, in memory: the dump's bytes, and its records (header and footer left out)
 * read back and checked by `readDump`. For round trips: load the bytes into another engine, dump that, and
 * compare the records.
 */
export async function dumpToBytes(
  engine: MetadataEngine,
  options: DumpEngineOptions = {},
): Promise<{ bytes: Buffer; records: DumpRecord[] }> {
  const out = new PassThrough();
  const chunks: Buffer[] = [];
  out.on("data", (c: Buffer) => chunks.push(c));
  const writer = writeDump({
    output: out,
    sections: ENGINE_DUMP_SECTIONS,
    source: { engine: engine.kind },
    tool: { name: "cairn-test", version: "0" },
    consistency: engine.capabilities.consistency,
  });
  await dumpEngine(engine, writer, options);
  await writer.end();
  const bytes = Buffer.concat(chunks);
  return { bytes, records: await collect(readDump([bytes], { schemas: ENGINE_DUMP_SCHEMAS })) };
}
