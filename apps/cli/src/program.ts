import { readFileSync } from "node:fs";
import type { Registry, Repository } from "@cairn/core";
import { Command, Option } from "commander";
import { registerBackupMaintenanceCommands } from "./backup-commands.js";
import { registerBackupMetaCommands } from "./backup-meta-commands.js";
import { registerBackupRestoreCommands } from "./backup-restore-commands.js";
import { registerBranchCommands } from "./branch-commands.js";
import { registerDumpCommands } from "./dump-commands.js";
import { registerFsCommands } from "./fs-commands.js";
import { registerHistoryCommands } from "./history-commands.js";
import { type Io, Output } from "./output.js";
import { registerRefsCommands } from "./refs-commands.js";
import { registerRepoCommands } from "./repo-commands.js";
import { DEFAULT_META, metaUrl, type Session } from "./session.js";
import { registerTagCommands } from "./tag-commands.js";
import { registerTour } from "./tour.js";

/** What every command runs against; one per process. */
export interface App {
  readonly io: Io;
  readonly registry: Registry;
  /** The session of a metadata engine URL, opened on first use and closed when the process ends. */
  session(meta: string): Session;
  /** Runs one cairn command line in this process, as `cairn <argv…>` would (the tour's steps). */
  run(argv: readonly string[]): Promise<void>;
}

/** What a command's action gets. */
export interface Ctx {
  readonly app: App;
  readonly out: Output;
  /** The metadata engine URL in effect. */
  readonly meta: string;
  readonly session: Session;
  repo(name: string): Promise<Repository>;
}

export const VERSION: string = (
  JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string }
).version;

/**
 * Wraps a command's implementation: resolves the global options (the value nearest the end of the command
 * line wins, then `$CAIRN_META`, then the default), and passes the positional arguments and options.
 */
export function action<O>(app: App, fn: (ctx: Ctx, args: string[], opts: O) => Promise<void>) {
  return async (...all: unknown[]): Promise<void> => {
    const cmd = all[all.length - 1] as Command;
    const { meta, json } = globalOptions(cmd, app.io.env);
    const session = app.session(meta);
    const ctx: Ctx = {
      app,
      out: new Output(app.io, json),
      meta,
      session,
      repo: (name) => session.repository(name),
    };
    await fn(ctx, cmd.processedArgs as string[], cmd.opts() as O);
  };
}

/** What `commit --meta` collects: `key=value` pairs, and an engine URL when a value looks like one. */
export interface CommitMeta {
  engine?: string;
  pairs: string[];
}

function globalOptions(cmd: Command, env: NodeJS.ProcessEnv): { meta: string; json: boolean } {
  let meta: string | undefined;
  let json = false;
  for (let c: Command | null = cmd; c; c = c.parent) {
    const o = c.opts<{ meta?: string | CommitMeta; json?: boolean }>();
    if (meta === undefined) meta = typeof o.meta === "string" ? o.meta : o.meta?.engine;
    if (o.json) json = true;
  }
  return { meta: metaUrl(meta, env), json };
}

const META_HELP = `metadata engine URL (env CAIRN_META; default ${DEFAULT_META})`;
const JSON_HELP = "machine-readable output: one JSON document, or JSON Lines for listings";

/** Builds the whole command tree. A fresh one per command line, so the tour can run many in one process. */
export function createProgram(app: App): Command {
  const program = new Command("cairn")
    .description("A versioned object repository: branches, commits, tags and merges over your files.")
    .version(VERSION, "-V, --version", "print the version of cairn")
    .helpOption("-h, --help", "show help for a command")
    .addOption(new Option("--meta <engine-url>", META_HELP))
    .addOption(new Option("--json", JSON_HELP))
    // Options belong to the command they follow, so `commit --meta key=value` can mean commit metadata while
    // `--meta <url>` anywhere else is the engine; every command accepts the global options (added below).
    .enablePositionalOptions()
    .exitOverride()
    .configureOutput({
      writeOut: (s) => app.io.stdout.write(s),
      writeErr: (s) => app.io.stderr.write(s),
      // The top-level catch prints every error once, as one line.
      outputError: () => {},
    })
    .configureHelp({
      showGlobalOptions: true,
      // `--version` only works before a command; the hidden copies of --meta and --json are not listed twice.
      visibleGlobalOptions: (cmd) => (cmd.parent ? globalOptionsOf(cmd) : []),
      subcommandTerm: (cmd) =>
        [
          cmd.name(),
          cmd.options.some((o) => !o.hidden) ? "[options]" : "",
          cmd.commands.length ? "<command>" : "",
          ...cmd.registeredArguments.map((a) => (a.required ? `<${a.name()}>` : `[${a.name()}]`)),
        ]
          .filter(Boolean)
          .join(" "),
    })
    .helpCommand(false)
    .addHelpText(
      "after",
      `
Addresses are cairn:// URIs: cairn://<repo>, cairn://<repo>/<ref>, cairn://<repo>/<branch>/<path>.
A ref is a branch, a tag, a commit id (or a unique prefix of 7+ hex digits), with optional ~N and ^N steps.

Examples:
  cairn repo create cairn://photos
  cairn fs upload ./pictures cairn://photos/main/2024/ --recursive
  cairn commit cairn://photos/main -m "Add 2024"
  cairn log cairn://photos/main
  cairn tour                  a guided demo in a new repository`,
    );

  registerRepoCommands(program, app);
  registerBranchCommands(program, app);
  registerFsCommands(program, app);
  registerHistoryCommands(program, app);
  registerTagCommands(program, app);
  registerDumpCommands(program, app);
  registerRefsCommands(program, app);
  registerBackupRestoreCommands(program, app);
  registerBackupMetaCommands(program, app);
  registerBackupMaintenanceCommands(program, app);
  registerTour(program, app);

  for (const sub of program.commands) addGlobalOptions(sub);
  return program;
}

function globalOptionsOf(cmd: Command): Option[] {
  let root = cmd;
  while (root.parent) root = root.parent;
  return root.options.filter((o) => !o.hidden && o.long !== "--version");
}

function addGlobalOptions(cmd: Command): void {
  if (cmd.commands.length) cmd.helpCommand(false).usage("<command> [options]");
  if (!cmd.options.some((o) => o.long === "--meta")) {
    cmd.addOption(new Option("--meta <engine-url>", META_HELP).hideHelp());
  }
  cmd.addOption(new Option("--json", JSON_HELP).hideHelp());
  for (const sub of cmd.commands) addGlobalOptions(sub);
}

/** The command a command line names (`fs upload` in `cairn --json fs upload x y`), for "see --help" hints. */
export function commandPath(program: Command, argv: readonly string[]): string[] {
  const path: string[] = [];
  let cmd = program;
  for (const arg of argv) {
    if (arg === "--") break;
    if (arg.startsWith("-")) continue;
    const sub = cmd.commands.find((c) => c.name() === arg || c.aliases().includes(arg));
    if (!sub) {
      if (cmd.commands.length === 0) break;
      continue;
    }
    path.push(sub.name());
    cmd = sub;
  }
  return path;
}
