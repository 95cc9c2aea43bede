import type { RepositoryInfo } from "./model.js";

export {
  GLOBAL_PARTITION,
  NAMESPACE_PREFIX,
  namespaceKey,
  partitionOf,
  REPO_PREFIX,
  repoKey,
} from "./layout.js";

/** A repository as stored under `repos/<name>`. */
export interface RepositoryRecord extends RepositoryInfo {
  /** Names the repository's engine partition; a new id for each creation, so a deleted name leaves nothing behind. */
  instanceId: string;
}
