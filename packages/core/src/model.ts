/** One object as a commit or the staging area records it. */
export interface Entry {
  /** Object path within the repository, e.g. `images/cat.png`. */
  path: string;
  /** Where the bytes are, relative to the repository's storage namespace, e.g. `data/ab/cd/abcd…`. */
  address: string;
  size: number;
  /** SHA-256 of the bytes, lower-case hex. */
  sha256: string;
  contentType: string;
  /** When the object was written, ISO 8601 in UTC. */
  mtime: string;
  /** User metadata. */
  metadata: Record<string, string>;
}

/** A change to one path: the new entry, or `null` for a deletion. */
export interface Change {
  path: string;
  entry: Entry | null;
}

export interface Commit {
  id: string;
  parents: string[];
  metarangeId: string;
  message: string;
  author: string;
  metadata: Record<string, string>;
  /** ISO 8601 in UTC. */
  createdAt: string;
  /** 1 for a root commit, else 1 + the highest generation of its parents. */
  generation: number;
}

export interface RepositoryInfo {
  name: string;
  /** URL of the storage namespace that holds the repository's objects and committed trees. */
  namespace: string;
  defaultBranch: string;
  createdAt: string;
  /** True until the repository gets its first branch (created bare, awaiting a refs restore). */
  bare: boolean;
}

export interface Branch {
  name: string;
  commitId: string;
}

export interface Tag {
  name: string;
  commitId: string;
}

export type DiffType = "added" | "removed" | "changed";

export interface DiffEntry {
  path: string;
  type: DiffType;
  /** The entry on the left (old) side; absent for `added`. */
  left?: Entry;
  /** The entry on the right (new) side; absent for `removed`. */
  right?: Entry;
}

/** Two entries describe the same object (the time it was written aside). */
export function sameEntry(a: Entry, b: Entry): boolean {
  if (
    a.address !== b.address ||
    a.size !== b.size ||
    a.sha256 !== b.sha256 ||
    a.contentType !== b.contentType
  ) {
    return false;
  }
  const ka = Object.keys(a.metadata);
  const kb = Object.keys(b.metadata);
  if (ka.length !== kb.length) return false;
  for (const k of ka) if (a.metadata[k] !== b.metadata[k]) return false;
  return true;
}
