import { basename, join, resolve } from "node:path";
import { pipeline } from "node:stream/promises";
import {
  CorruptError,
  compareKeys,
  type Entry,
  fileStream,
  hasCode,
  NotFoundError,
  type Repository,
  validatePath,
} from "@cairn/core";
import type { Command } from "commander";
import { forEachBounded } from "./bounded.js";
import { guessContentType } from "./content-type.js";
import { UsageError } from "./errors.js";
import {
  collect,
  describeEntry,
  formatSize,
  formatTime,
  parseKeyValues,
  plural,
  positiveInt,
} from "./format.js";
import { inside, isDirectory, statLocal, walkLocal, writeFileAtomically } from "./local-files.js";
import { type App, action, type Ctx } from "./program.js";
import { startProgress } from "./progress.js";
import { expectUri, formatUri } from "./uri.js";

const DEFAULT_PARALLEL = 8;

/** A URI path used as a folder: "" stays "" (the root), else it ends with exactly one "/". */
const asFolder = (path: string | undefined): string => (!path ? "" : path.endsWith("/") ? path : `${path}/`);

interface UploadOptions {
  recursive?: boolean;
  contentType?: string;
  metadata?: string[];
  parallel: number;
}

interface DownloadOptions {
  recursive?: boolean;
  parallel: number;
}

export function registerFsCommands(program: Command, app: App): void {
  const fs = program.command("fs").description("upload, download, list, read and remove objects");
  const parallel = (what: string) =>
    ["--parallel <n>", `${what} at once`, positiveInt("--parallel"), DEFAULT_PARALLEL] as const;

  fs.command("upload")
    .description(
      "upload a local file, or a directory with --recursive, to a branch (uncommitted until `cairn commit`)",
    )
    .argument("<local>", "local file or directory, or - for standard input")
    .argument("<destination>", "cairn://<repo>/<branch>/<path>; a path ending with / (or none) is a folder")
    .option("-r, --recursive", "upload a directory and everything under it")
    .option("--content-type <type>", "content type of the objects (default: guessed from the file extension)")
    .option("--metadata <key=value>", "user metadata of the objects, repeatable", collect)
    .option(...parallel("files uploaded"))
    .addHelpText(
      "after",
      `
Examples:
  cairn fs upload ./cat.png cairn://photos/main/pets/cat.png
  cairn fs upload ./cat.png cairn://photos/main/pets/          (→ pets/cat.png)
  cairn fs upload ./2024 cairn://photos/main/2024/ --recursive --metadata camera=x100`,
    )
    .action(action<UploadOptions>(app, upload));

  fs.command("download")
    .description("download an object to a local file, or everything under a prefix with --recursive")
    .argument("<source>", "cairn://<repo>/<ref>/<path>")
    .argument("<local>", "local file or directory (an existing directory receives the object under its name)")
    .option("-r, --recursive", "download every object under the path, keeping their relative paths")
    .option(...parallel("files downloaded"))
    .addHelpText(
      "after",
      `
Files are written to a temporary file, checked against the object's SHA-256, then renamed into place.

Examples:
  cairn fs download cairn://photos/main/pets/cat.png ./cat.png
  cairn fs download cairn://photos/v1.0/2024/ ./2024 --recursive`,
    )
    .action(action<DownloadOptions>(app, download));

  fs.command("cat")
    .description("write an object's bytes to stdout")
    .argument("<object>", "cairn://<repo>/<ref>/<path>")
    .addHelpText("after", "\nExample:\n  cairn fs cat cairn://photos/main/README.md")
    .action(
      action(app, async (ctx, [uriText]) => {
        const uri = expectUri(uriText!, "ref-path", "object");
        const repo = await ctx.repo(uri.repo);
        const { body } = await withPrefixHint(repo, uri.ref!, uri.path!, () =>
          repo.read(uri.ref!, uri.path!),
        );
        await pipeline(body, ctx.app.io.stdout, { end: false });
      }),
    );

  fs.command("ls")
    .description("list objects; one level at a time (folders end with /) unless --recursive")
    .argument("<location>", "cairn://<repo>/<ref>/[<prefix>]")
    .option("-r, --recursive", "list every object under the prefix")
    .option("--after <path>", "start after this path (to continue a listing)")
    .option(
      "-n, --limit <n>",
      "list at most n entries, then the --after value to continue from",
      positiveInt("--limit"),
    )
    .addHelpText(
      "after",
      `
Examples:
  cairn fs ls cairn://photos/main/
  cairn fs ls cairn://photos/main/2024/ --recursive --limit 100`,
    )
    .action(action<{ recursive?: boolean; after?: string; limit?: number }>(app, list));

  fs.command("stat")
    .description("show an object's size, content type, checksum and metadata")
    .argument("<object>", "cairn://<repo>/<ref>/<path>")
    .addHelpText("after", "\nExample:\n  cairn fs stat cairn://photos/main/pets/cat.png")
    .action(
      action(app, async (ctx, [uriText]) => {
        const uri = expectUri(uriText!, "ref-path", "object");
        const repo = await ctx.repo(uri.repo);
        const entry = await withPrefixHint(repo, uri.ref!, uri.path!, () => repo.stat(uri.ref!, uri.path!));
        if (ctx.out.json) await ctx.out.record(entry);
        else for (const l of describeEntry(entry)) await ctx.out.line(l);
      }),
    );

  fs.command("rm")
    .description(
      "remove an object from a branch, or everything under a prefix with --recursive (uncommitted)",
    )
    .argument("<object>", "cairn://<repo>/<branch>/<path>")
    .option("-r, --recursive", "remove every object under the path")
    .option(...parallel("objects removed"))
    .addHelpText(
      "after",
      "\nExamples:\n  cairn fs rm cairn://photos/main/pets/cat.png\n  cairn fs rm cairn://photos/main/tmp/ --recursive",
    )
    .action(action<{ recursive?: boolean; parallel: number }>(app, remove));
}

