import { ManifestError } from "./errors.js";

/** Kind of a JSON value; `integer` is a number without fraction. */
export type FieldKind = "string" | "number" | "integer" | "boolean" | "object" | "array";

/**
 * Fields a record type must have, by dotted path (`"source.engine"`) → kind. A kind ending in `?`
 * (`"string?"`) marks an optional field: when present it must have that kind. Fields not listed are
 * allowed, so a newer writer can add fields without breaking an older reader.
 */
export type RecordSchema = Readonly<Record<string, FieldKind | `${FieldKind}?`>>;

/** Schemas by record type; types not listed are checked only for a string `type`. */
export type RecordSchemas = Readonly<Record<string, RecordSchema>>;

export const HEADER_SCHEMA: RecordSchema = {
  format: "string",
  version: "integer",
  created: "string",
  source: "object",
  "source.engine": "string",
  tool: "object",
  "tool.name": "string",
  "tool.version": "string",
  consistency: "string",
  sections: "array",
};

export const FOOTER_SCHEMA: RecordSchema = {
  counts: "object",
  sha256: "string",
};

const kindOf = (value: unknown): string => {
  if (value === null) return "null";
  if (Array.isArray(value)) return "array";
  return typeof value;
};

const matches = (value: unknown, kind: FieldKind): boolean => {
  switch (kind) {
    case "integer":
      return Number.isInteger(value);
    case "number":
      return typeof value === "number" && Number.isFinite(value);
    case "object":
      return kindOf(value) === "object";
    default:
      return kindOf(value) === kind;
  }
};

const article = (kind: string): string => (/^[aeiou]/.test(kind) ? `an ${kind}` : `a ${kind}`);

interface CompiledField {
  path: string;
  parts: readonly string[];
  kind: FieldKind;
  optional: boolean;
}

/** Schemas parsed once: a dump checks the same few schemas a million times. */
const compiled = new WeakMap<RecordSchema, readonly CompiledField[]>();

function compile(schema: RecordSchema): readonly CompiledField[] {
  let fields = compiled.get(schema);
  if (!fields) {
    fields = Object.entries(schema).map(([path, spec]) => {
      const optional = spec.endsWith("?");
      return {
        path,
        parts: path.split("."),
        kind: (optional ? spec.slice(0, -1) : spec) as FieldKind,
        optional,
      };
    });
    compiled.set(schema, fields);
  }
  return fields;
}

/**
 * Throws `INVALID_RECORD` naming `where` and the field path (`branch.commitId`) when `record` does
 * not satisfy `schema`.
 */
export function checkSchema(
  record: Readonly<Record<string, unknown>>,
  schema: RecordSchema,
  where: string,
): void {
  for (const { path, parts, kind, optional } of compile(schema)) {
    let value: unknown = record;
    for (const part of parts) {
      value = kindOf(value) === "object" ? (value as Record<string, unknown>)[part] : undefined;
    }
    if (value === undefined) {
      if (optional) continue;
      throw new ManifestError(
        "INVALID_RECORD",
        `${where}: ${recordName(record)}.${path} is missing (must be ${article(kind)}).`,
      );
    }
    if (!matches(value, kind)) {
      throw new ManifestError(
        "INVALID_RECORD",
        `${where}: ${recordName(record)}.${path} must be ${article(kind)}, not ${article(kindOf(value))}.`,
      );
    }
  }
}

const recordName = (record: Readonly<Record<string, unknown>>): string =>
  typeof record.type === "string" ? record.type : "record";
