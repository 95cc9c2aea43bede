// @ts-check
// Plain JavaScript, with types from JSDoc: a load's worker thread (load-thread.js) imports this module as it is,
// from the source tree under test as from dist, and Node runs no TypeScript in a worker.

/**
 * How `dumpEngine` starts the lines it splices stored values into, and so what a load recognises as such a line.
 * Each is a JSON object's text without its closing brace.
 */

/**
 * `{"type":…,"repository":…`: the start of every line of a repository's section.
 * @param {string} type
 * @param {string} repository
 */
export const lineHead = (type, repository) =>
  `{"type":${JSON.stringify(type)},"repository":${JSON.stringify(repository)}`;

/**
 * A commit's line up to its id: `{"type":"commit","repository":…,"id":`.
 * @param {string} head `lineHead("commit", repository)`
 */
export const commitLineStart = (head) => `${head},"id":`;

/**
 * A staged entry's line up to its path: `{"type":"staged","repository":…,"token":…,"path":`.
 * @param {string} head `lineHead("staged", repository)`
 * @param {string} token
 */
export const stagedLineStart = (head, token) => `${head},"token":${JSON.stringify(token)},"path":`;
