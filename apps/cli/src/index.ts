export { createRegistry } from "./adapters.js";
export { describeError, type ErrorReport, EXIT, UsageError } from "./errors.js";
export { main, processIo } from "./main.js";
export type { Io } from "./output.js";
export { type App, type Ctx, createProgram, VERSION } from "./program.js";
export { DEFAULT_META, metaUrl, Session } from "./session.js";
export {
  type CairnUri,
  expectUri,
  formatUri,
  parseUri,
  refArgument,
  URI_SCHEME,
  type UriShape,
} from "./uri.js";
