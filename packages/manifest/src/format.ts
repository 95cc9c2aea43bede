/** Name written in every header's `format` field. */
export const DUMP_FORMAT = "cairn.dump";
/** Major version this package writes and the newest it reads. */
export const DUMP_VERSION = 1;

/** How the writer obtained its data: one consistent snapshot, or live reads with no guarantee. */
export type Consistency = "snapshot" | "none";

/** First line of a dump. Unknown fields of the same major version are kept and ignored. */
export interface DumpHeader {
  readonly type: "header";
  readonly format: typeof DUMP_FORMAT;
  readonly version: number;
  /** ISO 8601 time the dump was started. */
  readonly created: string;
  /** What was dumped; `engine` names the metadata engine kind, e.g. `"sqlite"`. */
  readonly source: { readonly engine: string; readonly [key: string]: unknown };
  /** Program that wrote the dump. */
  readonly tool: { readonly name: string; readonly version: string; readonly [key: string]: unknown };
  readonly consistency: Consistency;
  /** Record types in the order their sections appear. */
  readonly sections: readonly string[];
  readonly [key: string]: unknown;
}

/** Last line of a dump. */
export interface DumpFooter {
  readonly type: "footer";
  /** Records per type; every section is listed, with 0 when it is empty. */
  readonly counts: Readonly<Record<string, number>>;
  /** Lowercase hex SHA-256 over the exact bytes of all record lines, each with its `\n`. */
  readonly sha256: string;
}

/** One record line: any JSON object with a string `type` naming its section. */
export interface DumpRecord {
  readonly type: string;
  readonly [key: string]: unknown;
}

/** Types a record may not use: they mark the first and last lines. */
export const RESERVED_TYPES: ReadonlySet<string> = new Set(["header", "footer"]);

/** True when a file name asks for gzip (ends with `.gz`, any case). */
export const isGzipPath = (name: string): boolean => /\.gz$/i.test(name);
