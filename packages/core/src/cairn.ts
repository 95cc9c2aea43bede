import { randomBytes } from "node:crypto";
import type { DumpRecord } from "@cairn/manifest";
import { decodeJson, encodeJson } from "./codec.js";
import { clearKeys, type MetadataEngine } from "./engine.js";
import {
  AlreadyExistsError,
  hasCode,
  InvalidArgumentError,
  NotFoundError,
  PreconditionFailedError,
} from "./errors.js";
import type { RepositoryInfo } from "./model.js";
import { validateRefName, validateRepositoryName } from "./names.js";
import {
  GLOBAL_PARTITION,
  namespaceKey,
  partitionOf,
  REPO_PREFIX,
  type RepositoryRecord,
  repoKey,
} from "./records.js";
import { type RestoreResult, restoreRefRecords } from "./refs-restore.js";
import { type BranchRecord, commitId, newToken, Repository } from "./repository.js";
import type { ObjectStore } from "./store.js";
import { TreeStore } from "./tree/tree-store.js";
import { redactUrl, urlScheme } from "./url.js";

export { GLOBAL_PARTITION } from "./records.js";
/** Written into a storage namespace when a repository takes it, so two repositories never share data. */
export const NAMESPACE_MARKER = "_cairn/repository.json";

export interface CairnOptions {
  engine: MetadataEngine;
  /** Opens the object store of a storage namespace URL (an application passes `registry.openStore`). */
  openStore: (url: string) => Promise<ObjectStore>;
  /** @default () => new Date() */
  now?: () => Date;
}

export interface CreateRepositoryOptions {
  name: string;
  /** Storage namespace URL, e.g. `file:///srv/cairn/data/photos` or `s3://bucket/photos`. */
  namespace: string;
  /** @default "main" */
  defaultBranch?: string;
}

/** Normalizes a namespace URL for comparison and storage: no trailing slash. */
export function normalizeNamespace(url: string): string {
  if (typeof url !== "string" || !urlScheme(url)) {
    throw new InvalidArgumentError(
      `Invalid storage namespace "${redactUrl(String(url))}": expected a URL such as file:///path or s3://bucket/prefix.`,
    );
  }
  return url.replace(/\/+$/, "");
}

function namespaceTaken(namespace: string, claim: Uint8Array | undefined): AlreadyExistsError {
  const owner = claim
    ? `"${decodeJson<{ repository: string }>(claim, "namespace claim").repository}"`
    : "another repository";
  return new AlreadyExistsError(
    `Storage namespace ${redactUrl(namespace)} is already used by repository ${owner}; two repositories cannot share one.`,
  );
}

interface NamespaceMarker {
  name?: unknown;
  instanceId?: unknown;
  released?: unknown;
}

/** The namespace's marker, or `undefined` when there is none (or it cannot be read as JSON). */
async function readMarker(store: ObjectStore): Promise<NamespaceMarker | undefined> {
  let reader: Awaited<ReturnType<ObjectStore["get"]>>;
  try {
    reader = await store.get(NAMESPACE_MARKER);
  } catch (e) {
    if (hasCode(e, "NOT_FOUND")) return undefined;
    throw e;
  }
  const chunks: Buffer[] = [];
  for await (const c of reader.body) chunks.push(c as Buffer);
  try {
    return JSON.parse(Buffer.concat(chunks).toString("utf8")) as NamespaceMarker;
  } catch {
    return {};
  }
}

/** Entry point of the library: repositories on one metadata engine. */
export class Cairn {
  readonly engine: MetadataEngine;
  readonly #openStore: (url: string) => Promise<ObjectStore>;
  readonly #now: () => Date;
  readonly #stores = new Map<string, Promise<ObjectStore>>();

  constructor(options: CairnOptions) {
    this.engine = options.engine;
    this.#openStore = options.openStore;
    this.#now = options.now ?? (() => new Date());
  }

  /**
   * Creates a repository with its default branch and an initial empty commit. Refuses a namespace that
   * another repository of this engine uses, or that holds another repository's data (use
   * {@link createBareRepository} to restore into such a copy).
   */
  async createRepository(options: CreateRepositoryOptions): Promise<Repository> {
    return this.#create(options, false);
  }

