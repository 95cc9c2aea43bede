export * from "./backup/backup.js";
export * from "./backup/layout.js";
export * from "./backup/maintenance.js";
export * from "./backup/meta-backup.js";
export { copyVerified, ensureBackupLocation, readBackupMarker, requireBackup } from "./backup/objects.js";
export * from "./backup/restore.js";
export * from "./backup/retention.js";
export * from "./backup/snapshots.js";
export * from "./byte-budget.js";
export * from "./cairn.js";
export * from "./codec.js";
export * from "./dump.js";
export * from "./engine.js";
export * from "./engine-checks.js";
export * from "./errors.js";
export { FileWriterPool, type WriteFileOptions, type WrittenFile } from "./file-writers.js";
export { chunkStream, digestChecked, fileStream, writeBody } from "./files.js";
export { tuneHeapForStreaming } from "./heap.js";
export { type HttpAnswer, type HttpGetOptions, HttpGets, type HttpGetsOptions } from "./http-gets.js";
export { flattenPages, type ListedPage, type PagesAheadOptions, pagesAhead, paginate } from "./iterate.js";
export * from "./lease.js";
export * from "./load.js";
export * from "./model.js";
export * from "./names.js";
export type { RestoreResult } from "./refs-restore.js";
export * from "./registry.js";
export {
  type BranchRecord,
  type CommitOptions,
  commitId,
  dataKey,
  type ListOptions,
  type ListPage,
  type LogOptions,
  type MergeOptions,
  type MergeResult,
  type MergeStrategy,
  Repository,
  type RepositoryContext,
  type UploadOptions,
} from "./repository.js";
export * from "./store.js";
export { isBoundary } from "./tree/chunking.js";
export { diffTrees } from "./tree/diff.js";
export * from "./tree/format.js";
export { iterateTree, iterateTreePages, lookup } from "./tree/reader.js";
export { TreeStore, type TreeStoreOptions } from "./tree/tree-store.js";
export { type ApplyResult, applyChanges } from "./tree/writer.js";
export * from "./url.js";
