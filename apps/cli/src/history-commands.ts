import { userInfo } from "node:os";
import type { DiffEntry, MergeStrategy, Repository } from "@cairn/core";
import { type Command, Option } from "commander";
import { UsageError } from "./errors.js";
import { describeCommit, parseKeyValues, positiveInt, shortId } from "./format.js";
import { type App, action, type CommitMeta, type Ctx } from "./program.js";
import { expectUri, formatUri, refArgument } from "./uri.js";

/** The author recorded when `--author` is not given: `$CAIRN_AUTHOR`, else the login name. */
function defaultAuthor(env: NodeJS.ProcessEnv): string {
  if (env.CAIRN_AUTHOR) return env.CAIRN_AUTHOR;
  try {
    return userInfo().username;
  } catch {
    return "";
  }
}

/**
 * `commit --meta` is commit metadata (`key=value`), while `--meta` is the engine URL on every other command.
 * A value with no `=`, or with a `:` before its first `=` (`sqlite://…`, `dynamodb://t?region=…`), is taken as
 * the engine URL, so `--meta <url>` keeps working after `commit` too.
 */
function collectCommitMeta(value: string, previous: CommitMeta | undefined): CommitMeta {
  const acc: CommitMeta = previous ?? { pairs: [] };
  if (/^[^:=]*=/.test(value)) acc.pairs.push(value);
  else acc.engine = value;
  return acc;
}

const DIFF_MARK: Record<DiffEntry["type"], string> = { added: "+", removed: "-", changed: "~" };

