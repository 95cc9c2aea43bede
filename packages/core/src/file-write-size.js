// @ts-check
// Plain JavaScript: a file-writing thread (file-writer-thread.js) imports this module as it is, from the source
// tree under test as from dist, as the pool (file-writers.ts) does.

/**
 * The most bytes given to one `write`. Linux (6.x, with ext4's large folios) gives each write a page-cache folio
 * as large as the write, and large folios come from blocks of free memory that a virtual machine's host may have
 * taken back (free page reporting), where each page costs a fault on the host when first filled. Measured on such
 * a machine, writing 256 MiB right after another program's files were removed took 0.07–0.43 s of system CPU in
 * 64 KiB or 256 KiB writes (1 MiB: up to 0.55 s), and 0.08–0.13 s in 32 KiB writes, run after run.
 */
export const WRITE = 32 * 1024;
