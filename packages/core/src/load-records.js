// @ts-check
// Plain JavaScript, with types from JSDoc: a load's worker thread (load-thread.js) runs this module as it is, from
// the source tree under test as from dist, and Node runs no TypeScript in a worker.
import { DigestSet } from "./digest-set.js";
import { commitLineStart, lineHead, stagedLineStart } from "./dump-lines.js";
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
  /**
   * Whether every write so far has a key above all earlier ones of its partition (as a dump's sections are
   * written): then no key was written twice, and writes need not be applied in order.
   */
  ascending = true;
  /** @type {Map<string, string>} the last key written in each partition */
  #lastKey = new Map();
  /** @type {Record<string, number>} records seen per type */
  counts = {};
  /** @type {string | undefined} */
  #only;
  /**
   * Each repository's commits so far, and the parents they named that were not among them then.
   * @type {Map<string, LoadedRepository & { partition: string; commits: DigestSet; pending: DigestSet; hasDefaultBranch: boolean }>}
   */
  #repos = new Map();
  /** The start of the last commit line: `{"type":"commit","repository":…,"id":`. */
  #commitHead = { repository: "", bytes: Buffer.alloc(0) };
  /** The start of the last staged entry's line, up to its path: `{"type":"staged","repository":…,"token":…,"path":`. */
  #stagedHead = { repository: "", token: "", bytes: Buffer.alloc(0) };
  #scratch = Buffer.allocUnsafe(4096);

  /** @param {{ repository?: string | undefined }} options only this repository of the dump, and no engine records */
  constructor(options) {
    this.#only = options.repository;
  }

  /**
   * Checks `record` against those before it and hands its write, if it makes one, to `put`.
   *
   * With `line`, the record's line as read, the value of a commit or staged entry whose line is exactly as
   * `dumpEngine` writes it is a view of the line rather than the record serialized again: most of a load's records,
   * and the cost of serializing them is most of a load's after parsing. One byte of the line is overwritten to do
   * so: give a line no one else reads.
   * @param {{ type: string; [field: string]: unknown }} record
   * @param {PutFn} put
   * @param {Buffer} [line]
   */
  record(record, put, line) {
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
          commits: new DigestSet(64),
          pending: new DigestSet(64),
          hasDefaultBranch: false,
        });
        return;
      }
      case "commit": {
        const r = this.#repoOf(record);
        if (!r) return;
        const id = /** @type {string} */ (record.id);
        const parents = /** @type {unknown[]} */ (record.parents);
        for (const p of parents) {
          if (typeof p !== "string") this.#bad(record, "parents must be commit ids");
          if (!r.commits.has(p)) r.pending.add(p);
        }
        r.commits.add(id);
        const rest = line === undefined ? -1 : this.#commitRest(record, line);
        if (rest > 0) {
          // `,` before the commit's own fields becomes the `{` of the stored object.
          /** @type {Buffer} */ (line)[rest - 1] = 0x7b;
          this.#put(put, r.partition, `commit/${id}`, /** @type {Buffer} */ (line).subarray(rest - 1));
        } else {
          const { type: _t, repository: _r, id: _i, ...commit } = record;
          this.#put(put, r.partition, `commit/${id}`, JSON.stringify(commit));
        }
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
        this.#put(put, r.partition, `${type}/${String(name)}`, JSON.stringify(value));
        return;
      }
      case "staged": {
        const r = this.#repoOf(record);
        if (!r) return;
        const { token, path, entry } = record;
        const key = `staged/${String(token)}/${String(path)}`;
        const at = entry && line !== undefined ? this.#stagedEntry(record, line) : -1;
        if (at > 0) {
          // `,` before `"entry":` becomes the `{` of the stored object, `{"entry":{…}}`.
          /** @type {Buffer} */ (line)[at - 1] = 0x7b;
          this.#put(put, r.partition, key, /** @type {Buffer} */ (line).subarray(at - 1));
        } else this.#put(put, r.partition, key, JSON.stringify(entry ? { entry } : { deleted: true, path }));
        return;
      }
      case "engine-record": {
        if (this.#only !== undefined) return;
        const { partition, key, value } = /** @type {Record<string, string>} */ (record);
        this.#put(
          put,
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
      for (const p of r.pending.values()) {
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

  /**
   * Where a commit's own fields start in its line (after `"id":…,`), when the line starts as `dumpEngine` writes
   * it: then they run to the line's closing brace. -1 otherwise.
   * @param {{ [field: string]: unknown }} record
   * @param {Buffer} line
   */
  #commitRest(record, line) {
    const keys = Object.keys(record);
    if (keys.length < 4 || line[line.length - 1] !== 0x7d) return -1;
    const repository = /** @type {string} */ (record.repository);
    if (this.#commitHead.repository !== repository) {
      this.#commitHead = {
        repository,
        bytes: Buffer.from(commitLineStart(lineHead("commit", repository))),
      };
    }
    return this.#after(line, this.#commitHead.bytes, `${JSON.stringify(record.id)},`);
  }

  /**
   * Where `"entry":` starts in a staged entry's line, when the line is `dumpEngine`'s up to there and the entry is
   * its last field: then the entry runs to the line's closing brace. -1 otherwise.
   * @param {{ [field: string]: unknown }} record
   * @param {Buffer} line
   */
  #stagedEntry(record, line) {
    const keys = Object.keys(record);
    if (keys.length !== 5 || keys[4] !== "entry" || line[line.length - 1] !== 0x7d) return -1;
    const repository = /** @type {string} */ (record.repository);
    const token = /** @type {string} */ (record.token);
    if (this.#stagedHead.repository !== repository || this.#stagedHead.token !== token) {
      const text = stagedLineStart(lineHead("staged", repository), token);
      this.#stagedHead = { repository, token, bytes: Buffer.from(text) };
    }
    const after = this.#after(line, this.#stagedHead.bytes, `${JSON.stringify(record.path)},"entry":`);
    return after < 0 ? -1 : after - '"entry":'.length;
  }

  /**
   * Where `line` goes on after `head` and then `tail` (as UTF-8), or -1 when it does not start with them or ends
   * there.
   * @param {Buffer} line
   * @param {Buffer} head
   * @param {string} tail
   */
  #after(line, head, tail) {
    if (line.length <= head.length || line.compare(head, 0, head.length, 0, head.length) !== 0) return -1;
    // At most 3 bytes a UTF-16 unit: a tail that might not fit is not compared.
    if (3 * tail.length > this.#scratch.length) return -1;
    const n = this.#scratch.write(tail, 0, "utf8");
    const at = head.length;
    if (line.length <= at + n || line.compare(this.#scratch, 0, n, at, at + n) !== 0) return -1;
    return at + n;
  }

  /**
   * Hands a write to `put`, noting whether keys still ascend.
   * @param {PutFn} put
   * @param {string} partition
   * @param {string} key
   * @param {string | Uint8Array} value
   */
  #put(put, partition, key, value) {
    if (this.ascending) {
      const last = this.#lastKey.get(partition);
      if (last !== undefined && !(key > last)) this.ascending = false;
      else this.#lastKey.set(partition, key);
    }
    put(partition, key, value);
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
