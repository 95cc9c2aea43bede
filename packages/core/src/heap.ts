import { setFlagsFromString } from "node:v8";

/**
 * Sets V8's garbage collector for a process that streams bytes, as cairn's own command does. Call it early (a
 * second call changes nothing); it changes V8 for the whole process, so a library leaves the choice to the
 * program that embeds it.
 *
 * Why. A process that moves bytes keeps a small heap (10 MB, say) and allocates fast: each socket read is a new
 * buffer. Its young generation soon grows to its largest (16 MB), and V8 starts marking the old generation
 * whenever the room left below its next limit is no more than the young generation's size, so that a scavenge
 * cannot overflow it. On a heap this small that is always: concurrent marking then runs cycle after cycle on
 * V8's helper threads (15–20 full collections for a download of 256 MB), and those threads take cores from the
 * threads that hash and write files, and from the server at the other end. Without concurrent marking, V8 marks
 * in steps on the main thread as it allocates and starts a cycle only at its limit: 2–6 full collections for the
 * same download, and a third less CPU. Pauses stay short, since the heap stays small.
 */
export function tuneHeapForStreaming(): void {
  setFlagsFromString("--no-concurrent-marking");
}
