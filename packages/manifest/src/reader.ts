import { createHash } from "node:crypto";
import { pipeline, Readable } from "node:stream";
import { createGunzip } from "node:zlib";
import { ByteReader, type DecryptOptions, decryptEnvelope, isEnvelope } from "./envelope.js";
import { ManifestError } from "./errors.js";
import { DUMP_FORMAT, DUMP_VERSION, type DumpFooter, type DumpHeader, type DumpRecord } from "./format.js";
import { checkSchema, FOOTER_SCHEMA, HEADER_SCHEMA, type RecordSchemas } from "./schema.js";

export interface ReadDumpOptions {
  /** Private key for an encrypted dump. Without it an encrypted dump is refused with `ENCRYPTED`. */
  readonly decrypt?: DecryptOptions;
  /** Expected section order; records of other types are refused. @default the header's `sections` */
  readonly sections?: readonly string[];
  /** Required fields per record type, checked on every record. @default {} */
  readonly schemas?: RecordSchemas;
  /** Name of the input (e.g. a file name) put before the line in messages. @default undefined */
  readonly label?: string;
  /** Longest line accepted, in bytes; a longer one is refused as `CORRUPT`. @default 67108864 (64 MiB) */
  readonly maxLineBytes?: number;
  /** Keep each record's line, for {@link DumpReader.linePages}. @default false */
  readonly lines?: boolean;
}

/** The records of one chunk of input with their lines (see {@link DumpReader.linePages}). */
export interface DumpLinePage {
  readonly records: readonly DumpRecord[];
  /** `lines[i]` is the line of `records[i]` as read: its UTF-8 bytes, without the newline. */
  readonly lines: readonly Buffer[];
}

/**
 * A dump being read. Iterate it (once) for the records, in file order; each is yielded only after
 * its line passed every check, and the iteration throws at the end when the footer is missing or
 * does not match. Records seen before such an error must be treated as unverified.
 */
export interface DumpReader extends AsyncIterable<DumpRecord> {
  /** The header, read and checked on first call (iteration calls it too). */
  header(): Promise<DumpHeader>;
  /**
   * The records in pages — those of one chunk of input at a time, in file order, each page non-empty — for
   * readers that go through many: one step per page instead of one per record. Iterate either the reader or its
   * pages, once; the same checks apply.
   */
  pages(): AsyncIterable<readonly DumpRecord[]>;
  /**
   * The pages with each record's line as read, for a reader that stores records as they came rather than
   * serializing them again; needs the `lines` option. The lines are views of the input's chunks (after
   * decryption and gunzip), which this reader does not use again once a page is handed over.
   */
  linePages(): AsyncIterable<DumpLinePage>;
  /** The footer, once iteration has completed without error; `undefined` before. */
  readonly footer: DumpFooter | undefined;
}

const GZIP_MAGIC = Buffer.from([0x1f, 0x8b]);

/** The records of one chunk of input, and their lines when the reader keeps them. */
interface Page {
  records: DumpRecord[];
  lines: Buffer[] | undefined;
}

const isPlainObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value);

async function* gunzip(source: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  let sourceError: unknown;
  async function* guarded() {
    try {
      yield* source;
    } catch (error) {
      sourceError = error;
      throw error;
    }
  }
  const inflate = createGunzip();
  pipeline(Readable.from(guarded()), inflate, () => {});
  try {
    for await (const chunk of inflate) yield chunk as Buffer;
  } catch (error) {
    if (sourceError !== undefined) throw sourceError;
    const code = (error as { code?: string }).code;
    const detail = (error as Error).message;
    if (code === "Z_BUF_ERROR" || /unexpected end/i.test(detail)) {
      throw new ManifestError(
        "TRUNCATED",
        `The gzip stream ends early after ${inflate.bytesWritten} compressed bytes.`,
        {
          cause: error,
        },
      );
    }
    throw new ManifestError(
      "CORRUPT",
      `The gzip stream is corrupt after ${inflate.bytesWritten} compressed bytes (zlib: ${detail}).`,
      { cause: error },
    );
  }
  if (sourceError !== undefined) throw sourceError;
}

/** Undoes encryption (when the input starts with the envelope magic) and gzip (when the bytes start with 1f 8b). */
async function* plainBytes(
  input: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  options: ReadDumpOptions,
): AsyncGenerator<Buffer> {
  const raw = new ByteReader(input);
  let plain = raw;
  if (isEnvelope(await raw.peek(8))) {
    if (options.decrypt === undefined) {
      await raw.close();
      throw new ManifestError(
        "ENCRYPTED",
        "The dump is encrypted and no private key was given to decrypt it.",
      );
    }
    plain = new ByteReader(decryptEnvelope(raw, options.decrypt));
  }
  if (GZIP_MAGIC.equals(await plain.peek(2))) yield* gunzip(plain.rest());
  else yield* plain.rest();
}