export function registerHistoryCommands(program: Command, app: App): void {
  program
    .command("commit")
    .description("record a branch's uncommitted changes as a new commit")
    .argument("<branch>", "cairn://<repo>/<branch>")
    .requiredOption("-m, --message <message>", "what the commit changes and why")
    .option("--author <name>", "who made the change (default: $CAIRN_AUTHOR, else your login name)")
    .addOption(
      new Option(
        "--meta <key=value>",
        "commit metadata, repeatable (a URL here is still the engine URL)",
      ).argParser(collectCommitMeta),
    )
    .option("--allow-empty", "commit even when nothing changed")
    .addHelpText(
      "after",
      '\nExamples:\n  cairn commit cairn://photos/main -m "Add 2024"\n  cairn commit cairn://photos/main -m "Nightly import" --meta source=camera --meta batch=42',
    )
    .action(
      action<{ message: string; author?: string; meta?: CommitMeta; allowEmpty?: boolean }>(
        app,
        async (ctx, [uriText], opts) => {
          const uri = expectUri(uriText!, "ref", "branch");
          const metadata = parseKeyValues(opts.meta?.pairs, "--meta");
          const repo = await ctx.repo(uri.repo);
          const commit = await repo.commit(uri.ref!, {
            message: opts.message,
            author: opts.author ?? defaultAuthor(ctx.app.io.env),
            metadata,
            allowEmpty: opts.allowEmpty === true,
          });
          if (ctx.out.json) await ctx.out.record(commit);
          else await ctx.out.line(`[${uri.ref} ${shortId(commit.id)}] ${commit.message.split("\n")[0]}`);
        },
      ),
    );

  program
    .command("log")
    .description("show the commits reachable from a ref, newest first")
    .argument("<ref>", "cairn://<repo>/<ref>")
    .option(
      "-n, --limit <n>",
      "show at most n commits, then the ref to continue from",
      positiveInt("--limit"),
    )
    .option("--all-parents", "follow every parent of merge commits (default: first parents only)")
    .addHelpText(
      "after",
      "\nExamples:\n  cairn log cairn://photos/main --limit 10\n  cairn log cairn://photos/v1.0~2 --all-parents",
    )
    .action(
      action<{ limit?: number; allParents?: boolean }>(app, async (ctx, [uriText], opts) => {
        const uri = expectUri(uriText!, "ref", "ref");
        const repo = await ctx.repo(uri.repo);
        const decorations = ctx.out.json ? new Map<string, string[]>() : await refsByCommit(repo);
        const limit = opts.limit ?? Number.POSITIVE_INFINITY;
        let shown = 0;
        for await (const commit of repo.log(uri.ref!, {
          firstParent: !opts.allParents,
          ...(opts.limit ? { limit: opts.limit + 1 } : {}),
        })) {
          if (shown === limit) {
            // One more than asked: there is more history, and this is where it continues.
            if (ctx.out.json) await ctx.out.record({ next: commit.id });
            else {
              const again = `cairn log ${formatUri(uri.repo, shortId(commit.id))} --limit ${opts.limit}${opts.allParents ? " --all-parents" : ""}`;
              await ctx.out.line(`next: ${shortId(commit.id)}  (${again})`);
            }
            break;
          }
          if (ctx.out.json) await ctx.out.record(commit);
          else {
            if (shown > 0) await ctx.out.line();
            for (const l of describeCommit(commit, decorations.get(commit.id))) await ctx.out.line(l);
          }
          shown++;
        }
      }),
    );

  program
    .command("diff")
    .description("show what changed: a branch's uncommitted changes, or from one ref to another")
    .argument("<ref>", "cairn://<repo>/<ref>[/<prefix>]; alone it must be a branch")
    .argument("[other-ref]", "compare <ref> (left) to this ref (right): a ref, or cairn://<repo>/<ref>")
    .addHelpText(
      "after",
      `
Each line is "+ path" (added), "- path" (removed) or "~ path" (changed). A branch includes its uncommitted
changes on either side.

Examples:
  cairn diff cairn://photos/main                 uncommitted changes of main
  cairn diff cairn://photos/main edits           from main to branch edits
  cairn diff cairn://photos/v1.0/2024/ main      only under 2024/`,
    )
    .action(
      action(app, async (ctx, [uriText, otherText]) => {
        const uri = expectUri(uriText!, "ref-prefix", "ref");
        const prefix = uri.path ? { prefix: uri.path } : {};
        const repo = await ctx.repo(uri.repo);
        let changes: AsyncIterable<DiffEntry>;
        if (otherText === undefined) {
          const resolved = await repo.resolveRef(uri.ref!);
          if (resolved.branch === undefined) {
            throw new UsageError(
              `"${uri.ref}" is not a branch: with one ref, diff shows a branch's uncommitted changes; give a second ref to compare two refs.`,
            );
          }
          changes = repo.diffUncommitted(uri.ref!, prefix);
        } else {
          const other = refArgument(otherText, uri.repo, "other ref");
          changes = repo.diff(uri.ref!, other, prefix);
        }
        let n = 0;
        for await (const d of changes) {
          n++;
          if (ctx.out.json) await ctx.out.record(d);
          else await ctx.out.line(`${DIFF_MARK[d.type]} ${d.path}`);
        }
        if (n === 0 && !ctx.out.json)
          ctx.out.note(otherText === undefined ? "No uncommitted changes." : "No differences.");
      }),
    );

  program
    .command("merge")
    .description("merge a ref into a branch: fast-forward when possible, else a merge commit")
    .argument("<source>", "cairn://<repo>/<ref> to merge from")
    .argument("<destination>", "cairn://<repo>/<branch> to merge into (or just the branch name)")
    .addOption(
      new Option(
        "--strategy <strategy>",
        "settle paths both sides changed: take the source's or the destination's",
      ).choices(["source-wins", "dest-wins"]),
    )
    .option(
      "-m, --message <message>",
      "message of the merge commit (default: Merge <source> into <destination>)",
    )
    .option("--author <name>", "author of the merge commit (default: $CAIRN_AUTHOR, else your login name)")
    .addHelpText(
      "after",
      `
Without --strategy, paths both sides changed differently are a conflict: nothing is merged, the command
lists them and exits with status 6.

Examples:
  cairn merge cairn://photos/edits cairn://photos/main
  cairn merge cairn://photos/edits main --strategy source-wins -m "Take the edits"`,
    )
    .action(
      action<{ strategy?: MergeStrategy; message?: string; author?: string }>(
        app,
        async (ctx, [sourceText, destText], opts) => {
          const source = expectUri(sourceText!, "ref", "source");
          const destination = refArgument(destText!, source.repo, "destination");
          const repo = await ctx.repo(source.repo);
          const result = await repo.merge(source.ref!, destination, {
            author: opts.author ?? defaultAuthor(ctx.app.io.env),
            ...(opts.strategy ? { strategy: opts.strategy } : {}),
            ...(opts.message !== undefined ? { message: opts.message } : {}),
          });
          await printMerge(ctx, source.ref!, destination, result);
        },
      ),
    );
}

async function printMerge(
  ctx: Ctx,
  source: string,
  destination: string,
  result: Awaited<ReturnType<Repository["merge"]>>,
): Promise<void> {
  if (ctx.out.json) return ctx.out.record({ source, destination, ...result });
  const changes = `${result.changes} changed path${result.changes === 1 ? "" : "s"}`;
  if (result.upToDate) {
    await ctx.out.line(
      `Already up to date: ${destination} contains ${source} (${shortId(result.commitId)}).`,
    );
  } else if (result.fastForward) {
    await ctx.out.line(`Fast-forwarded ${destination} to ${shortId(result.commitId)} (${changes}).`);
  } else {
    await ctx.out.line(
      `Merged ${source} into ${destination}: merge commit ${shortId(result.commitId)} (${changes}).`,
    );
  }
}

/** Branch and tag names by the commit they point at, to decorate `log` as git does. */
async function refsByCommit(repo: Repository): Promise<Map<string, string[]>> {
  const out = new Map<string, string[]>();
  const add = (id: string, label: string) => {
    const list = out.get(id);
    if (list) list.push(label);
    else out.set(id, [label]);
  };
  for await (const b of repo.listBranches()) add(b.commitId, b.name);
  for await (const t of repo.listTags()) add(t.commitId, `tag: ${t.name}`);
  return out;
}
