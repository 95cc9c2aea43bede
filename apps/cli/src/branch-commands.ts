import type { Command } from "commander";
import { shortId, table } from "./format.js";
import { type App, action } from "./program.js";
import { expectUri, formatUri, refArgument } from "./uri.js";

export function registerBranchCommands(program: Command, app: App): void {
  const branch = program.command("branch").description("create, list, reset and delete branches");

  branch
    .command("create")
    .description("create a branch at a ref")
    .argument("<branch>", "cairn://<repo>/<branch>")
    .requiredOption("-s, --source <ref>", "where the branch starts: a ref, or cairn://<repo>/<ref>")
    .addHelpText(
      "after",
      "\nExamples:\n  cairn branch create cairn://photos/edits --source main\n  cairn branch create cairn://photos/hotfix --source cairn://photos/v1.0",
    )
    .action(
      action<{ source: string }>(app, async (ctx, [uriText], opts) => {
        const uri = expectUri(uriText!, "ref", "branch");
        const source = refArgument(opts.source, uri.repo, "--source");
        const repo = await ctx.repo(uri.repo);
        const created = await repo.createBranch(uri.ref!, source);
        if (ctx.out.json) await ctx.out.record(created);
        else {
          await ctx.out.line(
            `Created branch ${formatUri(uri.repo, created.name)} at ${shortId(created.commitId)} (from ${source}).`,
          );
        }
      }),
    );

  branch
    .command("list")
    .description("list the branches of a repository and the commits they point at")
    .argument("<repository>", "cairn://<repo>")
    .action(
      action(app, async (ctx, [uriText]) => {
        const uri = expectUri(uriText!, "repo", "repository");
        const repo = await ctx.repo(uri.repo);
        const rows: string[][] = [];
        for await (const b of repo.listBranches()) {
          const isDefault = b.name === repo.info.defaultBranch;
          if (ctx.out.json) await ctx.out.record({ ...b, default: isDefault });
          else rows.push([`${isDefault ? "*" : " "} ${b.name}`, shortId(b.commitId)]);
        }
        for (const line of table(rows)) await ctx.out.line(line);
      }),
    );

  branch
    .command("delete")
    .description("delete a branch and its uncommitted changes (not the default branch)")
    .argument("<branch>", "cairn://<repo>/<branch>")
    .action(
      action(app, async (ctx, [uriText]) => {
        const uri = expectUri(uriText!, "ref", "branch");
        const repo = await ctx.repo(uri.repo);
        const before = await repo.getBranch(uri.ref!);
        await repo.deleteBranch(uri.ref!);
        if (ctx.out.json) await ctx.out.record({ deleted: before.name, commitId: before.commitId });
        else
          await ctx.out.line(
            `Deleted branch ${formatUri(uri.repo, before.name)} (was ${shortId(before.commitId)}).`,
          );
      }),
    );

  branch
    .command("reset")
    .description("drop every uncommitted change of a branch")
    .argument("<branch>", "cairn://<repo>/<branch>")
    .action(
      action(app, async (ctx, [uriText]) => {
        const uri = expectUri(uriText!, "ref", "branch");
        const repo = await ctx.repo(uri.repo);
        let dropped = 0;
        for await (const _ of repo.diffUncommitted(uri.ref!)) dropped++;
        await repo.resetBranch(uri.ref!);
        const b = await repo.getBranch(uri.ref!);
        if (ctx.out.json) await ctx.out.record({ branch: b.name, commitId: b.commitId, dropped });
        else {
          await ctx.out.line(
            `Reset ${formatUri(uri.repo, b.name)} to ${shortId(b.commitId)}: dropped ${dropped} uncommitted change${dropped === 1 ? "" : "s"}.`,
          );
        }
      }),
    );
}
