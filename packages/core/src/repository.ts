import { createHash, randomBytes } from "node:crypto";
import { pipeline, Readable } from "node:stream";
import pLimit from "p-limit";
import { canonicalJson, decodeJson, encodeJson, sha256Hex } from "./codec.js";
import { clearKeys, compareKeys, type MetadataEngine } from "./engine.js";
import {
  AlreadyExistsError,
  ConflictError,
  CorruptError,
  hasCode,
  InvalidArgumentError,
  NotFoundError,
  PreconditionFailedError,
} from "./errors.js";
import { digestChecked } from "./files.js";
import { flattenPages, paginate } from "./iterate.js";
import type { Branch, Change, Commit, DiffEntry, Entry, RepositoryInfo, Tag } from "./model.js";
import { sameEntry } from "./model.js";
import { validatePath, validatePrefix, validateRefName } from "./names.js";
import { entriesAsChanges, mergeChanges, type StagedValue, scanStaging, stagedKey } from "./staging.js";
import type { ObjectStore, PutBody } from "./store.js";
import { diffTrees } from "./tree/diff.js";
import type { Metarange } from "./tree/format.js";
import { iterateTree, iterateTreePages, lookup } from "./tree/reader.js";
import { TreeStore } from "./tree/tree-store.js";
import { applyChanges } from "./tree/writer.js";

/** How a branch is stored: its commit, the token new writes stage under, and tokens sealed by running commits. */
export interface BranchRecord {
  commitId: string;
  stagingToken: string;
  sealedTokens: string[];
}

/** A commit as stored under `commit/<id>`: the commit without its id, which is derived from the rest. */
type CommitRecord = Omit<Commit, "id"> & { version: 1 };

export interface UploadOptions {
  contentType?: string;
  metadata?: Record<string, string>;
  /**
   * A fresh stream of the body's bytes from their start, when they can be read twice (a file:
   * `() => createReadStream(path)`). A body over 8 MiB is then hashed first and written once, at its content
   * address, or not at all when the namespace holds it already, instead of being written to a temporary key
   * and copied there. The second read is checked against the first as it is written: a body that changed in
   * between fails with `CONFLICT` before its last bytes are sent, and nothing is staged.
   */
  reopen?: () => Readable | AsyncIterable<Uint8Array>;
}

export interface CommitOptions {
  message: string;
  author?: string;
  metadata?: Record<string, string>;
  /** Record a commit even when nothing changed. */
  allowEmpty?: boolean;
}

export type MergeStrategy = "source-wins" | "dest-wins";

export interface MergeOptions {
  message?: string;
  author?: string;
  metadata?: Record<string, string>;
  /** How to settle paths both sides changed differently; without one such paths are a conflict. */
  strategy?: MergeStrategy;
}

export interface MergeResult {
  /** The commit the destination branch points at afterwards. */
  commitId: string;
  fastForward: boolean;
  /** Nothing to merge: the source is already contained in the destination. */
  upToDate: boolean;
  /** Paths the merge changed on the destination. */
  changes: number;
}

export interface ListOptions {
  prefix?: string;
  /** Group paths by the part after `prefix` up to this string, as S3's delimiter does. */
  delimiter?: string;
  /** Start strictly after this path (or common prefix). */
  after?: string;
  /** Page size. @default 1000 */
  limit?: number;
}

export interface ListPage {
  entries: Entry[];
  commonPrefixes: string[];
  /** Pass as `after` for the next page; absent on the last page. */
  next?: string;
}

export interface LogOptions {
  /** At most this many commits. */
  limit?: number;
  /** Follow only first parents (the default), or every parent in generation order. */
  firstParent?: boolean;
}

export interface RepositoryContext {
  engine: MetadataEngine;
  store: ObjectStore;
  info: RepositoryInfo;
  partition: string;
  now: () => Date;
}

const MAX_RETRIES = 50;
/** Bodies up to this size are hashed in memory and written once at their final address. */
const INLINE_UPLOAD_BYTES = 8 * 1024 * 1024;
const CONFLICT_REPORT_LIMIT = 1000;

export const dataKey = (sha256: string): string =>
  `data/${sha256.slice(0, 2)}/${sha256.slice(2, 4)}/${sha256}`;
export const newToken = (): string => randomBytes(10).toString("hex");
const branchKey = (name: string) => `branch/${name}`;
const tagKey = (name: string) => `tag/${name}`;
const commitKey = (id: string) => `commit/${id}`;

/** Computes a commit id: the SHA-256 of the commit's canonical JSON. */
export function commitId(record: Omit<CommitRecord, "version"> & { version?: 1 }): string {
  return sha256Hex(canonicalJson({ ...record, version: 1 }));
}

type View = { commitId: string; tokens: string[]; branch?: string };

/**
 * One repository: branches, objects, commits, merges and tags. Every change is made by compare-and-swap on
 * the engine, so any number of processes may work on the same repository at once.
 */
export class Repository {
  readonly info: RepositoryInfo;
  readonly trees: TreeStore;
  readonly #engine: MetadataEngine;
  readonly #store: ObjectStore;
  readonly #p: string;
  readonly #now: () => Date;

  constructor(ctx: RepositoryContext) {
    this.info = ctx.info;
    this.#engine = ctx.engine;
    this.#store = ctx.store;
    this.#p = ctx.partition;
    this.#now = ctx.now;
    this.trees = new TreeStore(ctx.store);
  }

  get name(): string {
    return this.info.name;
  }

  /** The object store of the repository's storage namespace. */
  get store(): ObjectStore {
    return this.#store;
  }

  // ---- branches ----------------------------------------------------------------------------------------

