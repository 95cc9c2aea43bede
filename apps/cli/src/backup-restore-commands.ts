import {
  type BackupProgress,
  backupRepository,
  InvalidArgumentError,
  type OnTopResult,
  restoreOnTop,
  restoreRepository,
} from "@cairn/core";
import type { Command } from "commander";
import { formatSize, plural } from "./format.js";
import type { Output } from "./output.js";
import { type App, action, VERSION } from "./program.js";
import { startStatus } from "./progress.js";
import { parallelism } from "./retention-options.js";
import { expectUri } from "./uri.js";

interface BackupOptions {
  to: string;
  commitAll?: boolean;
  parallel: string;
  tag?: string[];
}

interface RestoreOptions {
  to: string;
  namespace?: string;
  snapshot?: string;
  parallel: string;
  onTop?: boolean;
  dryRun?: boolean;
}

const describe = (p: BackupProgress) =>
  `${p.objects} objects: ${p.copied} copied (${formatSize(p.copiedBytes)}), ${p.skipped} already there`;

export function registerBackupRestoreCommands(program: Command, app: App): void {
  program
    .command("backup")
    .description("back up a repository's committed state (refs and every object they reach) to a store")
    .argument("<repository>", "cairn://<repo>")
    .requiredOption(
      "--to <store-url>",
      "the backup location, e.g. file:///backups/cairn or s3://bucket/backups",
    )
    .option("--commit-all", "commit every branch's uncommitted changes first")
    .option("--parallel <n>", "objects copied at once", "8")
    .option("--tag <label...>", "labels kept in the snapshot record")
    .addHelpText(
      "after",
      `
A backup is a snapshot: the refs at one point in time, and every object they reach. Objects the location
already holds are not copied again, every copied byte is checked against its SHA-256, and the snapshot record
is written last, so an interrupted backup is never listed and running it again completes it.
The layout is documented in docs/backup-layout.md.

Examples:
  cairn backup cairn://photos --to file:///mnt/backup/cairn
  cairn backup cairn://photos --to s3://backups/cairn?region=eu-west-1 --commit-all`,
    )
    .action(
      action<BackupOptions>(app, async (ctx, [uriText], opts) => {
        const uri = expectUri(uriText!, "repo", "repository");
        const parallel = parallelism(opts.parallel);
        const cairn = await ctx.session.cairn();
        const target = await app.registry.openStore(opts.to);
        const status = startStatus(ctx.out);
        try {
          const result = await backupRepository(cairn, uri.repo, target, {
            parallel,
            commitAll: opts.commitAll,
            author: app.io.env.CAIRN_AUTHOR ?? "",
            tags: opts.tag,
            tool: { name: "cairn", version: VERSION },
            onProgress: (p) => status.update(`Backing up ${uri.repo}: ${describe(p)}`),
          });
          status.stop();
          const { uncommitted, snapshot } = result;
          if (uncommitted.length > 0) {
            ctx.out.note(
              opts.commitAll
                ? `Committed the uncommitted changes of branch(es) ${uncommitted.join(", ")}.`
                : `warning: ${uncommitted.length > 1 ? "branches" : "branch"} ${uncommitted.join(", ")} ha${uncommitted.length > 1 ? "ve" : "s"} uncommitted changes, which the backup leaves out (--commit-all commits them first).`,
            );
          }
          if (ctx.out.json) {
            await ctx.out.record({
              ...snapshot,
              copied: result.copied,
              copiedBytes: result.copiedBytes,
              skipped: result.skipped,
            });
          } else {
            await ctx.out.line(
              `Snapshot ${snapshot.id} of ${uri.repo}: ${plural(snapshot.counts.commits, "commit")}, ${plural(snapshot.counts.objects, "object")} (${formatSize(snapshot.counts.bytes)}); copied ${result.copied} (${formatSize(result.copiedBytes)}), ${result.skipped} already in ${target.url}.`,
            );
          }
        } finally {
          status.stop();
          await target.close();
        }
      }),
    );

  program
    .command("restore")
    .description("restore a repository from a backup snapshot into a new repository")
    .argument("<backup-url>", "the backup location")
    .requiredOption("--to <repository>", "cairn://<repo> to create (it must not exist)")
    .option(
      "--namespace <store-url>",
      "storage namespace of the restored repository (default: the original's)",
    )
    .option("--snapshot <id>", "the snapshot to restore (default: the newest of the repository)")
    .option(
      "--on-top",
      "restore over the existing repository: prints what is reverted and added, then applies it",
    )
    .option("--dry-run", "with --on-top: print what would change, and change nothing")
    .option("--parallel <n>", "objects copied at once", "8")
    .addHelpText(
      "after",
      `
The repository is created bare, the snapshot's objects are copied into its namespace and checked against
their SHA-256, the refs are restored and checked, and only then is the repository usable. An interrupted
restore can be run again: it completes without copying twice.

Examples:
  # disaster recovery: same name, on a new engine and store
  cairn --meta sqlite:///srv/new/meta.db restore file:///mnt/backup/cairn --to cairn://photos \\
    --namespace s3://new-bucket/photos
  # clone beside the original
  cairn restore file:///mnt/backup/cairn --to cairn://photos-copy --namespace file:///srv/data/photos-copy`,
    )
    .action(
      action<RestoreOptions>(app, async (ctx, [backupUrl], opts) => {
        const uri = expectUri(opts.to, "repo", "--to");
        const parallel = parallelism(opts.parallel);
        if (opts.dryRun && !opts.onTop) throw new InvalidArgumentError("--dry-run goes with --on-top.");
        if (opts.onTop && opts.namespace) {
          throw new InvalidArgumentError(
            "--on-top restores into the repository's own namespace; leave out --namespace.",
          );
        }
        const cairn = await ctx.session.cairn();
        const backup = await app.registry.openStore(backupUrl!);
        const status = startStatus(ctx.out);
        try {
          if (opts.onTop) {
            const plan = await restoreOnTop(cairn, backup, {
              name: uri.repo,
              snapshot: opts.snapshot,
              parallel,
              dryRun: opts.dryRun,
              onProgress: (p) =>
                status.update(`Restoring ${uri.repo}: ${p.objects} objects, ${p.copied} copied`),
            });
            status.stop();
            ctx.session.forget(uri.repo);
            await printPlan(ctx.out, plan);
            return;
          }
          const result = await restoreRepository(cairn, backup, {
            name: uri.repo,
            namespace: opts.namespace,
            snapshot: opts.snapshot,
            parallel,
            onProgress: (p) =>
              status.update(
                `Restoring ${uri.repo}: ${p.objects} objects, ${p.copied} copied (${formatSize(p.copiedBytes)}), ${p.skipped} already there`,
              ),
          });
          status.stop();
          ctx.session.forget(uri.repo);
          if (ctx.out.json) {
            const { snapshot, ...rest } = result;
            await ctx.out.record({ ...rest, snapshot: snapshot.id });
          } else {
            await ctx.out.line(
              `Restored snapshot ${result.snapshot.id} into ${uri.repo} on ${result.namespace}: ${plural(result.commits, "commit")}, ${result.branches} branch(es), ${plural(result.tags, "tag")}; copied ${plural(result.copied, "object")} (${formatSize(result.copiedBytes)}).`,
            );
          }
        } finally {
          status.stop();
          await backup.close();
        }
      }),
    );
}

