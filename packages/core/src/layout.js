// @ts-check
// Plain JavaScript, with types from JSDoc: a load's worker thread (load-thread.js) imports this module as it is,
// from the source tree under test as from dist, and Node runs no TypeScript in a worker.

/**
 * Where core keeps its records in the engine (specified in docs/repository-layout.md). Internal: shared by the
 * repository operations and by dump and load, which must agree on the layout.
 */

/** The partition of engine-wide records: repositories and storage-namespace claims. */
export const GLOBAL_PARTITION = "cairn";
export const REPO_PREFIX = "repos/";
export const NAMESPACE_PREFIX = "namespaces/";

/** @param {string} name */
export const repoKey = (name) => `${REPO_PREFIX}${name}`;
/** @param {string} namespace */
export const namespaceKey = (namespace) => `${NAMESPACE_PREFIX}${namespace}`;
/**
 * The partition of one repository's branches, tags, commits and staged entries.
 * @param {string} instanceId
 */
export const partitionOf = (instanceId) => `repo-${instanceId}`;