class Reader implements DumpReader {
  footer: DumpFooter | undefined;
  readonly #options: ReadDumpOptions;
  readonly #pages: AsyncGenerator<Page>;
  #header: Promise<DumpHeader> | undefined;
  #resolveHeader!: (header: DumpHeader) => void;
  #iterated = false;

  constructor(input: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, options: ReadDumpOptions) {
    this.#options = options;
    this.#pages = this.#parse(plainBytes(input, options));
  }

  /** Reads up to the header line: the first page comes back once the header is checked, and is kept for iteration. */
  header(): Promise<DumpHeader> {
    if (this.#header === undefined) {
      const header = new Promise<DumpHeader>((resolve) => {
        this.#resolveHeader = resolve;
      });
      const first = this.#pages.next();
      // Either the header is found (resolving `header`) or reading fails before it, rejecting `first`.
      this.#header = Promise.race([header, first.then(() => header)]);
      this.#first = first;
    }
    return this.#header;
  }

  #first: Promise<IteratorResult<Page>> | undefined;

  async *pages(): AsyncGenerator<readonly DumpRecord[]> {
    for await (const page of this.#iterate()) yield page.records;
  }

  linePages(): AsyncIterable<DumpLinePage> {
    if (this.#options.lines !== true) {
      throw new ManifestError("INVALID_OPTIONS", "linePages() needs the reader's `lines` option.");
    }
    return this.#iterate() as AsyncIterable<DumpLinePage>;
  }

  async *#iterate(): AsyncGenerator<Page> {
    if (this.#iterated) throw new ManifestError("INVALID_OPTIONS", "A dump can be iterated only once.");
    this.#iterated = true;
    try {
      await this.header();
      const first = await this.#first!;
      if (first.done) return;
      if (first.value.records.length > 0) yield first.value;
      for await (const page of { [Symbol.asyncIterator]: () => this.#pages }) {
        if (page.records.length > 0) yield page;
      }
    } finally {
      // Stopping early closes the input.
      await this.#pages.return(undefined);
    }
  }

  async *[Symbol.asyncIterator](): AsyncIterator<DumpRecord> {
    for await (const page of this.pages()) yield* page;
  }

  /** The records of each chunk of input; the header goes to `#resolveHeader`, the footer is checked at the end. */
  async *#parse(bytes: AsyncIterable<Buffer>): AsyncGenerator<Page> {
    const options = this.#options;
    const keepLines = options.lines === true;
    const maxLine = options.maxLineBytes ?? 64 * 1024 * 1024;
    const prefix = options.label === undefined ? "" : `${options.label}, `;
    const hash = createHash("sha256");
    const counts = new Map<string, number>();
    let order: ReadonlyMap<string, number> | undefined;
    let orderList: readonly string[] = [];
    let current = 0;
    let header: DumpHeader | undefined;
    let footer: DumpFooter | undefined;
    let lineNumber = 0;
    let lastLine = 0;
    let base = 0; // byte offset of `buf[0]` in the plain JSONL stream
    let carry: Buffer[] = [];
    let carryBytes = 0;

    const parseLine = (text: string, at: number, terminated: boolean): unknown => {
      try {
        return JSON.parse(text);
      } catch (cause) {
        if (!terminated) {
          throw new ManifestError(
            "TRUNCATED",
            `${prefix}line ${lineNumber} (byte offset ${at}) is cut off: the dump ends in the middle of a line.`,
            { cause },
          );
        }
        throw new ManifestError(
          "CORRUPT",
          `${prefix}line ${lineNumber} (byte offset ${at}) is not valid JSON (${(cause as Error).message}).`,
          { cause },
        );
      }
    };

    // `line` ends with its "\n" when `terminated`. Returns the item to yield, or undefined for a line that yields nothing (blank line, footer).
    const handle = (line: Buffer, at: number, terminated: boolean): DumpRecord | undefined => {
      lineNumber++;
      const where = `${prefix}line ${lineNumber}`;
      const text = line.toString("utf8", 0, terminated ? line.length - 1 : line.length);
      if (line[0] !== 0x7b && text.trim() === "") return undefined;
      if (footer !== undefined) {
        throw new ManifestError("CORRUPT", `${where} (byte offset ${at}) comes after the footer.`);
      }
      const value = parseLine(text, at, terminated);
      lastLine = lineNumber;
      if (header === undefined) {
        if (!isPlainObject(value) || value.type !== "header" || value.format !== DUMP_FORMAT) {
          throw new ManifestError(
            "CORRUPT",
            `${where} is not a ${DUMP_FORMAT} header: this is not a cairn dump.`,
          );
        }
        if (typeof value.version === "number" && value.version > DUMP_VERSION) {
          throw new ManifestError(
            "UNSUPPORTED_VERSION",
            `${where}: the dump has format version ${value.version}, newer than the ${DUMP_VERSION} this reader supports; upgrade cairn to read it.`,
          );
        }
        checkSchema(value, HEADER_SCHEMA, where);
        if (!terminated) throw new ManifestError("TRUNCATED", `The dump ends after its header (${where}).`);
        const sections = options.sections ?? (value.sections as unknown[]);
        const map = new Map<string, number>();
        for (const [i, type] of sections.entries()) {
          if (typeof type !== "string") {
            throw new ManifestError("INVALID_RECORD", `${where}: header.sections[${i}] must be a string.`);
          }
          map.set(type, i);
        }
        order = map;
        orderList = sections as string[];
        header = value as DumpHeader;
        this.#resolveHeader(header);
        return undefined;
      }
      if (!isPlainObject(value) || typeof value.type !== "string") {
        throw new ManifestError("INVALID_RECORD", `${where}: record.type must be a string.`);
      }
      const type = value.type;
      if (type === "footer") {
        checkSchema(value, FOOTER_SCHEMA, where);
        footer = value as unknown as DumpFooter;
        return undefined;
      }
      const index = order!.get(type);
      if (index === undefined) {
        throw new ManifestError(
          "INVALID_RECORD",
          `${where}: record type "${type}" is not one of the sections (${orderList.join(", ")}).`,
        );
      }
      if (index < current) {
        throw new ManifestError(
          "OUT_OF_ORDER",
          `${where}: a "${type}" record comes after the "${orderList[current]}" section; sections must follow the order ${orderList.join(", ")}.`,
        );
      }
      const schema = options.schemas?.[type];
      if (schema) checkSchema(value, schema, where);
      if (!terminated) {
        throw new ManifestError(
          "TRUNCATED",
          `${where} (byte offset ${at}) is cut off: the dump ends in the middle of a line.`,
        );
      }
      current = index;
      counts.set(type, (counts.get(type) ?? 0) + 1);
      hash.update(line);
      return value as DumpRecord;
    };

    const tooLong = (at: number): never => {
      throw new ManifestError(
        "CORRUPT",
        `${prefix}line ${lineNumber + 1} (byte offset ${at}) is longer than ${maxLine} bytes.`,
      );
    };

    /** Reads one line; a record goes on `page`, with its line when those are kept. */
    const add = (page: Page, line: Buffer, at: number, terminated: boolean) => {
      const item = handle(line, at, terminated);
      if (item === undefined) return;
      page.records.push(item);
      page.lines?.push(terminated ? line.subarray(0, line.length - 1) : line);
    };
    const newPage = (): Page => ({ records: [], lines: keepLines ? [] : undefined });

    for await (const chunk of bytes) {
      const page = newPage();
      let start = 0;
      let nl = chunk.indexOf(10);
      if (carry.length > 0 && nl !== -1) {
        carry.push(chunk.subarray(0, nl + 1));
        const at = base - carryBytes;
        const line = Buffer.concat(carry);
        carry = [];
        carryBytes = 0;
        add(page, line, at, true);
        start = nl + 1;
        nl = chunk.indexOf(10, start);
      }
      while (nl !== -1) {
        add(page, chunk.subarray(start, nl + 1), base + start, true);
        start = nl + 1;
        nl = chunk.indexOf(10, start);
      }
      if (start < chunk.length) {
        carry.push(chunk.subarray(start));
        carryBytes += chunk.length - start;
        if (carryBytes > maxLine) tooLong(base + chunk.length - carryBytes);
      }
      base += chunk.length;
      // Pages are handed over once the header is known, so that header() settles before any record is seen.
      if (header !== undefined) yield page;
    }
    if (carry.length > 0) {
      const page = newPage();
      add(page, Buffer.concat(carry), base - carryBytes, false);
      if (page.records.length > 0) yield page;
    }
    if (header === undefined) {
      throw new ManifestError("TRUNCATED", `${prefix}the dump is empty: it has no header line.`);
    }
    if (footer === undefined) {
      throw new ManifestError(
        "TRUNCATED",
        `${prefix}the dump ends after line ${lastLine} without a footer: it is truncated.`,
      );
    }
    const types = new Set([...Object.keys(footer.counts), ...counts.keys()]);
    for (const type of types) {
      const expected = footer.counts[type] ?? 0;
      const actual = counts.get(type) ?? 0;
      if (expected !== actual) {
        throw new ManifestError(
          "COUNT_MISMATCH",
          `${prefix}the footer counts ${expected} "${type}" records but ${actual} were read.`,
        );
      }
    }
    const digest = hash.digest("hex");
    if (digest !== footer.sha256.toLowerCase()) {
      throw new ManifestError(
        "DIGEST_MISMATCH",
        `${prefix}the footer's sha256 ${footer.sha256} does not match the records read (${digest}): a record was altered.`,
      );
    }
    this.footer = footer;
  }
}

/**
 * Reads a dump from `input` (a Node Readable, or any iterable or async iterable of byte chunks): decrypts it when it starts
 * with the envelope magic, gunzips it when it starts with the gzip magic, then checks it line by line.
 * Memory stays constant: one line and one chunk at a time.
 */
export function readDump(
  input: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  options: ReadDumpOptions = {},
): DumpReader {
  return new Reader(input, options);
}