  async createBranch(name: string, source: string): Promise<Branch> {
    validateRefName(name, "branch");
    const { commitId } = await this.resolveRef(source);
    return this.createBranchAt(name, commitId);
  }

  /** Creates a branch at a commit id known to exist (restores use this). */
  async createBranchAt(name: string, commitId: string): Promise<Branch> {
    validateRefName(name, "branch");
    await this.getCommit(commitId);
    const record: BranchRecord = { commitId, stagingToken: newToken(), sealedTokens: [] };
    if (!(await this.#engine.setIf(this.#p, branchKey(name), encodeJson(record), null))) {
      throw new AlreadyExistsError(`Branch "${name}" already exists in repository "${this.name}".`);
    }
    return { name, commitId };
  }

  /**
   * Points an existing branch at `commitId`, as a restore over an existing repository does. Refuses a branch
   * with uncommitted changes (they would be lost), and a commit the repository does not hold.
   */
  async setBranchHead(name: string, commitId: string): Promise<Branch> {
    await this.getCommit(commitId);
    for (let attempt = 0; attempt < MAX_RETRIES; attempt++) {
      const { record, bytes } = await this.#readBranch(name);
      if (await this.hasUncommitted(name)) {
        throw new PreconditionFailedError(
          `Branch "${name}" of repository "${this.name}" has uncommitted changes; commit or reset them first.`,
        );
      }
      const next: BranchRecord = { commitId, stagingToken: newToken(), sealedTokens: [] };
      if (await this.#engine.setIf(this.#p, branchKey(name), encodeJson(next), bytes)) {
        await this.#dropTokens([record.stagingToken, ...record.sealedTokens]);
        return { name, commitId };
      }
    }
    throw this.#busy(name);
  }

  async getBranch(name: string): Promise<Branch> {
    const { record } = await this.#readBranch(name);
    return { name, commitId: record.commitId };
  }

  async *listBranches(options: { after?: string } = {}): AsyncGenerator<Branch> {
    const scan = this.#engine.scan(this.#p, {
      prefix: "branch/",
      ...(options.after !== undefined ? { after: branchKey(options.after) } : {}),
    });
    for await (const { key, value } of scan) {
      const record = decodeJson<BranchRecord>(value, `${this.#p}/${key}`);
      yield { name: key.slice("branch/".length), commitId: record.commitId };
    }
  }

  async deleteBranch(name: string): Promise<void> {
    if (name === this.info.defaultBranch) {
      throw new PreconditionFailedError(
        `Branch "${name}" is the default branch of repository "${this.name}" and cannot be deleted.`,
      );
    }
    const { record } = await this.#readBranch(name);
    await this.#engine.delete(this.#p, branchKey(name));
    await this.#dropTokens([record.stagingToken, ...record.sealedTokens]);
  }

  /** Drops every uncommitted change of a branch. */
  async resetBranch(name: string): Promise<void> {
    for (let attempt = 0; attempt < MAX_RETRIES; attempt++) {
      const { record, bytes } = await this.#readBranch(name);
      const next: BranchRecord = { commitId: record.commitId, stagingToken: newToken(), sealedTokens: [] };
      if (await this.#engine.setIf(this.#p, branchKey(name), encodeJson(next), bytes)) {
        await this.#dropTokens([record.stagingToken, ...record.sealedTokens]);
        return;
      }
    }
    throw this.#busy(name);
  }

  // ---- objects -----------------------------------------------------------------------------------------

  /**
   * Uploads an object to a branch's staging area. The body is streamed; its size and SHA-256 are computed on
   * the way, and its bytes land at a content-addressed key of the storage namespace.
   */
  async upload(branch: string, path: string, body: PutBody, options: UploadOptions = {}): Promise<Entry> {
    validatePath(path);
    await this.#readBranch(branch);
    const metadata = checkMetadata(options.metadata);
    const { sha256, size } = await this.#writeData(body, path, options.reopen);
    const entry: Entry = {
      path,
      address: dataKey(sha256),
      size,
      sha256,
      contentType: options.contentType ?? "application/octet-stream",
      mtime: this.#now().toISOString(),
      metadata,
    };
    await this.#stage(branch, path, { entry });
    return entry;
  }

  /**
   * Uploads many objects to a branch: their bytes are written `concurrency` at a time, then all of them are
   * staged in one engine batch. The fast path for directories of many small files. Nothing is staged when any
   * body fails (bytes already written stay in the namespace, unreferenced, as after an interrupted upload).
   */
  async uploadMany(
    branch: string,
    files: ReadonlyArray<{ path: string; body: PutBody } & UploadOptions>,
    options: { concurrency?: number } = {},
  ): Promise<Entry[]> {
    for (const f of files) validatePath(f.path);
    await this.#readBranch(branch);
    const limit = pLimit(options.concurrency ?? 8);
    const entries = await Promise.all(
      files.map((f) =>
        limit(async (): Promise<Entry> => {
          const metadata = checkMetadata(f.metadata);
          const { sha256, size } = await this.#writeData(f.body, f.path, f.reopen);
          return {
            path: f.path,
            address: dataKey(sha256),
            size,
            sha256,
            contentType: f.contentType ?? "application/octet-stream",
            mtime: this.#now().toISOString(),
            metadata,
          };
        }),
      ),
    );
    await this.stageEntries(branch, entries);
    return entries;
  }

  /** Stages entries whose bytes are already in the storage namespace, in one engine batch. */
  async stageEntries(branch: string, entries: readonly Entry[]): Promise<void> {
    for (const e of entries) validatePath(e.path);
    for (let attempt = 0; attempt < MAX_RETRIES; attempt++) {
      const before = await this.#readBranch(branch);
      const token = before.record.stagingToken;
      await this.#engine.writeBatch(
        entries.map((entry) => ({
          partition: this.#p,
          key: stagedKey(token, entry.path),
          value: encodeJson({ entry }),
        })),
      );
      const after = await this.#readBranch(branch);
      if (after.record.stagingToken === token) return;
    }
    throw this.#busy(branch);
  }

  /** Stages an entry whose bytes are already in the storage namespace (restores and imports use this). */
  async stageEntry(branch: string, entry: Entry): Promise<void> {
    validatePath(entry.path);
    await this.#stage(branch, entry.path, { entry });
  }

  /** Stages the deletion of `path`; `NOT_FOUND` when the branch does not have it. */
  async deleteObject(branch: string, path: string): Promise<void> {
    validatePath(path);
    await this.stat(branch, path);
    await this.#stage(branch, path, { deleted: true, path });
  }

  /** The entry at `path` of `ref`; on a branch, uncommitted changes included. */
  async stat(ref: string, path: string): Promise<Entry> {
    validatePath(path);
    const view = await this.#view(ref);
    for (const token of view.tokens) {
      const raw = await this.#engine.get(this.#p, stagedKey(token, path));
      if (raw) {
        const v = decodeJson<StagedValue>(raw, `${this.#p}/${stagedKey(token, path)}`);
        if ("entry" in v) return v.entry;
        throw this.#noObject(ref, path);
      }
    }
    const commit = await this.getCommit(view.commitId);
    const entry = await lookup(this.trees, await this.trees.readMetarange(commit.metarangeId), path);
    if (!entry) throw this.#noObject(ref, path);
    return entry;
  }

  /**
   * Streams the bytes of `path` at `ref`, or of a byte range of it (`end` inclusive). `verify: false` tells the
   * store that the caller checks the bytes against the entry's SHA-256 itself (see `GetOptions.verify`).
   */
  async read(
    ref: string,
    path: string,
    options: { range?: { start: number; end?: number }; verify?: boolean } = {},
  ): Promise<{ entry: Entry; body: Readable }> {
    const entry = await this.stat(ref, path);
    const range = options.range;
    if (range) {
      const { start, end } = range;
      if (
        !Number.isInteger(start) ||
        start < 0 ||
        (end !== undefined && (!Number.isInteger(end) || end < start))
      ) {
        throw new InvalidArgumentError(`Invalid byte range ${start}-${end ?? ""} for ${path}.`);
      }
      if (entry.size === 0 || start >= entry.size) {
        throw new InvalidArgumentError(
          `Byte range ${start}-${end ?? ""} starts beyond the end of ${path} (${entry.size} bytes).`,
        );
      }
    }
    try {
      const reader = await this.#store.get(entry.address, {
        ...(range && { range }),
        ...(options.verify === false && { verify: false }),
      });
      return { entry, body: reader.body };
    } catch (e) {
      if (hasCode(e, "NOT_FOUND")) {
        throw new CorruptError(
          `The data of ${path} (${entry.address}) is missing from the storage namespace ${this.#store.url}.`,
          { cause: e },
        );
      }
      throw e;
    }
  }

  /** Every entry of `ref` under `prefix`, in path order, streamed. */
  walk(ref: string, options: { prefix?: string; after?: string } = {}): AsyncIterableIterator<Entry> {
    return flattenPages(this.walkPages(ref, options));
  }

  /** Like {@link walk}, a page of entries at a time (typically one committed range): the fastest way to read a tree. */
  async *walkPages(ref: string, options: { prefix?: string; after?: string } = {}): AsyncGenerator<Entry[]> {
    validatePrefix(options.prefix ?? "");
    const view = await this.#liveView(ref);
    if (view.tokens.length === 0) {
      yield* iterateTreePages(this.trees, await this.#metarangeOf(view.commitId), options);
      return;
    }
    const live = async function* (changes: AsyncIterable<Change>) {
      for await (const c of changes) if (c.entry) yield c.entry;
    };
    yield* paginate(live(await this.#changes(view, options)), 512);
  }

  /** One page of a listing, with S3-like `delimiter` grouping. */
  async list(ref: string, options: ListOptions = {}): Promise<ListPage> {
    const prefix = validatePrefix(options.prefix ?? "");
    const limit = options.limit ?? 1000;
    if (!Number.isInteger(limit) || limit < 1) throw new InvalidArgumentError(`Invalid list limit ${limit}.`);
    const delimiter = options.delimiter || undefined;
    const view = await this.#liveView(ref);
    const entries: Entry[] = [];
    const commonPrefixes: string[] = [];
    let after = options.after;
    let group: string | undefined;
    if (delimiter && after?.endsWith(delimiter)) {
      group = after;
      after = `${after}\u{10FFFF}`;
    }
    let count = 0;
    let last: string | undefined;
    restart: for (;;) {
      for await (const change of await this.#changes(view, {
        prefix,
        ...(after !== undefined ? { after } : {}),
      })) {
        if (!change.entry) continue;
        const path = change.path;
        if (group && path.startsWith(group)) continue;
        if (count === limit) return { entries, commonPrefixes, next: last! };
        if (delimiter) {
          const at = path.indexOf(delimiter, prefix.length);
          if (at >= 0) {
            group = path.slice(0, at + delimiter.length);
            commonPrefixes.push(group);
            count++;
            last = group;
            // Skip the group's paths without reading them one by one.
            after = `${group}\u{10FFFF}`;
            continue restart;
          }
        }
        entries.push(change.entry);
        count++;
        last = path;
      }
      return { entries, commonPrefixes };
    }
  }

  // ---- commits -----------------------------------------------------------------------------------------

  async commit(branch: string, options: CommitOptions): Promise<Commit> {
    const message = options.message;
    if (typeof message !== "string" || message.trim() === "") {
      throw new InvalidArgumentError("A commit needs a non-empty message.");
    }
    const metadata = checkMetadata(options.metadata);
    // Seal: new writes go to a fresh token, while this commit turns the sealed ones into a tree.
    let sealed: BranchRecord | undefined;
    let sealedBytes: Uint8Array | undefined;
    for (let attempt = 0; attempt < MAX_RETRIES && !sealed; attempt++) {
      const { record, bytes } = await this.#readBranch(branch);
      const next: BranchRecord = {
        commitId: record.commitId,
        stagingToken: newToken(),
        sealedTokens: [record.stagingToken, ...record.sealedTokens],
      };
      const nextBytes = encodeJson(next);
      if (await this.#engine.setIf(this.#p, branchKey(branch), nextBytes, bytes)) {
        sealed = next;
        sealedBytes = nextBytes;
      }
    }
    if (!sealed || !sealedBytes) throw this.#busy(branch);

    const parent = await this.getCommit(sealed.commitId);
    const base = await this.trees.readMetarange(parent.metarangeId);
    const changes = mergeChanges(sealed.sealedTokens.map((t) => scanStaging(this.#engine, this.#p, t)));
    const { metarange } = await applyChanges(this.trees, base, changes);

    if (metarange.id === base.id && !options.allowEmpty) {
      // The sealed changes change nothing: drop them, so the branch is clean again.
      const clean: BranchRecord = { ...sealed, sealedTokens: [] };
      if (await this.#engine.setIf(this.#p, branchKey(branch), encodeJson(clean), sealedBytes)) {
        await this.#dropTokens(sealed.sealedTokens);
      }
      throw new PreconditionFailedError(
        `Nothing to commit on branch "${branch}": it has no uncommitted changes.`,
      );
    }

    const commit = await this.#writeCommit({
      parents: [parent.id],
      metarangeId: metarange.id,
      message,
      author: options.author ?? "",
      metadata,
      generation: parent.generation + 1,
    });
    const done: BranchRecord = { commitId: commit.id, stagingToken: sealed.stagingToken, sealedTokens: [] };
    if (!(await this.#engine.setIf(this.#p, branchKey(branch), encodeJson(done), sealedBytes))) {
      throw new ConflictError(
        `Branch "${branch}" was changed by another commit, merge or reset while committing; nothing was lost, retry the commit.`,
      );
    }
    await this.#dropTokens(sealed.sealedTokens);
    return commit;
  }

  /**
   * Commits `changes` (sorted by path in byte order, one per path) straight onto a branch's commit, without
   * staging them: the bulk path for imports of many entries whose bytes are already in the namespace. The
   * branch's uncommitted changes stay uncommitted. `CONFLICT` when the branch moved meanwhile.
   */
  async importChanges(
    branch: string,
    changes: AsyncIterable<Change>,
    options: CommitOptions,
  ): Promise<Commit> {
    if (typeof options.message !== "string" || options.message.trim() === "") {
      throw new InvalidArgumentError("A commit needs a non-empty message.");
    }
    const metadata = checkMetadata(options.metadata);
    const { record, bytes } = await this.#readBranch(branch);
    const parent = await this.getCommit(record.commitId);
    const base = await this.trees.readMetarange(parent.metarangeId);
    const checked = async function* () {
      for await (const c of changes) {
        validatePath(c.path);
        if (c.entry && c.entry.path !== c.path) {
          throw new InvalidArgumentError(`Change for ${c.path} carries an entry for ${c.entry.path}.`);
        }
        yield c;
      }
    };
    const { metarange } = await applyChanges(this.trees, base, checked());
    if (metarange.id === base.id && !options.allowEmpty) {
      throw new PreconditionFailedError(
        `Nothing to commit on branch "${branch}": the import changes nothing.`,
      );
    }
    const commit = await this.#writeCommit({
      parents: [parent.id],
      metarangeId: metarange.id,
      message: options.message,
      author: options.author ?? "",
      metadata,
      generation: parent.generation + 1,
    });
    if (
      !(await this.#engine.setIf(
        this.#p,
        branchKey(branch),
        encodeJson({ ...record, commitId: commit.id }),
        bytes,
      ))
    ) {
      throw new ConflictError(`Branch "${branch}" moved while importing; retry the import.`);
    }
    return commit;
  }

  async getCommit(id: string): Promise<Commit> {
    const raw = await this.#engine.get(this.#p, commitKey(id));
    if (!raw) throw new NotFoundError(`Commit ${id} not found in repository "${this.name}".`);
    const r = decodeJson<CommitRecord>(raw, `${this.#p}/${commitKey(id)}`);
    return {
      id,
      parents: r.parents,
      metarangeId: r.metarangeId,
      message: r.message,
      author: r.author,
      metadata: r.metadata,
      createdAt: r.createdAt,
      generation: r.generation,
    };
  }

  /** Commits reachable from `ref`, newest first: first parents only by default. */
  async *log(ref: string, options: LogOptions = {}): AsyncGenerator<Commit> {
    const limit = options.limit ?? Number.POSITIVE_INFINITY;
    const { commitId } = await this.resolveRef(ref);
    let n = 0;
    if (options.firstParent !== false) {
      let id: string | undefined = commitId;
      while (id && n++ < limit) {
        const c = await this.getCommit(id);
        yield c;
        id = c.parents[0];
      }
      return;
    }
    // Every parent: highest generation first (then newest), each commit once.
    const seen = new Set<string>([commitId]);
    const queue: Commit[] = [await this.getCommit(commitId)];
    while (queue.length > 0 && n++ < limit) {
      queue.sort((a, b) => a.generation - b.generation || a.createdAt.localeCompare(b.createdAt));
      const c = queue.pop()!;
      yield c;
      for (const p of c.parents) {
        if (!seen.has(p)) {
          seen.add(p);
          queue.push(await this.getCommit(p));
        }
      }
    }
  }

  /** Differences from `left` to `right` (two refs), in path order, streamed. */
  async *diff(left: string, right: string, options: { prefix?: string } = {}): AsyncGenerator<DiffEntry> {
    const l = await this.#view(left);
    const r = await this.#view(right);
    if (l.tokens.length === 0 && r.tokens.length === 0) {
      yield* diffTrees(
        this.trees,
        await this.#metarangeOf(l.commitId),
        await this.#metarangeOf(r.commitId),
        options,
      );
      return;
    }
    // A side with uncommitted changes: compare the two merged views path by path.
    const lc = await this.#changes(l, options);
    const rc = await this.#changes(r, options);
    yield* diffChangeStreams(lc, rc);
  }

  /** A branch's uncommitted changes against its commit, streamed. */
  async *diffUncommitted(branch: string, options: { prefix?: string } = {}): AsyncGenerator<DiffEntry> {
    const { record } = await this.#readBranch(branch);
    const base = await this.#metarangeOf(record.commitId);
    const tokens = [record.stagingToken, ...record.sealedTokens];
    const staged = mergeChanges(tokens.map((t) => scanStaging(this.#engine, this.#p, t, options)));
    for await (const change of staged) {
      const old = await lookup(this.trees, base, change.path);
      if (change.entry && !old) yield { path: change.path, type: "added", right: change.entry };
      else if (!change.entry && old) yield { path: change.path, type: "removed", left: old };
      else if (change.entry && old && !sameEntry(old, change.entry)) {
        yield { path: change.path, type: "changed", left: old, right: change.entry };
      }
    }
  }

  /** Whether a branch has uncommitted changes (staged entries that differ from its commit). */
  async hasUncommitted(branch: string): Promise<boolean> {
    for await (const _ of this.diffUncommitted(branch)) return true;
    return false;
  }

  /**
   * Merges `source` (any ref) into branch `destination`: fast-forward when the destination is an ancestor of
   * the source, else a three-way merge against the merge base with a merge commit. Paths both sides changed
   * differently are a conflict (listed in the error) unless a strategy settles them.
   */
  async merge(source: string, destination: string, options: MergeOptions = {}): Promise<MergeResult> {
    const strategy = options.strategy;
    if (strategy !== undefined && strategy !== "source-wins" && strategy !== "dest-wins") {
      throw new InvalidArgumentError(
        `Unknown merge strategy "${strategy}"; use "source-wins" or "dest-wins".`,
      );
    }
    const metadata = checkMetadata(options.metadata);
    for (let attempt = 0; attempt < MAX_RETRIES; attempt++) {
      const { commitId: sourceId } = await this.resolveRef(source);
      const { record, bytes } = await this.#readBranch(destination);
      if (await this.hasUncommitted(destination)) {
        throw new PreconditionFailedError(
          `Branch "${destination}" has uncommitted changes; commit or reset them before merging into it.`,
        );
      }
      const destId = record.commitId;
      const baseId = await this.mergeBase(sourceId, destId);
      if (baseId === sourceId) return { commitId: destId, fastForward: false, upToDate: true, changes: 0 };
      if (baseId === destId) {
        const next: BranchRecord = { ...record, commitId: sourceId };
        if (await this.#engine.setIf(this.#p, branchKey(destination), encodeJson(next), bytes)) {
          let changes = 0;
          for await (const _ of diffTrees(
            this.trees,
            await this.#metarangeOf(destId),
            await this.#metarangeOf(sourceId),
          ))
            changes++;
          return { commitId: sourceId, fastForward: true, upToDate: false, changes };
        }
        continue;
      }
      const [base, src, dst] = await Promise.all([
        baseId ? this.#metarangeOf(baseId) : { id: "", ranges: [] },
        this.#metarangeOf(sourceId),
        this.#metarangeOf(destId),
      ]);
      // First pass: find conflicts without writing anything.
      const conflicts: string[] = [];
      let conflictCount = 0;
      let changes = 0;
      for await (const step of mergeSteps(this.trees, base, src, dst, strategy)) {
        if ("conflict" in step) {
          conflictCount++;
          if (conflicts.length < CONFLICT_REPORT_LIMIT) conflicts.push(step.conflict);
        } else changes++;
      }
      if (conflictCount > 0) {
        const shown = conflicts.slice(0, 10).join(", ");
        const more = conflictCount > 10 ? ` and ${conflictCount - 10} more` : "";
        throw new ConflictError(
          `Merging ${source} into ${destination} conflicts on ${conflictCount} path(s): ${shown}${more}; choose a strategy (source-wins or dest-wins) or resolve them on a branch.`,
          { paths: conflicts },
        );
      }
      const trees = this.trees;
      const applied = async function* () {
        for await (const step of mergeSteps(trees, base, src, dst, strategy))
          if (!("conflict" in step)) yield step;
      };
      const { metarange } = await applyChanges(this.trees, dst, applied());
      const commit = await this.#writeCommit({
        parents: [destId, sourceId],
        metarangeId: metarange.id,
        message: options.message ?? `Merge ${source} into ${destination}`,
        author: options.author ?? "",
        metadata,
        generation:
          Math.max((await this.getCommit(destId)).generation, (await this.getCommit(sourceId)).generation) +
          1,
      });
      const next: BranchRecord = { ...record, commitId: commit.id };
      if (await this.#engine.setIf(this.#p, branchKey(destination), encodeJson(next), bytes)) {
        return { commitId: commit.id, fastForward: false, upToDate: false, changes };
      }
    }
    throw this.#busy(destination);
  }

  /** The best common ancestor of two commits (highest generation), or `undefined` when they share none. */
  async mergeBase(a: string, b: string): Promise<string | undefined> {
    if (a === b) return a;
    const flags = new Map<string, number>();
    const commits = new Map<string, Commit>();
    const queue: Commit[] = [];
    const visit = async (id: string, flag: number) => {
      const had = flags.get(id) ?? 0;
      if ((had | flag) === had) return;
      flags.set(id, had | flag);
      let c = commits.get(id);
      if (!c) {
        c = await this.getCommit(id);
        commits.set(id, c);
      }
      queue.push(c);
    };
    await visit(a, 1);
    await visit(b, 2);
    while (queue.length > 0) {
      queue.sort((x, y) => x.generation - y.generation);
      const c = queue.pop()!;
      const f = flags.get(c.id)!;
      if (f === 3) return c.id;
      for (const p of c.parents) await visit(p, f);
    }
    return undefined;
  }

  // ---- tags --------------------------------------------------------------------------------------------

  async createTag(name: string, ref: string): Promise<Tag> {
    validateRefName(name, "tag");
    const { commitId } = await this.resolveRef(ref);
    return this.createTagAt(name, commitId);
  }

  async createTagAt(name: string, commitId: string): Promise<Tag> {
    validateRefName(name, "tag");
    await this.getCommit(commitId);
    if (!(await this.#engine.setIf(this.#p, tagKey(name), encodeJson({ commitId }), null))) {
      throw new AlreadyExistsError(`Tag "${name}" already exists in repository "${this.name}".`);
    }
    return { name, commitId };
  }

  /** Creates tag `name` at `commitId`, or moves it there (a restore over an existing repository). */
  async setTag(name: string, commitId: string): Promise<Tag> {
    validateRefName(name, "tag");
    await this.getCommit(commitId);
    await this.#engine.set(this.#p, tagKey(name), encodeJson({ commitId }));
    return { name, commitId };
  }

  /**
   * Adds commits given as `{ id, ...record }` (a refs manifest's commit records) that the repository lacks. Each
   * id must be the SHA-256 of its record, so a commit is never stored under a name that is not its own.
   */
  async importCommits(commits: Iterable<Record<string, unknown>>): Promise<number> {
    let added = 0;
    for (const { id, type: _t, repository: _r, ...fields } of commits) {
      const record = fields as unknown as CommitRecord;
      if (typeof id !== "string" || commitId(record) !== id) {
        throw new CorruptError(`The commit ${String(id)} does not match its content; it is not imported.`);
      }
      if (await this.#engine.setIf(this.#p, commitKey(id), encodeJson({ ...record, version: 1 }), null))
        added++;
    }
    return added;
  }

  async getTag(name: string): Promise<Tag> {
    const raw = await this.#engine.get(this.#p, tagKey(name));
    if (!raw) throw new NotFoundError(`Tag "${name}" not found in repository "${this.name}".`);
    return { name, commitId: decodeJson<{ commitId: string }>(raw, `${this.#p}/${tagKey(name)}`).commitId };
  }

  async *listTags(options: { after?: string } = {}): AsyncGenerator<Tag> {
    const scan = this.#engine.scan(this.#p, {
      prefix: "tag/",
      ...(options.after !== undefined ? { after: tagKey(options.after) } : {}),
    });
    for await (const { key, value } of scan) {
      yield {
        name: key.slice(4),
        commitId: decodeJson<{ commitId: string }>(value, `${this.#p}/${key}`).commitId,
      };
    }
  }

  async deleteTag(name: string): Promise<void> {
    await this.getTag(name);
    await this.#engine.delete(this.#p, tagKey(name));
  }

  // ---- refs --------------------------------------------------------------------------------------------

  /**
   * Resolves a ref: a branch, a tag, a full commit id or a unique prefix of at least 7 hex digits, each
   * optionally followed by `~N` (N-th first-parent ancestor) and `^N` (N-th parent) steps.
   */
  async resolveRef(ref: string): Promise<{ commitId: string; branch?: string }> {
    const m = /^([^~^]+)((?:[~^][0-9]*)*)$/.exec(ref);
    if (!m) throw new InvalidArgumentError(`Invalid ref "${ref}".`);
    const name = m[1]!;
    const steps = m[2]!;
    let commitId: string | undefined;
    let branch: string | undefined;
    const branchRaw = await this.#engine.get(this.#p, branchKey(name));
    if (branchRaw) {
      commitId = decodeJson<BranchRecord>(branchRaw, `${this.#p}/${branchKey(name)}`).commitId;
      branch = name;
    } else {
      const tagRaw = await this.#engine.get(this.#p, tagKey(name));
      if (tagRaw) commitId = decodeJson<{ commitId: string }>(tagRaw, `${this.#p}/${tagKey(name)}`).commitId;
      else if (/^[0-9a-f]{64}$/.test(name)) commitId = name;
      else if (/^[0-9a-f]{7,63}$/.test(name)) {
        const found: string[] = [];
        for await (const { key } of this.#engine.scan(this.#p, { prefix: commitKey(name), limit: 2 })) {
          found.push(key.slice("commit/".length));
        }
        if (found.length > 1) {
          throw new InvalidArgumentError(
            `Commit id prefix "${name}" is ambiguous in repository "${this.name}".`,
          );
        }
        commitId = found[0];
      }
    }
    if (!commitId) {
      throw new NotFoundError(
        `Ref "${name}" not found in repository "${this.name}" (no such branch, tag or commit).`,
      );
    }
    if (!steps) {
      await this.getCommit(commitId);
      return branch ? { commitId, branch } : { commitId };
    }
    for (const step of steps.match(/[~^][0-9]*/g) ?? []) {
      const n = step.length > 1 ? Number(step.slice(1)) : 1;
      if (step[0] === "~") {
        for (let i = 0; i < n; i++) {
          const c = await this.getCommit(commitId);
          if (!c.parents[0]) throw new NotFoundError(`Ref "${ref}" goes back beyond the first commit.`);
          commitId = c.parents[0];
        }
      } else if (n > 0) {
        const c = await this.getCommit(commitId);
        const p = c.parents[n - 1];
        if (!p) throw new NotFoundError(`Ref "${ref}": commit ${commitId.slice(0, 12)} has no parent ${n}.`);
        commitId = p;
      }
    }
    await this.getCommit(commitId);
    return { commitId };
  }

  // ---- internals ---------------------------------------------------------------------------------------

  async #readBranch(name: string): Promise<{ record: BranchRecord; bytes: Uint8Array }> {
    const bytes = await this.#engine.get(this.#p, branchKey(name));
    if (!bytes) {
      if (await this.#engine.get(this.#p, tagKey(name))) {
        throw new NotFoundError(
          `"${name}" is a tag of repository "${this.name}", not a branch; writes go to branches.`,
        );
      }
      throw new NotFoundError(`Branch "${name}" not found in repository "${this.name}".`);
    }
    return { record: decodeJson<BranchRecord>(bytes, `${this.#p}/${branchKey(name)}`), bytes };
  }

  /**
   * Writes a staged value under the branch's current token, then checks the token did not change meanwhile.
   * If a commit sealed it in between, the commit may have missed the write, so it is written again under the
   * new token: a staged write is never lost (the protocol of lakeFS's graveler).
   */
  async #stage(branch: string, path: string, value: StagedValue): Promise<void> {
    const bytes = encodeJson(value);
    for (let attempt = 0; attempt < MAX_RETRIES; attempt++) {
      const before = await this.#readBranch(branch);
      await this.#engine.set(this.#p, stagedKey(before.record.stagingToken, path), bytes);
      const after = await this.#readBranch(branch);
      if (after.record.stagingToken === before.record.stagingToken) return;
    }
    throw this.#busy(branch);
  }

  async #view(ref: string): Promise<View> {
    if (!/[~^]/.test(ref)) {
      const raw = await this.#engine.get(this.#p, branchKey(ref));
      if (raw) {
        const r = decodeJson<BranchRecord>(raw, `${this.#p}/${branchKey(ref)}`);
        return { commitId: r.commitId, tokens: [r.stagingToken, ...r.sealedTokens], branch: ref };
      }
    }
    return { commitId: (await this.resolveRef(ref)).commitId, tokens: [] };
  }

  /** The view of `ref` without the staging tokens that hold nothing, so clean branches read at tree speed. */
  async #liveView(ref: string): Promise<View> {
    const view = await this.#view(ref);
    const live: string[] = [];
    for (const token of view.tokens) {
      for await (const _ of this.#engine.scan(this.#p, { prefix: `staged/${token}/`, limit: 1 }))
        live.push(token);
    }
    return { ...view, tokens: live };
  }

  async #changes(view: View, options: { prefix?: string; after?: string }): Promise<AsyncIterable<Change>> {
    const metarange = await this.#metarangeOf(view.commitId);
    const tree = entriesAsChanges(iterateTree(this.trees, metarange, options));
    if (view.tokens.length === 0) return tree;
    return mergeChanges([...view.tokens.map((t) => scanStaging(this.#engine, this.#p, t, options)), tree]);
  }

  async #metarangeOf(commitId: string): Promise<Metarange> {
    const commit = await this.getCommit(commitId);
    return this.trees.readMetarange(commit.metarangeId);
  }

  async #writeCommit(fields: Omit<CommitRecord, "version" | "createdAt">): Promise<Commit> {
    const record: CommitRecord = { version: 1, ...fields, createdAt: this.#now().toISOString() };
    const id = commitId(record);
    await this.#engine.setIf(this.#p, commitKey(id), encodeJson(record), null);
    return { id, ...fields, createdAt: record.createdAt };
  }

  /** Streams `body` into the namespace at its content address and returns its digest and size. */
  async #writeData(
    body: PutBody,
    path: string,
    reopen?: UploadOptions["reopen"],
  ): Promise<{ sha256: string; size: number }> {
    const hash = createHash("sha256");
    let size = 0;
    if (body instanceof Uint8Array) {
      hash.update(body);
      const sha256 = hash.digest("hex");
      await this.#putData(sha256, body);
      return { sha256, size: body.length };
    }
    const it = (body as AsyncIterable<Uint8Array>)[Symbol.asyncIterator]();
    const head: Uint8Array[] = [];
    let ended = false;
    while (size <= INLINE_UPLOAD_BYTES) {
      const r = await it.next();
      if (r.done) {
        ended = true;
        break;
      }
      const chunk = typeof r.value === "string" ? Buffer.from(r.value) : r.value;
      hash.update(chunk);
      size += chunk.length;
      head.push(chunk);
    }
    if (ended) {
      const sha256 = hash.digest("hex");
      await this.#putData(sha256, Buffer.concat(head));
      return { sha256, size };
    }
    if (reopen) {
      // Large, and readable twice: hashed to its end first, then written once where it belongs.
      for (let r = await it.next(); !r.done; r = await it.next()) {
        const chunk = typeof r.value === "string" ? Buffer.from(r.value) : r.value;
        hash.update(chunk);
        size += chunk.length;
      }
      const sha256 = hash.digest("hex");
      await this.#putReopened(sha256, size, path, reopen);
      return { sha256, size };
    }
    // Large, readable once: streamed to a temporary key while hashing, then copied to the content address.
    const tmp = `_cairn/tmp/${newToken()}`;
    async function* rest() {
      for (const c of head) yield c;
      for (let r = await it.next(); !r.done; r = await it.next()) {
        const chunk = typeof r.value === "string" ? Buffer.from(r.value) : r.value;
        hash.update(chunk);
        size += chunk.length;
        yield chunk;
      }
    }
    try {
      await this.#store.put(tmp, Readable.from(rest()));
      const sha256 = hash.digest("hex");
      try {
        await this.#store.copy(tmp, dataKey(sha256), { createOnly: true });
      } catch (e) {
        if (!hasCode(e, "ALREADY_EXISTS")) throw e;
      }
      return { sha256, size };
    } finally {
      await this.#store.delete(tmp).catch(() => {});
    }
  }

  /**
   * Writes the bytes `reopen` reads at the address of `sha256`, unless an object of `size` bytes is there
   * already. One of another size there is the remains of a failed write on a service that keeps what it
   * received (s3rver): it is overwritten, which is safe at a content address, where every writer writes the
   * same bytes.
   */
  async #putReopened(
    sha256: string,
    size: number,
    path: string,
    reopen: NonNullable<UploadOptions["reopen"]>,
  ) {
    const key = dataKey(sha256);
    if ((await this.#store.head(key))?.size === size) return;
    // Checked against the first read: a body that changed in between fails before its last bytes are sent.
    const again = () =>
      pipeline(
        reopen(),
        digestChecked(
          "sha256",
          sha256,
          () =>
            new ConflictError(
              `The body of "${path}" changed while it was uploaded: a second read of it differs from the first. Nothing was staged; upload it again.`,
            ),
        ),
        () => {},
      );
    await this.#store.put(key, again(), { size, reopen: again });
  }

  async #putData(sha256: string, bytes: Uint8Array): Promise<void> {
    try {
      await this.#store.put(dataKey(sha256), bytes, { createOnly: true, size: bytes.length });
    } catch (e) {
      // Content-addressed: the object is there already with these bytes.
      if (!hasCode(e, "ALREADY_EXISTS")) throw e;
    }
  }

  async #dropTokens(tokens: string[]): Promise<void> {
    for (const token of tokens) await clearKeys(this.#engine, this.#p, `staged/${token}/`);
  }

  #noObject(ref: string, path: string): NotFoundError {
    return new NotFoundError(`No object at path "${path}" on ref "${ref}" of repository "${this.name}".`);
  }

  #busy(branch: string): ConflictError {
    return new ConflictError(
      `Branch "${branch}" kept changing under concurrent writers; retry the operation.`,
    );
  }
}

