import { createReadStream, createWriteStream } from "node:fs";
import { mkdtemp, rename, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import { asCairnError, dumpEngine, ENGINE_DUMP_SCHEMAS, ENGINE_DUMP_SECTIONS } from "@cairn/core";
import { readDump, writeDump } from "@cairn/manifest";
import type { Command } from "commander";
import { plural } from "./format.js";
import { openInput } from "./local-files.js";
import { type App, action, VERSION } from "./program.js";
import { expectUri } from "./uri.js";

/** Where a refs dump is kept in the repository's own storage namespace. */
export const REFS_MANIFEST_KEY = "_cairn/refs_manifest.json";

export function registerRefsCommands(program: Command, app: App): void {
  program
    .command("refs-dump")
    .description("write a repository's commits, branches and tags as a refs manifest (for backup by refs)")
    .argument("<repository>", "cairn://<repo>")
    .option("-o, --output <file>", "also write the manifest to this file (- for standard output)")
    .option("--commit-all", "commit every branch's uncommitted changes first")
    .addHelpText(
      "after",
      `
The manifest always goes to <namespace>/${REFS_MANIFEST_KEY}. Copy the storage namespace, create a bare
repository on the copy and run refs-restore to bring the repository back. Uncommitted changes are not part
of a refs manifest: refs-dump names the branches that have some, or commits them with --commit-all.

Examples:
  cairn refs-dump cairn://photos -o photos-refs.json
  cairn repo create-bare cairn://photos-copy file:///backup/photos
  cairn refs-restore cairn://photos-copy --manifest photos-refs.json`,
    )
    .action(
      action<{ output?: string; commitAll?: boolean }>(app, async (ctx, [uriText], opts) => {
        const uri = expectUri(uriText!, "repo", "repository");
        const repo = await ctx.repo(uri.repo);
        const dirty: string[] = [];
        for await (const b of repo.listBranches()) if (await repo.hasUncommitted(b.name)) dirty.push(b.name);
        for (const b of dirty) {
          if (opts.commitAll) {
            await repo.commit(b, {
              message: "Commit all before refs-dump",
              author: app.io.env.CAIRN_AUTHOR ?? "",
            });
            ctx.out.note(`Committed the uncommitted changes of branch ${b}.`);
          }
        }
        if (dirty.length > 0 && !opts.commitAll) {
          ctx.out.note(
            `warning: branch${dirty.length > 1 ? "es" : ""} ${dirty.join(", ")} ha${dirty.length > 1 ? "ve" : "s"} uncommitted changes, which the manifest leaves out (--commit-all commits them first).`,
          );
        }
        const cairn = await ctx.session.cairn();
        const dir = await mkdtemp(join(tmpdir(), "cairn-refs-"));
        const local = join(dir, "refs_manifest.json");
        try {
          const writer = writeDump({
            output: createWriteStream(local),
            sections: ENGINE_DUMP_SECTIONS,
            // No schema check on write: dumpEngine builds every record itself; refs-restore checks them.
            source: { engine: cairn.engine.kind, repository: uri.repo },
            tool: { name: "cairn", version: VERSION },
            consistency: cairn.engine.snapshot ? "snapshot" : "none",
            header: { kind: "refs" },
          });
          try {
            await dumpEngine(cairn.engine, writer, { repository: uri.repo, staging: false });
          } catch (error) {
            await writer.abort(error as Error);
            throw error;
          }
          const footer = await writer.end();
          const open = () => createReadStream(local);
          await repo.store.put(REFS_MANIFEST_KEY, open(), {
            contentType: "application/x-ndjson",
            size: (await stat(local)).size,
            reopen: open,
          });
          if (opts.output === "-") await pipeline(createReadStream(local), app.io.stdout, { end: false });
          else if (opts.output) await rename(local, opts.output).catch(() => copyFile(local, opts.output!));
          const summary = `${plural(footer.counts.commit ?? 0, "commit")}, ${footer.counts.branch ?? 0} branch(es), ${plural(footer.counts.tag ?? 0, "tag")}`;
          const where = `${repo.store.url.replace(/\/$/, "")}/${REFS_MANIFEST_KEY}`;
          if (ctx.out.json)
            ctx.out.note(JSON.stringify({ manifest: where, counts: footer.counts, sha256: footer.sha256 }));
          else
            ctx.out.note(
              `Dumped the refs of ${uri.repo} (${summary}) to ${where}${opts.output && opts.output !== "-" ? ` and ${opts.output}` : ""}.`,
            );
        } catch (error) {
          throw asCairnError(error);
        } finally {
          await rm(dir, { recursive: true, force: true });
        }
      }),
    );

  program
    .command("refs-restore")
    .description("restore a refs manifest into a bare repository whose namespace holds a copy of the data")
    .argument("<repository>", "cairn://<repo>, created with repo create-bare")
    .requiredOption("--manifest <file>", "the refs manifest, or - for standard input")
    .action(
      action<{ manifest: string }>(app, async (ctx, [uriText], opts) => {
        const uri = expectUri(uriText!, "repo", "repository");
        const input = await openInput(opts.manifest, "manifest", app.io.stdin);
        const cairn = await ctx.session.cairn();
        const reader = readDump(input, {
          schemas: ENGINE_DUMP_SCHEMAS,
          sections: ENGINE_DUMP_SECTIONS,
          label: opts.manifest === "-" ? "standard input" : opts.manifest,
        });
        try {
          await reader.header();
        } catch (error) {
          throw asCairnError(error);
        }
        const result = await cairn.restoreRefs(uri.repo, reader);
        ctx.session.forget(uri.repo);
        if (ctx.out.json) await ctx.out.record(result);
        else
          await ctx.out.line(
            `Restored ${plural(result.commits, "commit")}, ${result.branches} branch(es) and ${plural(result.tags, "tag")} into ${uri.repo}.`,
          );
      }),
    );
}

async function copyFile(from: string, to: string): Promise<void> {
  const tmp = `${to}.tmp`;
  await pipeline(createReadStream(from), createWriteStream(tmp));
  await rename(tmp, to);
}