/** When `path` is not an object but a folder of objects, says to use --recursive. */
async function withPrefixHint<T>(
  repo: Repository,
  ref: string,
  path: string,
  fn: () => Promise<T>,
): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    if (hasCode(e, "NOT_FOUND") && !path.endsWith("/")) {
      const under = await repo.list(ref, { prefix: `${path}/`, limit: 1 }).catch(() => undefined);
      if (under && (under.entries.length > 0 || under.commonPrefixes.length > 0)) {
        throw new UsageError(
          `${formatUri(repo.name, ref, path)} is a folder, not an object; use --recursive for everything under it.`,
        );
      }
    }
    throw e;
  }
}

const UPLOAD_BATCH = 200;

/** A file's bytes, opened only when read, so a batch of bodies holds no file descriptors until its turn. */
async function* lazyRead(file: string, size: number): AsyncGenerator<Uint8Array> {
  yield* fileStream(file, size);
}

async function upload(ctx: Ctx, [local, destText]: string[], opts: UploadOptions): Promise<void> {
  const uri = expectUri(destText!, "ref-prefix", "destination");
  const metadata = parseKeyValues(opts.metadata, "--metadata");
  const branch = uri.ref!;
  const typeOf = (path: string) => opts.contentType ?? guessContentType(path);

  if (local === "-") {
    if (!uri.path || uri.path.endsWith("/")) {
      throw new UsageError(
        `Uploading standard input needs the object's full path, e.g. ${formatUri(uri.repo, branch, "data/file.csv")}.`,
      );
    }
    validatePath(uri.path);
    const repo = await ctx.repo(uri.repo);
    const entry = await repo.upload(branch, uri.path, process.stdin, {
      contentType: typeOf(uri.path),
      metadata,
    });
    if (ctx.out.json) await ctx.out.record(entry);
    else
      await ctx.out.line(
        `Uploaded standard input → ${formatUri(uri.repo, branch, uri.path)} (${formatSize(entry.size)})`,
      );
    return;
  }

  const localStat = await statLocal(local!);

  if (!localStat.isDirectory()) {
    const path = !uri.path || uri.path.endsWith("/") ? `${uri.path ?? ""}${basename(local!)}` : uri.path;
    validatePath(path);
    const repo = await ctx.repo(uri.repo);
    const entry = await repo.upload(branch, path, fileStream(local!, localStat.size), {
      contentType: typeOf(path),
      metadata,
      reopen: () => fileStream(local!, localStat.size),
    });
    if (ctx.out.json) await ctx.out.record(entry);
    else
      await ctx.out.line(
        `Uploaded ${local} → ${formatUri(uri.repo, branch, path)} (${formatSize(entry.size)})`,
      );
    return;
  }

  if (!opts.recursive) {
    throw new UsageError(`"${local}" is a directory; add --recursive to upload it and everything under it.`);
  }
  const prefix = asFolder(uri.path);
  // A first pass checks every path and counts, so bad input changes nothing and the bar knows its total.
  let files = 0;
  let bytes = 0;
  for await (const f of walkLocal(local!)) {
    validatePath(`${prefix}${f.rel}`);
    files++;
    bytes += f.size;
  }
  if (files === 0) throw new UsageError(`"${local}" holds no files to upload.`);
  const repo = await ctx.repo(uri.repo);
  await repo.getBranch(branch);
  const progress = await startProgress(ctx.out, "uploading", files, bytes);
  let uploaded = 0;
  let uploadedBytes = 0;
  // Files go up in batches: their bytes `--parallel` at a time, then the whole batch staged in one engine
  // write, which is what makes folders of many small files fast.
  let batch: { path: string; file: string; size: number }[] = [];
  const flush = async () => {
    if (batch.length === 0) return;
    const files = batch.map(({ path, file, size }) => ({
      path,
      body: lazyRead(file, size),
      reopen: () => lazyRead(file, size),
      contentType: typeOf(path),
      metadata,
    }));
    batch = [];
    for (const entry of await repo.uploadMany(branch, files, { concurrency: opts.parallel })) {
      uploaded++;
      uploadedBytes += entry.size;
      progress.done(entry.size);
      if (ctx.out.json) await ctx.out.record(entry);
    }
  };
  try {
    for await (const f of walkLocal(local!)) {
      batch.push({ path: `${prefix}${f.rel}`, file: f.path, size: f.size });
      if (batch.length >= UPLOAD_BATCH) await flush();
    }
    await flush();
  } finally {
    progress.stop();
  }
  if (!ctx.out.json) {
    await ctx.out.line(
      `Uploaded ${plural(uploaded, "file")} (${formatSize(uploadedBytes)}) from ${local} to ${formatUri(uri.repo, branch, prefix)}`,
    );
  }
}

