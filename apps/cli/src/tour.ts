import { mkdir, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { hasCode } from "@cairn/core";
import type { Command } from "commander";
import { type App, action, type Ctx } from "./program.js";
import { DEFAULT_META } from "./session.js";

/** Quotes an argument for a POSIX shell only when it needs it, so printed commands can be pasted. */
function shellQuote(arg: string): string {
  return /^[A-Za-z0-9_@%+=:,./~^-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`;
}

/** A repository name no earlier tour took: `tour-20261125-205851`, with a suffix when run twice a second. */
async function freshName(ctx: Ctx): Promise<string> {
  const stamp = new Date().toISOString().replace(/[-:]/g, "").replace("T", "-").slice(0, 15);
  const cairn = await ctx.session.cairn();
  for (let i = 1; ; i++) {
    const name = i === 1 ? `tour-${stamp}` : `tour-${stamp}-${i}`;
    try {
      await cairn.getRepository(name);
    } catch (e) {
      if (hasCode(e, "NOT_FOUND")) return name;
      throw e;
    }
  }
}

async function writeLocal(path: string, text: string): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, text);
}

export function registerTour(program: Command, app: App): void {
  program
    .command("tour")
    .description("a guided demo in a new repository: upload, commit, branch, diff, merge, log")
    .addHelpText(
      "after",
      "\nEach step prints the cairn command it runs, then that command's output. The repository it creates\n(tour-<time>) and its files stay in ./.cairn/ to explore afterwards.",
    )
    .action(action(app, tour));
}

async function tour(ctx: Ctx): Promise<void> {
  const { out } = ctx;
  if (out.json) ctx.out.note("cairn tour prints for people; --json is ignored.");
  const name = await freshName(ctx);
  const repo = `cairn://${name}`;
  const local = join(".cairn", "tour", name);
  const files = join(local, "files");
  const extra = ctx.meta === DEFAULT_META ? [] : ["--meta", ctx.meta];
  let n = 0;

  const say = (text: string) => out.line(text);
  const step = async (comment: string, argv: string[]) => {
    n++;
    await say("");
    for (const [i, l] of comment.split("\n").entries()) await say(i === 0 ? `# ${n}. ${l}` : `#    ${l}`);
    await say(`$ cairn ${[...argv, ...extra].map(shellQuote).join(" ")}`);
    await ctx.app.run([...argv, ...extra]);
  };

  await say("cairn tour: a versioned object repository in a few commands.");
  await say("Each step shows the cairn command it runs, then what that command printed.");
  await say(`Everything happens on this machine: metadata in ${ctx.meta}, objects under ./.cairn/data/.`);

  await step(
    `Create a repository. Without a storage namespace URL, its objects go to ./.cairn/data/${name}/.`,
    ["repo", "create", repo],
  );

  await writeLocal(
    join(files, "README.md"),
    "# Weather sample\n\nDaily readings of a few cities, to show how cairn versions files.\n",
  );
  await writeLocal(join(files, "data", "cities.csv"), "city,country\nOslo,NO\nNairobi,KE\nQuito,EC\n");
  await writeLocal(
    join(files, "data", "readings.json"),
    `${JSON.stringify(
      [
        { city: "Oslo", date: "2026-01-15", celsius: -4.5 },
        { city: "Nairobi", date: "2026-01-15", celsius: 24.1 },
        { city: "Quito", date: "2026-01-15", celsius: 13.8 },
      ],
      null,
      2,
    )}\n`,
  );
  await step(
    `Upload a folder of three small files (just written to ${files}/) to branch main.\nUploads are staged: they stay uncommitted until you commit.`,
    ["fs", "upload", files, `${repo}/main/`, "--recursive"],
  );
  await step("See the uncommitted changes of main: + added, - removed, ~ changed.", ["diff", `${repo}/main`]);
  await step("Commit them: the commit id is the SHA-256 of its content.", [
    "commit",
    `${repo}/main`,
    "-m",
    "Add cities and readings",
  ]);
  await step("List everything on main.", ["fs", "ls", `${repo}/main/`, "--recursive"]);
  await step("Create a branch to work on without touching main.", [
    "branch",
    "create",
    `${repo}/lisbon`,
    "--source",
    "main",
  ]);

  await writeLocal(
    join(files, "data", "cities.csv"),
    "city,country\nOslo,NO\nNairobi,KE\nQuito,EC\nLisbon,PT\n",
  );
  await writeLocal(join(local, "notes.md"), "Lisbon added on 2026-01-16; readings follow tomorrow.\n");
  await step("On the branch, change a file (a city added locally)…", [
    "fs",
    "upload",
    join(files, "data", "cities.csv"),
    `${repo}/lisbon/data/cities.csv`,
  ]);
  await step("…and add a new one.", ["fs", "upload", join(local, "notes.md"), `${repo}/lisbon/notes.md`]);
  await step("Commit on the branch, with metadata.", [
    "commit",
    `${repo}/lisbon`,
    "-m",
    "Add Lisbon",
    "--meta",
    "ticket=WX-42",
  ]);
  await step("Compare main (left) with the branch (right).", ["diff", `${repo}/main`, "lisbon"]);
  await step("Merge the branch into main. main has not moved since, so this is a fast-forward.", [
    "merge",
    `${repo}/lisbon`,
    `${repo}/main`,
  ]);
  await step("The history of main, newest first (short ids; any unique prefix of 7+ digits works).", [
    "log",
    `${repo}/main`,
  ]);
  await step("What the last commit changed on main: main~1 is the commit before main.", [
    "diff",
    `${repo}/main~1`,
    "main",
  ]);
  await step("Read a file as main has it now.", ["fs", "cat", `${repo}/main/data/cities.csv`]);
  await step("Name this state with a tag; tags are refs too, e.g. cairn://…/v1/data/cities.csv.", [
    "tag",
    "create",
    `${repo}/v1`,
    "main",
  ]);

  await say("");
  await say(`Done. Repository ${name} stays in ./.cairn/; from this folder, try:`);
  const meta = extra.length ? ` --meta ${shellQuote(ctx.meta)}` : "";
  await say(`  cairn fs ls ${repo}/v1/ --recursive${meta}`);
  await say(`  cairn fs download ${repo}/main/data/ ./weather --recursive${meta}`);
  await say(`  cairn log ${repo}/main --limit 1${meta}`);
  await say(`  cairn repo delete ${repo} --yes${meta}`);
  await say(
    "In this project, run cairn as `npm run -s cairn -- …` or `node apps/cli/dist/bin.js …`; `cairn --help` lists it all.",
  );
}
