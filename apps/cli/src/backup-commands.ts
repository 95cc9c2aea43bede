import {
  CorruptError,
  listSnapshots,
  type PruneProgress,
  parseReadDataSubset,
  pruneBackups,
  type SnapshotRecord,
  type VerifyProblem,
  verifyBackup,
} from "@cairn/core";
import { type Command, Option } from "commander";
import { formatSize, formatTime, plural, table } from "./format.js";
import { type App, action } from "./program.js";
import { startStatus } from "./progress.js";
import { addKeepOptions, type KeepOptions, keepPolicy, parallelism } from "./retention-options.js";

interface ListOptions {
  repo?: string;
}

interface PruneOptions extends KeepOptions {
  repo?: string;
  dryRun?: boolean;
}

interface VerifyOptions {
  readData?: boolean;
  readDataSubset?: string;
  snapshot?: string;
  parallel: string;
  /** False with --no-lock. */
  lock: boolean;
}

/** One row of `backups list` / `prune`: id, time, repository, refs and objects. */
function describeSnapshot(s: SnapshotRecord): string[] {
  const c = s.counts;
  return [
    s.id,
    formatTime(s.time),
    s.repository.name,
    `${plural(c.commits, "commit")}, ${c.branches} branch${c.branches === 1 ? "" : "es"}, ${plural(c.tags, "tag")}`,
    `${plural(c.objects, "object")} (${formatSize(c.bytes)})`,
  ];
}

const PHASES: Record<PruneProgress["phase"], string> = {
  inventories: "reading inventories",
  snapshots: "deleting snapshot files",
  objects: "looking at objects",
};

