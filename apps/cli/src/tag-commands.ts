import type { Command } from "commander";
import { shortId, table } from "./format.js";
import { type App, action } from "./program.js";
import { expectUri, formatUri, refArgument } from "./uri.js";

export function registerTagCommands(program: Command, app: App): void {
  const tag = program.command("tag").description("create, list and delete tags (fixed names for commits)");

  tag
    .command("create")
    .description("tag the commit a ref points at")
    .argument("<tag>", "cairn://<repo>/<tag>")
    .argument("<ref>", "a ref, or cairn://<repo>/<ref>")
    .addHelpText(
      "after",
      "\nExamples:\n  cairn tag create cairn://photos/v1.0 main\n  cairn tag create cairn://photos/before-cleanup cairn://photos/main~3",
    )
    .action(
      action(app, async (ctx, [uriText, refText]) => {
        const uri = expectUri(uriText!, "ref", "tag");
        const ref = refArgument(refText!, uri.repo, "ref");
        const repo = await ctx.repo(uri.repo);
        const created = await repo.createTag(uri.ref!, ref);
        if (ctx.out.json) await ctx.out.record(created);
        else
          await ctx.out.line(
            `Created tag ${formatUri(uri.repo, created.name)} at ${shortId(created.commitId)} (${ref}).`,
          );
      }),
    );

  tag
    .command("list")
    .description("list the tags of a repository")
    .argument("<repository>", "cairn://<repo>")
    .action(
      action(app, async (ctx, [uriText]) => {
        const uri = expectUri(uriText!, "repo", "repository");
        const repo = await ctx.repo(uri.repo);
        const rows: string[][] = [];
        for await (const t of repo.listTags()) {
          if (ctx.out.json) await ctx.out.record(t);
          else rows.push([t.name, shortId(t.commitId)]);
        }
        for (const line of table(rows)) await ctx.out.line(line);
      }),
    );

  tag
    .command("delete")
    .description("delete a tag (the commit stays)")
    .argument("<tag>", "cairn://<repo>/<tag>")
    .action(
      action(app, async (ctx, [uriText]) => {
        const uri = expectUri(uriText!, "ref", "tag");
        const repo = await ctx.repo(uri.repo);
        const before = await repo.getTag(uri.ref!);
        await repo.deleteTag(uri.ref!);
        if (ctx.out.json) await ctx.out.record({ deleted: before.name, commitId: before.commitId });
        else
          await ctx.out.line(
            `Deleted tag ${formatUri(uri.repo, before.name)} (was ${shortId(before.commitId)}).`,
          );
      }),
    );
}
