/**
 * Where ranges end. A boundary falls after an entry whose path hashes to a multiple of {@link BOUNDARY_MASK}+1
 * (FNV-1a, 32 bits, over the path's UTF-8 bytes), so boundaries depend on paths, not positions: a change
 * rewrites the ranges around it and the rest of the tree is reused as is. Bounds keep ranges from being
 * tiny or huge whatever the paths.
 */
export const BOUNDARY_MASK = 0x1ff; // ~512 entries per range on average
export const MIN_RANGE_ENTRIES = 32;
export const MAX_RANGE_ENTRIES = 4096;
export const MAX_RANGE_BYTES = 2 * 1024 * 1024;

export function fnv1a32(path: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < path.length; i++) {
    let c = path.charCodeAt(i);
    if (c < 0x80) {
      h = Math.imul(h ^ c, 0x01000193);
      continue;
    }
    // Hash the UTF-8 encoding, so the boundary rule is stated on bytes, independent of this language.
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < path.length) {
      c = 0x10000 + ((c - 0xd800) << 10) + (path.charCodeAt(++i) - 0xdc00);
    }
    const bytes =
      c < 0x800
        ? [0xc0 | (c >> 6), 0x80 | (c & 63)]
        : c < 0x10000
          ? [0xe0 | (c >> 12), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63)]
          : [0xf0 | (c >> 18), 0x80 | ((c >> 12) & 63), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63)];
    for (const b of bytes) h = Math.imul(h ^ b, 0x01000193);
  }
  return h >>> 0;
}

export const isBoundary = (path: string): boolean => (fnv1a32(path) & BOUNDARY_MASK) === 0;
