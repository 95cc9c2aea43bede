// @ts-check
// Plain JavaScript, with types from JSDoc: a load's worker thread (load-thread.js) runs this module as it is, from
// the source tree under test as from dist, and Node runs no TypeScript in a worker.
import { randomBytes } from "node:crypto";

/** A lower-case SHA-256 in hex: what a {@link DigestSet} keeps as 32 bytes. */
export const HEX_DIGEST = /^[0-9a-f]{64}$/;
/** Mixed into every slot's hash: values chosen to collide would otherwise make the set crawl. */
const SEED = randomBytes(4).readUInt32LE(0);

/**
 * A set of SHA-256 digests (object digests, commit ids), kept as 32 bytes each in one open-addressing table
 * (linear probing, between a quarter and half full) outside the JS heap instead of a string each: 66–130 bytes a
 * digest against ~110 for a string in a `Set`, and nothing for the garbage collector to trace or to let pile up. A
 * backup of millions of objects remembers what it has seen, and a load the commits it checks references against,
 * in tens of MB. Anything that is not a lower-case hex digest is kept apart as a string, so the set means what a
 * `Set` of the strings would.
 */
export class DigestSet {
  /** Slot i holds a digest in bytes `32i … 32i + 31` (words `8i … 8i + 7`) when `#used[i]` is 1. */
  #table;
  #words;
  #used;
  #count = 0;
  /** @type {Set<string>} */
  #other = new Set();
  /** The digest being looked up. */
  #key = Buffer.alloc(32);
  #keyWords = new Uint32Array(this.#key.buffer, this.#key.byteOffset, 8);

  /** @param {number} slots room to start with: a power of two */
  constructor(slots = 1024) {
    this.#table = Buffer.alloc(32 * slots);
    this.#words = new Uint32Array(this.#table.buffer, this.#table.byteOffset, 8 * slots);
    this.#used = new Uint8Array(slots);
  }

  get size() {
    return this.#count + this.#other.size;
  }

  /** @param {string} sha256 */
  has(sha256) {
    if (!HEX_DIGEST.test(sha256)) return this.#other.has(sha256);
    this.#key.write(sha256, 0, 32, "hex");
    return this.#used[this.#slot()] === 1;
  }

  /** @param {string} sha256 */
  add(sha256) {
    if (!HEX_DIGEST.test(sha256)) {
      this.#other.add(sha256);
      return;
    }
    this.#key.write(sha256, 0, 32, "hex");
    const slot = this.#slot();
    if (this.#used[slot] === 1) return;
    this.#words.set(this.#keyWords, slot * 8);
    this.#used[slot] = 1;
    this.#count++;
    if (2 * this.#count > this.#used.length) this.#grow();
  }

  /** Every value, in no particular order. @returns {Generator<string>} */
  *values() {
    for (let slot = 0; slot < this.#used.length; slot++) {
      if (this.#used[slot] === 1) yield this.#table.toString("hex", slot * 32, slot * 32 + 32);
    }
    yield* this.#other;
  }

  /** The slot holding the digest in `#key`, or the empty slot where it would go. */
  #slot() {
    const key = this.#keyWords;
    const words = this.#words;
    const mask = this.#used.length - 1;
    let hash = SEED;
    for (let w = 0; w < 8; w++) {
      hash = Math.imul(hash ^ /** @type {number} */ (key[w]), 0x85ebca6b);
      hash ^= hash >>> 13;
    }
    for (let slot = hash & mask; ; slot = (slot + 1) & mask) {
      if (this.#used[slot] === 0) return slot;
      const at = 8 * slot;
      if (
        words[at] === key[0] &&
        words[at + 1] === key[1] &&
        words[at + 2] === key[2] &&
        words[at + 3] === key[3] &&
        words[at + 4] === key[4] &&
        words[at + 5] === key[5] &&
        words[at + 6] === key[6] &&
        words[at + 7] === key[7]
      ) {
        return slot;
      }
    }
  }

  #grow() {
    const words = this.#words;
    const used = this.#used;
    this.#table = Buffer.alloc(this.#table.length * 2);
    this.#words = new Uint32Array(this.#table.buffer, this.#table.byteOffset, 2 * words.length);
    this.#used = new Uint8Array(used.length * 2);
    for (let i = 0; i < used.length; i++) {
      if (used[i] !== 1) continue;
      this.#keyWords.set(words.subarray(8 * i, 8 * i + 8));
      const slot = this.#slot();
      this.#words.set(this.#keyWords, 8 * slot);
      this.#used[slot] = 1;
    }
  }
}
