import type { RepositoryInfo } from "./model.js";

/**
 * Where core keeps its records in the engine (specified in docs/repository-layout.md). Internal: shared by
 * the repository operations and by dump/load, which must agree on the layout.
 */

/** The partition of engine-wide records: repositories and storage-namespace claims. */
export const GLOBAL_PARTITION = "cairn";
export const REPO_PREFIX = "repos/";
export const NAMESPACE_PREFIX = "namespaces/";

export const repoKey = (name: string): string => `${REPO_PREFIX}${name}`;
export const namespaceKey = (namespace: string): string => `${NAMESPACE_PREFIX}${namespace}`;
/** The partition of one repository's branches, tags, commits and staged entries. */
export const partitionOf = (instanceId: string): string => `repo-${instanceId}`;

/** A repository as stored under `repos/<name>`. */
export interface RepositoryRecord extends RepositoryInfo {
  /** Names the repository's engine partition; a new id for each creation, so a deleted name leaves nothing behind. */
  instanceId: string;
}
