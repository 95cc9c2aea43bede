import type { Commit, Entry } from "@cairn/core";
import { UsageError } from "./errors.js";

/** Commit ids are shown with 12 hex digits; any unique prefix of 7 or more resolves. */
export const shortId = (id: string): string => id.slice(0, 12);

const UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];

/** 1536 → "1.5 KiB". */
export function formatSize(bytes: number): string {
  let n = bytes;
  let unit = 0;
  while (n >= 1024 && unit < UNITS.length - 1) {
    n /= 1024;
    unit++;
  }
  return unit === 0 ? `${n} B` : `${n < 10 ? n.toFixed(1) : Math.round(n)} ${UNITS[unit]}`;
}

/** An ISO time as `2026-11-25 20:58:51 UTC`: unambiguous and the same on every machine. */
export function formatTime(iso: string): string {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return `${d.toISOString().slice(0, 19).replace("T", " ")} UTC`;
}

/** `["a=1", "b=x=y"]` → `{ a: "1", b: "x=y" }`; `what` names the option in errors. */
export function parseKeyValues(pairs: readonly string[] | undefined, what: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const pair of pairs ?? []) {
    const at = pair.indexOf("=");
    if (at <= 0) throw new UsageError(`${what} "${pair}" is not key=value.`);
    out[pair.slice(0, at)] = pair.slice(at + 1);
  }
  return out;
}

/** Commander collector for repeatable options: `--metadata a=1 --metadata b=2`. */
export const collect = (value: string, previous: string[] | undefined): string[] => [
  ...(previous ?? []),
  value,
];

/** Parses a positive integer option such as `--limit` or `--parallel`. */
export function positiveInt(what: string) {
  return (value: string): number => {
    const n = Number(value);
    if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n < 1) {
      throw new UsageError(`${what} must be a positive integer, not "${value}".`);
    }
    return n;
  };
}

/** One line per key of an object's fields, aligned, for `stat`-like output. */
export function fields(rows: [string, string][]): string[] {
  const width = Math.max(...rows.map(([k]) => k.length)) + 2;
  return rows.map(([k, v]) => `${`${k}:`.padEnd(width)}${v}`);
}

export function describeEntry(entry: Entry): string[] {
  const meta = Object.entries(entry.metadata).map(([k, v]) => `${k}=${v}`);
  return fields([
    ["path", entry.path],
    ["size", `${formatSize(entry.size)} (${entry.size} bytes)`],
    ["content-type", entry.contentType],
    ["sha256", entry.sha256],
    ["modified", formatTime(entry.mtime)],
    ["address", entry.address],
    ["metadata", meta.length ? meta.join(", ") : "-"],
  ]);
}

/** A commit in the style of `git log`, with short ids and the branches and tags that point at it. */
export function describeCommit(commit: Commit, decorations: readonly string[] = []): string[] {
  const deco = decorations.length ? ` (${decorations.join(", ")})` : "";
  const lines = [`commit ${shortId(commit.id)}${deco}`];
  if (commit.parents.length > 1) lines.push(`Merge:  ${commit.parents.map(shortId).join(" ")}`);
  if (commit.author) lines.push(`Author: ${commit.author}`);
  lines.push(`Date:   ${formatTime(commit.createdAt)}`);
  for (const [k, v] of Object.entries(commit.metadata)) lines.push(`Meta:   ${k}=${v}`);
  lines.push("");
  for (const l of commit.message.split("\n")) lines.push(`    ${l}`);
  return lines;
}

/** Rows as aligned columns, two spaces apart; the last column is not padded. */
export function table(rows: readonly (readonly string[])[]): string[] {
  const widths: number[] = [];
  for (const row of rows) {
    for (const [i, cell] of row.entries()) widths[i] = Math.max(widths[i] ?? 0, cell.length);
  }
  return rows.map((row) =>
    row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i]!))).join("  "),
  );
}

/** `1 file`, `2 files`. */
export const plural = (n: number, word: string): string => `${n} ${word}${n === 1 ? "" : "s"}`;