/** What `restore --on-top` reverts, adds and keeps, one line per branch or tag, then what it did. */
async function printPlan(out: Output, plan: OnTopResult): Promise<void> {
  if (out.json) {
    const { snapshot, ...rest } = plan;
    await out.record({ ...rest, snapshot: snapshot.id });
    return;
  }
  const short = (id: string | undefined) => (id ?? "").slice(0, 12);
  for (const c of plan.changes) {
    const paths = c.ref === "branch" ? ` (${c.added} added, ${c.removed} removed, ${c.changed} changed)` : "";
    if (c.action === "keep") await out.line(`${c.ref} ${c.name}: unchanged at ${short(c.to)}`);
    else if (c.action === "add") await out.line(`${c.ref} ${c.name}: add at ${short(c.to)}${paths}`);
    else await out.line(`${c.ref} ${c.name}: revert ${short(c.from)} → ${short(c.to)}${paths}`);
  }
  for (const name of plan.kept) await out.line(`branch ${name}: kept (not in snapshot ${plan.snapshot.id})`);
  if (plan.uncommitted.length > 0) {
    await out.line(
      `uncommitted changes on ${plan.uncommitted.join(", ")}: commit or reset them before applying`,
    );
  }
  await out.line(
    plan.applied
      ? `Restored snapshot ${plan.snapshot.id} over ${plan.name}: ${plural(plan.commits, "commit")} added, ${plural(plan.copied, "object")} copied (${formatSize(plan.copiedBytes)}).`
      : `Dry run: nothing changed in ${plan.name}.`,
  );
}
