import type { MetadataEngine } from "./engine.js";
import { InvalidArgumentError, UnsupportedError } from "./errors.js";
import type { ObjectStore } from "./store.js";
import { redactUrl, urlScheme } from "./url.js";

/** What an engine package exports as `factory`: the URL schemes it serves and how to open one. */
export interface EngineFactory {
  readonly schemes: readonly string[];
  open(url: string): Promise<MetadataEngine>;
}

/** What a store package exports as `factory`. */
export interface StoreFactory {
  readonly schemes: readonly string[];
  open(url: string): Promise<ObjectStore>;
}

type Loader<T> = () => Promise<T> | T;

/**
 * Maps URL schemes to engine and store factories. Factories are loaded lazily, so an application lists every
 * adapter it knows while loading only the one a URL names.
 */
export class Registry {
  readonly #engines = new Map<string, Loader<EngineFactory>>();
  readonly #stores = new Map<string, Loader<StoreFactory>>();

  addEngine(schemes: readonly string[], load: Loader<EngineFactory>): this {
    for (const s of schemes) this.#engines.set(s, load);
    return this;
  }

  addStore(schemes: readonly string[], load: Loader<StoreFactory>): this {
    for (const s of schemes) this.#stores.set(s, load);
    return this;
  }

  get engineSchemes(): string[] {
    return [...this.#engines.keys()].sort();
  }

  get storeSchemes(): string[] {
    return [...this.#stores.keys()].sort();
  }

  async openEngine(url: string): Promise<MetadataEngine> {
    const load = this.#find(this.#engines, url, "metadata engine");
    return (await load()).open(url);
  }

  async openStore(url: string): Promise<ObjectStore> {
    const load = this.#find(this.#stores, url, "object store");
    return (await load()).open(url);
  }

  #find<T>(table: Map<string, Loader<T>>, url: string, what: string): Loader<T> {
    const scheme = urlScheme(url);
    if (!scheme) {
      throw new InvalidArgumentError(
        `"${redactUrl(url)}" is not a ${what} URL; expected one of the schemes ${[...table.keys()].sort().join(", ")}.`,
      );
    }
    const load = table.get(scheme);
    if (!load) {
      throw new UnsupportedError(
        `Unknown ${what} scheme "${scheme}:" in ${redactUrl(url)}; supported: ${[...table.keys()]
          .sort()
          .map((s) => `${s}://`)
          .join(", ")}.`,
      );
    }
    return load;
  }
}