export function registerBackupMaintenanceCommands(program: Command, app: App): void {
  const backups = program.command("backups").description("list and prune the snapshots of a backup location");

  backups
    .command("list")
    .description("list the complete snapshots of a backup location, oldest first")
    .argument("<backup-url>", "the backup location, e.g. file:///mnt/backup/cairn")
    .option("--repo <name>", "only the snapshots of this repository")
    .addHelpText(
      "after",
      `
A snapshot is listed once its record is written, which a backup does last: an interrupted backup is never
listed. With --json, one snapshot record (docs/backup-layout.md) per line.

Example:
  cairn backups list file:///mnt/backup/cairn --repo photos`,
    )
    .action(
      action<ListOptions>(app, async (ctx, [url], opts) => {
        const store = await app.registry.openStore(url!);
        try {
          const snapshots = await listSnapshots(store, {
            ...(opts.repo !== undefined ? { repository: opts.repo } : {}),
            onBad: (key, error) =>
              ctx.out.note(`warning: ${key} is not listed: ${(error as Error).message ?? String(error)}`),
          });
          if (ctx.out.json) {
            for (const s of snapshots) await ctx.out.record(s);
            return;
          }
          for (const line of table(snapshots.map(describeSnapshot))) await ctx.out.line(line);
          if (snapshots.length === 0) {
            ctx.out.note(
              `No snapshots${opts.repo !== undefined ? ` of repository ${opts.repo}` : ""} in ${store.url}.`,
            );
          }
        } finally {
          await store.close();
        }
      }),
    );

  addKeepOptions(
    backups
      .command("prune")
      .description("remove the snapshots no --keep-* rule keeps, and the objects only they needed")
      .argument("<backup-url>", "the backup location"),
    "snapshot",
  )
    .option("--repo <name>", "apply the rules to this repository only (the others' snapshots are kept)")
    .option("--dry-run", "change nothing; show what would be removed")
    .addHelpText(
      "after",
      `
restic's rules: a snapshot is kept when any rule keeps it; rules apply to each repository's snapshots on
their own, and calendar periods are UTC; a count may be "unlimited". At least one rule is needed. Prune
first reads every remaining snapshot's inventory (a damaged one stops it before anything is deleted), then
removes the records of the other snapshots, then their files and those of interrupted backups, then every
object no remaining snapshot lists. It refuses to run while a backup holds a lock refreshed in the last
ten minutes, and removes older (stale) locks.

Examples:
  cairn backups prune file:///mnt/backup/cairn --keep-daily 7 --keep-weekly 5 --keep-monthly 12 --dry-run
  cairn backups prune s3://backups/cairn --keep-last 3 --keep-within 30d --repo photos`,
    )
    .action(
      action<PruneOptions>(app, async (ctx, [url], opts) => {
        // An empty policy is refused by core, with the message that says so.
        const policy = keepPolicy(opts, "snapshot") ?? {};
        const store = await app.registry.openStore(url!);
        const status = startStatus(ctx.out);
        try {
          const result = await pruneBackups(store, policy, {
            ...(opts.repo !== undefined ? { repository: opts.repo } : {}),
            dryRun: opts.dryRun === true,
            onProgress: (p) =>
              status.update(
                `Pruning: ${PHASES[p.phase]} ${p.done}${p.total !== undefined ? `/${p.total}` : ""}`,
              ),
          });
          status.stop();
          const removeVerb = result.dryRun ? "would remove" : "remove";
          if (ctx.out.json) {
            for (const k of result.keep) {
              await ctx.out.record({
                type: "keep",
                id: k.snapshot.id,
                repository: k.snapshot.repository.name,
                time: k.snapshot.time,
                reasons: k.reasons,
              });
            }
            for (const s of result.remove) {
              await ctx.out.record({
                type: "remove",
                id: s.id,
                repository: s.repository.name,
                time: s.time,
              });
            }
            await ctx.out.record({
              type: "summary",
              dryRun: result.dryRun,
              kept: result.keep.length,
              removed: result.remove.length,
              leftovers: result.leftovers,
              files: result.files,
              objects: result.objects,
              staleLocks: result.staleLocks,
            });
            return;
          }
          const rows = [
            ...result.keep.map((k) => ({ s: k.snapshot, row: ["keep", k.reasons.join(", ")] })),
            ...result.remove.map((s) => ({ s, row: [removeVerb, ""] })),
          ].sort((a, b) => (a.s.time < b.s.time ? -1 : a.s.time > b.s.time ? 1 : a.s.id < b.s.id ? -1 : 1));
          for (const line of table(
            rows.map(({ s, row }) => [row[0]!, s.id, formatTime(s.time), s.repository.name, row[1]!]),
          )) {
            await ctx.out.line(line.trimEnd());
          }
          for (const key of result.staleLocks) {
            ctx.out.note(`${result.dryRun ? "Would remove" : "Removed"} the stale lock ${key}.`);
          }
          const leftovers =
            result.leftovers.length > 0
              ? ` (${plural(result.leftovers.length, "interrupted backup")} among them)`
              : "";
          const summary = `${plural(result.remove.length, "snapshot")}, ${plural(result.files, "snapshot file")}${leftovers} and ${plural(result.objects.deleted, "object")} (${formatSize(result.objects.bytes)}); ${plural(result.keep.length, "snapshot")} and ${plural(result.objects.kept, "object")} kept`;
          await ctx.out.line(
            result.dryRun
              ? `Would remove ${summary}. Nothing was changed (--dry-run).`
              : `Removed ${summary}.`,
          );
        } finally {
          status.stop();
          await store.close();
        }
      }),
    );

  program
    .command("verify")
    .description("check a backup location: snapshot files, every object present, and optionally its bytes")
    .argument("<backup-url>", "the backup location")
    .addOption(new Option("--read-data", "re-hash every object's bytes (reads the whole backup)"))
    .addOption(
      new Option(
        "--read-data-subset <share>",
        "re-hash a share of the objects: a random 10%, or the n-th of m groups (1/5 … 5/5)",
      ).conflicts("readData"),
    )
    .option("--snapshot <id>", "check this snapshot only")
    .option("--parallel <n>", "objects read at once with --read-data", "8")
    .option(
      "--no-lock",
      "write no lock file, for a location this process may only read (run no prune meanwhile)",
    )
    .addHelpText(
      "after",
      `
Checks every snapshot's refs and inventory files against the size and SHA-256 in its record, that the refs
parse and every commit's metarange is in the inventory, and that every object an inventory lists is under
objects/ with the right size (one listing, no request per object). --read-data also re-hashes the bytes.
Objects shared by snapshots are checked once. Each problem is one line on stdout naming the file and the
snapshot (with --json, one JSON record each); the exit status is 8 when any problem was found. While it
runs it holds a lock under locks/, so that no prune deletes what it checks, and it refuses to start while a
prune is at work.

Examples:
  cairn verify file:///mnt/backup/cairn
  cairn verify s3://backups/cairn --read-data-subset 10%
  cairn verify s3://backups/cairn --read-data-subset 3/7 --snapshot 20261125T231500Z-3f9a1c2b`,
    )
    .action(
      action<VerifyOptions>(app, async (ctx, [url], opts) => {
        const readData =
          opts.readDataSubset !== undefined
            ? parseReadDataSubset(opts.readDataSubset)
            : opts.readData === true;
        const parallel = parallelism(opts.parallel);
        const store = await app.registry.openStore(url!);
        const status = startStatus(ctx.out);
        // Problems are written as they are found; the writes are chained to keep their order.
        let written = Promise.resolve();
        const print = (p: VerifyProblem) => {
          status.stop();
          written = written.then(() =>
            ctx.out.json
              ? ctx.out.record({ type: "problem", ...p })
              : ctx.out.line(`${p.kind}: ${p.message}`),
          );
        };
        try {
          const result = await verifyBackup(store, {
            ...(opts.snapshot !== undefined ? { snapshot: opts.snapshot } : {}),
            readData,
            parallel,
            lock: opts.lock !== false,
            onProblem: print,
            onProgress: (p) =>
              status.update(
                p.phase === "snapshots"
                  ? `Verifying: snapshot ${p.done}/${p.total}`
                  : `Verifying: read ${p.done}/${p.total} objects (${formatSize(p.bytes ?? 0)})`,
              ),
          });
          status.stop();
          await written;
          const read =
            readData === false
              ? "sizes only"
              : `re-hashing ${result.readObjects} of them (${formatSize(result.readBytes)})`;
          const checked = `${plural(result.snapshots, "snapshot")} and ${plural(result.objects, "object")} (${formatSize(result.bytes)}), ${read}`;
          if (ctx.out.json) await ctx.out.record({ type: "summary", ...result });
          if (result.problems > 0) {
            const ids = result.damaged.slice(0, 10).join(", ");
            const more = result.damaged.length > 10 ? ` and ${result.damaged.length - 10} more` : "";
            const damaged =
              result.damaged.length > 0
                ? `damaged ${result.damaged.length === 1 ? "snapshot" : "snapshots"} ${ids}${more}`
                : "no snapshot named";
            throw new CorruptError(
              `Verify found ${plural(result.problems, "problem")} in ${store.url} (${damaged}) after checking ${checked}.`,
            );
          }
          if (!ctx.out.json) {
            const unreferenced = result.unreferenced
              ? `; ${plural(result.unreferenced, "object")} no snapshot lists (prune removes them)`
              : "";
            await ctx.out.line(`Checked ${checked}: no problems${unreferenced}.`);
          }
        } finally {
          status.stop();
          await written.catch(() => {});
          await store.close();
        }
      }),
    );
}