function checkMetadata(metadata: Record<string, string> | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(metadata ?? {})) {
    if (typeof v !== "string" || k === "") {
      throw new InvalidArgumentError(`Metadata "${k}" must be a non-empty key with a string value.`);
    }
    out[k] = v;
  }
  return out;
}

/** Compares two sorted change streams (entries or tombstones) as a diff from left to right. */
async function* diffChangeStreams(
  left: AsyncIterable<Change>,
  right: AsyncIterable<Change>,
): AsyncGenerator<DiffEntry> {
  const li = left[Symbol.asyncIterator]();
  const ri = right[Symbol.asyncIterator]();
  const nextLive = async (it: AsyncIterator<Change>) => {
    for (;;) {
      const r = await it.next();
      if (r.done) return undefined;
      if (r.value.entry) return r.value.entry;
    }
  };
  let l = await nextLive(li);
  let r = await nextLive(ri);
  while (l || r) {
    const c = !l ? 1 : !r ? -1 : compareKeys(l.path, r.path);
    if (c < 0) {
      yield { path: l!.path, type: "removed", left: l! };
      l = await nextLive(li);
    } else if (c > 0) {
      yield { path: r!.path, type: "added", right: r! };
      r = await nextLive(ri);
    } else {
      if (!sameEntry(l!, r!)) yield { path: l!.path, type: "changed", left: l!, right: r! };
      l = await nextLive(li);
      r = await nextLive(ri);
    }
  }
}

