import { createHash } from "node:crypto";
import { Readable } from "node:stream";
import {
  AlreadyExistsError,
  compareKeys,
  InvalidArgumentError,
  NotFoundError,
  type ObjectInfo,
  type ObjectStore,
  type PutBody,
} from "@cairn/core";

interface Stored {
  bytes: Buffer;
  etag: string;
}

function checkKey(key: string): void {
  const segments = key.split("/");
  if (key === "" || segments.some((s) => s === "" || s === "." || s === "..")) {
    throw new InvalidArgumentError(`invalid key ${JSON.stringify(key)}`);
  }
}

/** A reference store in memory, to check the suite itself: every `open()` is a new, empty store. */
export async function openMemoryStore(): Promise<ObjectStore> {
  const objects = new Map<string, Stored>();
  const info = (key: string, o: Stored): ObjectInfo => ({ key, size: o.bytes.length, etag: o.etag });
  const tick = () => new Promise<void>((resolve) => setImmediate(resolve));
  let version = 0;
  const stored = (bytes: Buffer): Stored => ({
    bytes,
    etag: `${createHash("md5").update(bytes).digest("hex")}-${++version}`,
  });

  return {
    kind: "memory",
    url: "memory://",
    async put(key: string, body: PutBody, options = {}) {
      checkKey(key);
      const chunks: Buffer[] = [];
      if (body instanceof Uint8Array) chunks.push(Buffer.from(body));
      else for await (const chunk of body as AsyncIterable<Uint8Array>) chunks.push(Buffer.from(chunk));
      await tick();
      if (options.createOnly && objects.has(key)) throw new AlreadyExistsError(`${key} exists`);
      const o = stored(Buffer.concat(chunks));
      objects.set(key, o);
      return info(key, o);
    },
    async get(key: string, options = {}) {
      checkKey(key);
      await tick();
      const o = objects.get(key);
      if (!o) throw new NotFoundError(`no ${key}`);
      const { start = 0, end = o.bytes.length - 1 } = options.range ?? {};
      return { ...info(key, o), body: Readable.from([o.bytes.subarray(start, end + 1)]) };
    },
    async head(key: string) {
      checkKey(key);
      await tick();
      const o = objects.get(key);
      return o && info(key, o);
    },
    async *list(prefix: string, options = {}) {
      let cursor = options.after;
      for (;;) {
        await tick();
        const page = [...objects.keys()]
          .filter((k) => k.startsWith(prefix) && (cursor === undefined || compareKeys(k, cursor) > 0))
          .sort(compareKeys)
          .slice(0, 50);
        if (page.length === 0) return;
        for (const key of page) {
          const o = objects.get(key);
          if (o) yield info(key, o);
        }
        cursor = page[page.length - 1];
      }
    },
    async delete(key: string) {
      checkKey(key);
      await tick();
      objects.delete(key);
    },
    async copy(source: string, target: string, options = {}) {
      checkKey(source);
      checkKey(target);
      await tick();
      const o = objects.get(source);
      if (!o) throw new NotFoundError(`no ${source}`);
      if (options.createOnly && objects.has(target)) throw new AlreadyExistsError(`${target} exists`);
      const copy = stored(o.bytes);
      objects.set(target, copy);
      return info(target, copy);
    },
    async close() {},
  };
}
