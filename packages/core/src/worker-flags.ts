/**
 * The flags of a worker thread: the process's own, unless they hold `--input-type` (of `node --input-type=module
 * -e …`), which stops a worker from starting; flags given explicitly must all be a worker's, so then it gets none.
 */
export function workerFlags(): { execArgv?: string[] } {
  return process.execArgv.some((flag) => flag.startsWith("--input-type")) ? { execArgv: [] } : {};
}