type MergeStep = Change | { conflict: string };

/**
 * Joins diff(base → source) with diff(base → destination): a source change the destination did not make
 * is applied; a path both changed alike is left alone; both changed differently is a conflict, unless the
 * strategy picks a side.
 */
async function* mergeSteps(
  trees: TreeStore,
  base: Metarange,
  source: Metarange,
  dest: Metarange,
  strategy: MergeStrategy | undefined,
): AsyncGenerator<MergeStep> {
  const si = diffTrees(trees, base, source)[Symbol.asyncIterator]();
  const di = diffTrees(trees, base, dest)[Symbol.asyncIterator]();
  let s = (await si.next()).value as DiffEntry | undefined;
  let d = (await di.next()).value as DiffEntry | undefined;
  while (s) {
    const c = d ? compareKeys(s.path, d.path) : -1;
    if (c > 0) {
      d = (await di.next()).value as DiffEntry | undefined;
      continue;
    }
    if (c < 0) {
      yield { path: s.path, entry: s.right ?? null };
    } else {
      const sameResult = s.right && d!.right ? sameEntry(s.right, d!.right) : !s.right && !d!.right;
      if (!sameResult) {
        if (strategy === "source-wins") yield { path: s.path, entry: s.right ?? null };
        else if (strategy !== "dest-wins") yield { conflict: s.path };
      }
      d = (await di.next()).value as DiffEntry | undefined;
    }
    s = (await si.next()).value as DiffEntry | undefined;
  }
}