  /** Creates a repository without branch or commit, the target of a refs restore; it takes over the namespace. */
  async createBareRepository(options: CreateRepositoryOptions): Promise<Repository> {
    return this.#create(options, true);
  }

  async getRepository(name: string): Promise<RepositoryInfo> {
    const { instanceId: _, ...info } = await this.#record(name);
    return info;
  }

  async *listRepositories(options: { after?: string } = {}): AsyncGenerator<RepositoryInfo> {
    const scan = this.engine.scan(GLOBAL_PARTITION, {
      prefix: REPO_PREFIX,
      ...(options.after !== undefined ? { after: repoKey(options.after) } : {}),
    });
    for await (const { key, value } of scan) {
      const { instanceId: _, ...info } = decodeJson<RepositoryRecord>(value, `${GLOBAL_PARTITION}/${key}`);
      yield info;
    }
  }

  /** Opens a repository for work. */
  async repository(name: string): Promise<Repository> {
    const record = await this.#record(name);
    return this.#handle(record);
  }

  /**
   * Deletes a repository's metadata (branches, tags, commits, staged entries). Its storage namespace is left
   * as it is: objects and committed trees stay, and can be restored from.
   */
  async deleteRepository(name: string): Promise<void> {
    const record = await this.#record(name);
    await this.engine.delete(GLOBAL_PARTITION, repoKey(name));
    // Mark the namespace released (its objects stay): a new repository may take it, as after a restore.
    try {
      const store = await this.#store(record.namespace);
      const marker = await readMarker(store);
      if (marker?.instanceId === record.instanceId) {
        const released = { ...marker, released: true, releasedAt: this.#now().toISOString() };
        await store.put(NAMESPACE_MARKER, Buffer.from(`${JSON.stringify(released)}\n`), {
          contentType: "application/json",
        });
      }
    } catch {
      // The metadata is gone either way; an unreachable namespace keeps its marker, and create-bare takes it.
    }
    const claim = await this.engine.get(GLOBAL_PARTITION, namespaceKey(record.namespace));
    if (
      claim &&
      decodeJson<{ instanceId: string }>(claim, "namespace claim").instanceId === record.instanceId
    ) {
      await this.engine.delete(GLOBAL_PARTITION, namespaceKey(record.namespace));
    }
    await clearKeys(this.engine, partitionOf(record.instanceId));
  }

  /**
   * Restores a refs dump (commits, branches, tags of one repository, as `dumpEngine` writes them with
   * `repository` set and without staging) into a bare repository whose namespace holds a copy of the source's.
   * Refuses a repository that is not bare, a manifest whose default branch differs, and commits whose trees
   * are missing from the namespace (naming them). Nothing is visible until everything passed: the repository
   * stays bare until the end, and what was written is removed on failure.
   */
  async restoreRefs(name: string, records: AsyncIterable<DumpRecord>): Promise<RestoreResult> {
    const record = await this.#record(name);
    if (!record.bare) {
      throw new PreconditionFailedError(
        `Repository "${name}" is not bare; refs restore only into a repository created bare (cairn repo create-bare).`,
      );
    }
    const partition = partitionOf(record.instanceId);
    for await (const _ of this.engine.scan(partition, { limit: 1 })) {
      throw new PreconditionFailedError(
        `Repository "${name}" already holds refs; restore into a new bare repository.`,
      );
    }
    const store = await this.#store(record.namespace);
    const result = await restoreRefRecords(this.engine, partition, new TreeStore(store), record, records);
    await this.markRestored(name);
    return result;
  }

  /** Marks a bare repository as restored: it becomes an ordinary repository. */
  async markRestored(name: string): Promise<void> {
    const raw = await this.engine.get(GLOBAL_PARTITION, repoKey(name));
    if (!raw) throw new NotFoundError(`Repository "${name}" not found.`);
    const record = decodeJson<RepositoryRecord>(raw, repoKey(name));
    if (!record.bare) return;
    await this.engine.setIf(GLOBAL_PARTITION, repoKey(name), encodeJson({ ...record, bare: false }), raw);
  }

  /** Closes the object stores this instance opened. The engine belongs to the caller. */
  async close(): Promise<void> {
    const stores = [...this.#stores.values()];
    this.#stores.clear();
    await Promise.all(stores.map(async (s) => (await s.catch(() => undefined))?.close()));
  }

  async #create(options: CreateRepositoryOptions, bare: boolean): Promise<Repository> {
    const name = validateRepositoryName(options.name);
    const namespace = normalizeNamespace(options.namespace);
    const defaultBranch = validateRefName(options.defaultBranch ?? "main", "branch");
    if (await this.engine.get(GLOBAL_PARTITION, repoKey(name))) {
      throw new AlreadyExistsError(`Repository "${name}" already exists.`);
    }
    const claimed = await this.engine.get(GLOBAL_PARTITION, namespaceKey(namespace));
    if (claimed) throw namespaceTaken(namespace, claimed);
    const store = await this.#store(namespace);
    if (!bare) {
      const marker = await readMarker(store);
      if (marker && !marker.released) {
        const owner = typeof marker.name === "string" ? `repository "${marker.name}"` : "another repository";
        throw new PreconditionFailedError(
          `Storage namespace ${redactUrl(namespace)} already holds the data of ${owner}; choose another namespace, or create the repository bare to restore into it.`,
        );
      }
    }
    const instanceId = randomBytes(8).toString("hex");
    const createdAt = this.#now().toISOString();
    const claim = encodeJson({ repository: name, instanceId });
    if (!(await this.engine.setIf(GLOBAL_PARTITION, namespaceKey(namespace), claim, null))) {
      throw namespaceTaken(namespace, await this.engine.get(GLOBAL_PARTITION, namespaceKey(namespace)));
    }
    const partition = partitionOf(instanceId);
    const record: RepositoryRecord = { name, namespace, defaultBranch, createdAt, bare, instanceId };
    try {
      await store.put(
        NAMESPACE_MARKER,
        Buffer.from(
          `${JSON.stringify({ format: "cairn.namespace", version: 1, name, instanceId, createdAt })}\n`,
        ),
        { contentType: "application/json" },
      );
      if (!bare) {
        const trees = new TreeStore(store);
        const empty = await trees.writeMetarange([]);
        const commit = {
          version: 1 as const,
          parents: [],
          metarangeId: empty.id,
          message: "Repository created",
          author: "",
          metadata: {},
          createdAt,
          generation: 1,
        };
        const id = commitId(commit);
        await this.engine.set(partition, `commit/${id}`, encodeJson(commit));
        const branch: BranchRecord = { commitId: id, stagingToken: newToken(), sealedTokens: [] };
        await this.engine.set(partition, `branch/${defaultBranch}`, encodeJson(branch));
      }
      if (!(await this.engine.setIf(GLOBAL_PARTITION, repoKey(name), encodeJson(record), null))) {
        throw new AlreadyExistsError(`Repository "${name}" already exists.`);
      }
    } catch (e) {
      await this.engine.delete(GLOBAL_PARTITION, namespaceKey(namespace)).catch(() => {});
      await clearKeys(this.engine, partition).catch(() => {});
      throw e;
    }
    return this.#handle(record);
  }

  async #record(name: string): Promise<RepositoryRecord> {
    const raw = await this.engine.get(GLOBAL_PARTITION, repoKey(name));
    if (!raw) throw new NotFoundError(`Repository "${name}" not found.`);
    return decodeJson<RepositoryRecord>(raw, `${GLOBAL_PARTITION}/${repoKey(name)}`);
  }

  #store(namespace: string): Promise<ObjectStore> {
    let s = this.#stores.get(namespace);
    if (!s) {
      s = this.#openStore(namespace);
      s.catch(() => this.#stores.delete(namespace));
      this.#stores.set(namespace, s);
    }
    return s;
  }

  async #handle(record: RepositoryRecord): Promise<Repository> {
    const { instanceId, ...info } = record;
    return new Repository({
      engine: this.engine,
      store: await this.#store(record.namespace),
      info,
      partition: partitionOf(instanceId),
      now: this.#now,
    });
  }
}