async function download(ctx: Ctx, [srcText, local]: string[], opts: DownloadOptions): Promise<void> {
  const uri = expectUri(srcText!, opts.recursive ? "ref-prefix" : "ref-path", "source");
  const ref = uri.ref!;
  const repo = await ctx.repo(uri.repo);

  if (!opts.recursive) {
    const path = uri.path!;
    // Checked against the entry's SHA-256 as it is written, so the store need not check it too.
    const { entry, body } = await withPrefixHint(repo, ref, path, () =>
      repo.read(ref, path, { verify: false }),
    );
    const target =
      local!.endsWith("/") || (await isDirectory(local!)) ? join(local!, basename(path)) : local!;
    try {
      await writeFileAtomically(target, body, { ...entry, what: formatUri(uri.repo, ref, path) });
    } finally {
      body.destroy();
    }
    if (ctx.out.json) await ctx.out.record({ ...entry, local: target });
    else
      await ctx.out.line(
        `Downloaded ${formatUri(uri.repo, ref, path)} → ${target} (${formatSize(entry.size)})`,
      );
    return;
  }

  const prefix = asFolder(uri.path);
  const root = resolve(local!);
  // The walk is read twice when a bar is drawn (to know its total), never held in memory.
  let files = 0;
  let bytes = 0;
  if (ctx.out.interactive) {
    for await (const e of repo.walk(ref, { prefix })) {
      files++;
      bytes += e.size;
    }
  }
  const progress = await startProgress(ctx.out, "downloading", files, bytes);
  const folders = new Map<string, Promise<unknown>>();
  let count = 0;
  let total = 0;
  try {
    await forEachBounded(repo.walk(ref, { prefix }), opts.parallel, async (entry: Entry) => {
      const target = inside(root, join(root, ...entry.path.slice(prefix.length).split("/")));
      const what = formatUri(uri.repo, ref, entry.path);
      // By address: the bytes of exactly the entry listed, even if the branch moves meanwhile.
      // Checked against the entry's SHA-256 as it is written, so the store need not check it too.
      const reader = await repo.store.get(entry.address, { verify: false }).catch((e: unknown) => {
        if (hasCode(e, "NOT_FOUND")) {
          throw new CorruptError(
            `The data of ${what} (${entry.address}) is missing from its storage namespace.`,
          );
        }
        throw e;
      });
      try {
        await writeFileAtomically(target, reader.body, { ...entry, what }, folders);
      } finally {
        reader.body.destroy();
      }
      count++;
      total += entry.size;
      progress.done(entry.size);
      if (ctx.out.json) await ctx.out.record({ ...entry, local: target });
    });
  } finally {
    progress.stop();
  }
  if (count === 0) throw new NotFoundError(`No objects under ${formatUri(uri.repo, ref, prefix)}.`);
  if (!ctx.out.json) {
    await ctx.out.line(
      `Downloaded ${plural(count, "file")} (${formatSize(total)}) from ${formatUri(uri.repo, ref, prefix)} to ${local}`,
    );
  }
}

