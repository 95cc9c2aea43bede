import { join } from "node:path";
import { pathToFileURL } from "node:url";
import {
  Cairn,
  type MetadataEngine,
  type Registry,
  type Repository,
  validateRepositoryName,
} from "@cairn/core";

/** The embedded default: a SQLite file under `./.cairn/` of the working directory. */
export const DEFAULT_META = "sqlite://./.cairn/meta.db";

/** The metadata engine URL a command uses: `--meta`, else `$CAIRN_META`, else the embedded default. */
export function metaUrl(option: string | undefined, env: NodeJS.ProcessEnv): string {
  return option || env.CAIRN_META || DEFAULT_META;
}

/**
 * One opened metadata engine and the repositories used on it, shared by every command of one process (the
 * tour runs many). Opened on first use, so `cairn --help` or a malformed URI never touches the engine.
 */
export class Session {
  readonly meta: string;
  readonly cwd: string;
  readonly registry: Registry;
  #cairn: Promise<Cairn> | undefined;
  #engine: MetadataEngine | undefined;
  readonly #repos = new Map<string, Promise<Repository>>();

  constructor(options: { meta: string; cwd: string; registry: Registry }) {
    this.meta = options.meta;
    this.cwd = options.cwd;
    this.registry = options.registry;
  }

  cairn(): Promise<Cairn> {
    this.#cairn ??= this.#open();
    return this.#cairn;
  }

  /** Opens a repository; an invalid name is `INVALID_ARGUMENT`, not "not found". */
  repository(name: string): Promise<Repository> {
    validateRepositoryName(name);
    let repo = this.#repos.get(name);
    if (!repo) {
      repo = this.cairn().then((c) => c.repository(name));
      repo.catch(() => this.#repos.delete(name));
      this.#repos.set(name, repo);
    }
    return repo;
  }

  /** Forgets an opened repository (after it was deleted). */
  forget(name: string): void {
    this.#repos.delete(name);
  }

  /** Where a repository created without a namespace keeps its data: `./.cairn/data/<repo>` as a file URL. */
  defaultNamespace(repo: string): string {
    return pathToFileURL(join(this.cwd, ".cairn", "data", repo)).href;
  }

  async close(): Promise<void> {
    const cairn = this.#cairn;
    this.#cairn = undefined;
    this.#repos.clear();
    if (cairn) await (await cairn.catch(() => undefined))?.close();
    const engine = this.#engine;
    this.#engine = undefined;
    await engine?.close();
  }

  async #open(): Promise<Cairn> {
    const engine = await this.registry.openEngine(this.meta);
    this.#engine = engine;
    return new Cairn({ engine, openStore: (url) => this.registry.openStore(url) });
  }
}
