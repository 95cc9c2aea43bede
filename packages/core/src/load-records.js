// @ts-check
// Plain JavaScript, with types from JSDoc: a load's worker thread (load-thread.js) runs this module as it is, from
// the source tree under test as from dist, and Node runs no TypeScript in a worker.
import { partitionOf } from "./layout.js";

/**
 * A dump that does not hold together (`CORRUPT`), or a repository asked for that it does not have
 * (`INVALID_ARGUMENT`). `code` is the cairn error code the loader raises it as.
 */
export class LoadCheckError extends Error {
  /**
   * @param {"CORRUPT" | "INVALID_ARGUMENT"} code
   * @param {string} message
   */
  constructor(code, message) {
    super(message);
    this.name = "LoadCheckError";
    this.code = code;
  }
}

/**
 * A repository of the dump as it will be stored under `repos/<name>`, once everything else is written.
 * @typedef {{ name: string; namespace: string; defaultBranch: string; createdAt: string; bare: boolean; instanceId: string }} LoadedRepository
 */

/**
 * Receives one write of a load: `value` is the JSON text to store, or bytes stored as they are.
 * @typedef {(partition: string, key: string, value: string | Uint8Array) => void} PutFn
 */

/**
 * The checks and the writes of a load, one record at a time: which key each record of the dump is stored under and
 * as what, and whether the records hold together — branches and tags point at commits of the dump, commits' parents
 * are in it, every repository has its default branch. The records must have passed the reader's schema checks.
 */
export class LoadChecks {
  /** Records seen. */
  count = 0;
  /** @type {Record<string, number>} records seen per type */
  counts = {};
  /** @type {string | undefined} */
  #only;
  /** @type {Map<string, LoadedRepository & { partition: string; commits: Set<string>; parents: Set<string>; hasDefaultBranch: boolean }>} */
  #repos = new Map();

  /** @param {{ repository?: string | undefined }} options only this repository of the dump, and no engine records */
  constructor(options) {
    this.#only = options.repository;
  }

  /**
   * Checks `record` against those before it and hands its write, if it makes one, to `put`.
   * @param {{ type: string; [field: string]: unknown }} record
   * @param {PutFn} put
   */
  record(record, put) {
    this.count++;
    this.counts[record.type] = (this.counts[record.type] ?? 0) + 1;
    switch (record.type) {
      case "repository": {
        const { name, id, namespace, defaultBranch, createdAt, bare } = /** @type {any} */ (record);
        if (this.#only !== undefined && name !== this.#only) return;
        if (this.#repos.has(name)) this.#bad(record, `repository "${name}" appears twice`);
        this.#repos.set(name, {
          name,
          namespace,
          defaultBranch,
          createdAt,
          bare,
          instanceId: id,
          partition: partitionOf(id),
          commits: new Set(),
          parents: new Set(),
          hasDefaultBranch: false,
        });
        return;
      }
      case "commit": {
        const r = this.#repoOf(record);
        if (!r) return;
        const { type: _t, repository: _r, id, ...commit } = record;
        const parents = /** @type {unknown[]} */ (commit.parents);
        for (const p of parents) {
          if (typeof p !== "string") this.#bad(record, "parents must be commit ids");
          r.parents.add(p);
        }
        r.commits.add(/** @type {string} */ (id));
        put(r.partition, `commit/${id}`, JSON.stringify(commit));
        return;
      }
      case "branch":
      case "tag": {
        const r = this.#repoOf(record);
        if (!r) return;
        const { type, repository: _r, name, ...value } = record;
        if (!r.commits.has(/** @type {string} */ (value.commitId))) {
          this.#bad(
            record,
            `${type} "${String(name)}" points at commit ${String(value.commitId)}, which is not in the dump`,
          );
        }
        if (type === "branch" && name === r.defaultBranch) r.hasDefaultBranch = true;
        put(r.partition, `${type}/${String(name)}`, JSON.stringify(value));
        return;
      }
      case "staged": {
        const r = this.#repoOf(record);
        if (!r) return;
        const { token, path, entry } = record;
        put(
          r.partition,
          `staged/${String(token)}/${String(path)}`,
          JSON.stringify(entry ? { entry } : { deleted: true, path }),
        );
        return;
      }
      case "engine-record": {
        if (this.#only !== undefined) return;
        const { partition, key, value } = /** @type {Record<string, string>} */ (record);
        put(
          /** @type {string} */ (partition),
          /** @type {string} */ (key),
          Buffer.from(value ?? "", "base64"),
        );
        return;
      }
      default:
        this.#bad(record, "unknown record type");
    }
  }

  /**
   * After the last record: the checks that need the whole dump. Returns the repositories loaded, whose own records
   * the loader writes last.
   * @returns {LoadedRepository[]}
   */
  finish() {
    for (const r of this.#repos.values()) {
      for (const p of r.parents) {
        if (!r.commits.has(p)) {
          throw new LoadCheckError(
            "CORRUPT",
            `Repository "${r.name}" in the dump has a commit whose parent ${p} is not in the dump.`,
          );
        }
      }
      if (!r.bare && !r.hasDefaultBranch) {
        throw new LoadCheckError(
          "CORRUPT",
          `Repository "${r.name}" in the dump has no default branch "${r.defaultBranch}".`,
        );
      }
    }
    if (this.#only !== undefined && this.#repos.size === 0) {
      throw new LoadCheckError("INVALID_ARGUMENT", `Repository "${this.#only}" is not in the dump.`);
    }
    return [...this.#repos.values()].map(
      ({ name, namespace, defaultBranch, createdAt, bare, instanceId }) => ({
        name,
        namespace,
        defaultBranch,
        createdAt,
        bare,
        instanceId,
      }),
    );
  }

  /** @param {{ type: string; [field: string]: unknown }} record */
  #repoOf(record) {
    const r = this.#repos.get(/** @type {string} */ (record.repository));
    if (!r && this.#only === undefined) {
      this.#bad(record, `repository "${String(record.repository)}" is not in the dump`);
    }
    return r;
  }

  /**
   * @param {{ type: string }} record
   * @param {string} why
   * @returns {never}
   */
  #bad(record, why) {
    throw new LoadCheckError("CORRUPT", `Dump record ${this.count} (${record.type}): ${why}.`);
  }
}