async function list(
  ctx: Ctx,
  [uriText]: string[],
  opts: { recursive?: boolean; after?: string; limit?: number },
): Promise<void> {
  const uri = expectUri(uriText!, "ref-prefix", "location");
  const repo = await ctx.repo(uri.repo);
  const prefix = uri.path ?? "";
  const delimiter = opts.recursive ? undefined : "/";
  let remaining = opts.limit ?? Number.POSITIVE_INFINITY;
  let after = opts.after;
  let shown = 0;
  for (;;) {
    const page = await repo.list(uri.ref!, {
      prefix,
      ...(delimiter ? { delimiter } : {}),
      ...(after !== undefined ? { after } : {}),
      limit: Math.min(remaining, 1000),
    });
    const rows: ({ prefix: string } | Entry)[] = [
      ...page.commonPrefixes.map((p) => ({ prefix: p })),
      ...page.entries,
    ];
    rows.sort((a, b) => compareKeys("prefix" in a ? a.prefix : a.path, "prefix" in b ? b.prefix : b.path));
    for (const row of rows) {
      if (ctx.out.json) await ctx.out.record(row);
      else if ("prefix" in row) await ctx.out.line(`${"dir".padStart(10)}  ${" ".repeat(23)}  ${row.prefix}`);
      else await ctx.out.line(`${formatSize(row.size).padStart(10)}  ${formatTime(row.mtime)}  ${row.path}`);
    }
    shown += rows.length;
    remaining -= rows.length;
    if (page.next === undefined) break;
    if (remaining <= 0) {
      if (ctx.out.json) await ctx.out.record({ next: page.next });
      else {
        const again = `cairn fs ls ${uriText}${opts.recursive ? " --recursive" : ""} --after '${page.next}' --limit ${opts.limit}`;
        await ctx.out.line(`next: ${page.next}  (${again})`);
      }
      break;
    }
    after = page.next;
  }
  if (shown === 0 && !ctx.out.json) ctx.out.note(`Nothing under ${formatUri(uri.repo, uri.ref!, prefix)}.`);
}

async function remove(
  ctx: Ctx,
  [uriText]: string[],
  opts: { recursive?: boolean; parallel: number },
): Promise<void> {
  const uri = expectUri(uriText!, opts.recursive ? "ref-prefix" : "ref-path", "object");
  const branch = uri.ref!;
  const repo = await ctx.repo(uri.repo);
  if (!opts.recursive) {
    const path = uri.path!;
    await withPrefixHint(repo, branch, path, () => repo.deleteObject(branch, path));
    if (ctx.out.json) await ctx.out.record({ removed: path });
    else await ctx.out.line(`Removed ${formatUri(uri.repo, branch, path)}`);
    return;
  }
  const prefix = asFolder(uri.path);
  await repo.getBranch(branch);
  let removed = 0;
  // Page by page: each page is removed before the next is read, past the last path removed.
  let after: string | undefined;
  for (;;) {
    const page = await repo.list(branch, { prefix, ...(after !== undefined ? { after } : {}), limit: 1000 });
    await forEachBounded(page.entries, opts.parallel, async (e) => {
      await repo.deleteObject(branch, e.path);
      removed++;
      if (ctx.out.json) await ctx.out.record({ removed: e.path });
    });
    if (page.next === undefined) break;
    after = page.next;
  }
  if (removed === 0) throw new NotFoundError(`No objects under ${formatUri(uri.repo, branch, prefix)}.`);
  if (!ctx.out.json)
    await ctx.out.line(`Removed ${plural(removed, "object")} under ${formatUri(uri.repo, branch, prefix)}`);
}
