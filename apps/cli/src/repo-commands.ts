import { createInterface } from "node:readline/promises";
import type { RepositoryInfo } from "@cairn/core";
import type { Command } from "commander";
import { UsageError } from "./errors.js";
import { formatTime, table } from "./format.js";
import { type App, action, type Ctx } from "./program.js";
import { expectUri, formatUri } from "./uri.js";

interface CreateOptions {
  defaultBranch: string;
}

export function registerRepoCommands(program: Command, app: App): void {
  const repo = program.command("repo").description("create, list and delete repositories");

  repo
    .command("create")
    .description("create a repository with its default branch and an empty first commit")
    .argument("<repository>", "cairn://<repo>")
    .argument(
      "[namespace-url]",
      "where its objects are stored, e.g. file:///srv/cairn/photos (default: file://<cwd>/.cairn/data/<repo>)",
    )
    .option("--default-branch <name>", "name of the default branch", "main")
    .addHelpText(
      "after",
      "\nExamples:\n  cairn repo create cairn://photos\n  cairn repo create cairn://photos file:///srv/cairn/photos --default-branch trunk",
    )
    .action(action<CreateOptions>(app, (ctx, args, opts) => create(ctx, args, opts, false)));

  repo
    .command("create-bare")
    .description("create a repository without branches or commits, the target of a refs restore")
    .argument("<repository>", "cairn://<repo>")
    .argument("<namespace-url>", "the storage namespace holding the repository's data")
    .option("--default-branch <name>", "name of the default branch", "main")
    .addHelpText(
      "after",
      "\nExample:\n  cairn repo create-bare cairn://photos-restored file:///backup/photos",
    )
    .action(action<CreateOptions>(app, (ctx, args, opts) => create(ctx, args, opts, true)));

  repo
    .command("list")
    .description("list repositories")
    .action(
      action(app, async (ctx) => {
        const cairn = await ctx.session.cairn();
        let n = 0;
        // Text output is aligned, so it waits for the whole list; repositories are few.
        const rows: string[][] = [];
        for await (const info of cairn.listRepositories()) {
          n++;
          if (ctx.out.json) await ctx.out.record(info);
          else {
            rows.push([
              info.name,
              info.defaultBranch,
              formatTime(info.createdAt),
              info.namespace + (info.bare ? "  (bare)" : ""),
            ]);
          }
        }
        for (const line of table(rows)) await ctx.out.line(line);
        if (n === 0 && !ctx.out.json)
          ctx.out.note("No repositories yet; create one with: cairn repo create cairn://<repo>");
      }),
    );

  repo
    .command("delete")
    .description("delete a repository's branches, tags and commits (its storage namespace is left as it is)")
    .argument("<repository>", "cairn://<repo>")
    .option("-y, --yes", "do not ask for confirmation")
    .action(
      action<{ yes?: boolean }>(app, async (ctx, [uriText], opts) => {
        const { repo: name } = expectUri(uriText!, "repo", "repository");
        const cairn = await ctx.session.cairn();
        const info = await cairn.getRepository(name);
        if (
          !opts.yes &&
          !(await confirm(ctx, `Delete repository "${name}" (its data stays in ${info.namespace})? [y/N] `))
        ) {
          return;
        }
        await cairn.deleteRepository(name);
        ctx.session.forget(name);
        if (ctx.out.json) await ctx.out.record({ deleted: name, namespace: info.namespace });
        else await ctx.out.line(`Deleted repository ${name}; its objects stay in ${info.namespace}.`);
      }),
    );
}

async function create(ctx: Ctx, [uriText, namespace]: string[], opts: CreateOptions, bare: boolean) {
  const { repo: name } = expectUri(uriText!, "repo", "repository");
  const cairn = await ctx.session.cairn();
  const options = {
    name,
    namespace: namespace ?? ctx.session.defaultNamespace(name),
    defaultBranch: opts.defaultBranch,
  };
  const repo = bare ? await cairn.createBareRepository(options) : await cairn.createRepository(options);
  await printRepository(ctx, repo.info, bare ? "Created bare repository" : "Created repository");
}

async function printRepository(ctx: Ctx, info: RepositoryInfo, verb: string) {
  if (ctx.out.json) return ctx.out.record(info);
  await ctx.out.line(`${verb} ${formatUri(info.name)}`);
  await ctx.out.line(`  namespace:      ${info.namespace}`);
  await ctx.out.line(
    `  default branch: ${info.defaultBranch}${info.bare ? " (created by a refs restore)" : ""}`,
  );
}

/** Asks on the terminal; without one, refuses rather than guess. */
async function confirm(ctx: Ctx, question: string): Promise<boolean> {
  const { stdin, stderr } = ctx.app.io;
  if (!stdin.isTTY)
    throw new UsageError("refusing to delete without confirmation: pass --yes (stdin is not a terminal).");
  const rl = createInterface({ input: stdin, output: stderr });
  try {
    const answer = await rl.question(question);
    const yes = /^y(es)?$/i.test(answer.trim());
    if (!yes) ctx.out.note("Nothing deleted.");
    return yes;
  } finally {
    rl.close();
  }
}
