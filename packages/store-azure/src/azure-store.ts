import { randomBytes } from "node:crypto";
import { pipeline, Readable } from "node:stream";
import {
  AnonymousCredential,
  type BlobHTTPHeaders,
  type BlobItem,
  type BlockBlobClient,
  ContainerClient,
  newPipeline,
  RestError,
  StorageRetryPolicyType,
} from "@azure/storage-blob";
import {
  AlreadyExistsError,
  ByteBudget,
  ConflictError,
  CorruptError,
  checkListPrefix,
  compareKeys,
  digestChecked,
  type GetOptions,
  InvalidArgumentError,
  type ListedPage,
  type ListOptions,
  NotFoundError,
  type ObjectInfo,
  type ObjectReader,
  type ObjectStore,
  type PutBody,
  type PutOptions,
  pagesAhead,
  UnavailableError,
} from "@cairn/core";
import { DirectReads, type ListedBlob } from "./direct-reads.js";
import { type AzureAction, mapAzureError, serviceError } from "./errors.js";
import { blobNameOf, checkKey, keyOfBlobName, keyProblem, utf8Order } from "./keys.js";

const MiB = 1024 * 1024;

export interface AzureStoreOptions {
  /**
   * Blob service endpoint without SAS: `https://<account>.blob.core.windows.net`, or an emulator's
   * `http://127.0.0.1:10000/devstoreaccount1`. Ignored when `containerClient` is given.
   */
  endpoint?: string;
  /** How requests are signed: a shared key, a token credential, or anonymous (with `sas`, or public containers). @default AnonymousCredential */
  credential?: Parameters<typeof newPipeline>[0];
  /** A SAS token (without `?`) appended to every request. It is a credential and never shown. */
  sas?: string;
  /** The container; it must exist. */
  container: string;
  /** Blob name prefix of every key: `""` or ending in `/`. @default "" */
  prefix?: string;
  /** A ready client of the container (custom auth, tests); `endpoint`, `credential`, `sas` and retry options are then unused. */
  containerClient?: ContainerClient;
  /** The store's URL without credentials, for messages. @default "azure://<container>/<prefix>" */
  url?: string;
  /**
   * Time limit of each request try, in seconds, until the response headers arrive (a download then streams
   * without limit). Also sent to the service as its server-side timeout.
   * @default 60
   */
  timeoutSeconds?: number;
  /**
   * Retries of a request that failed with a network error, 500 or 503 (throttling), with exponential backoff
   * from 0.5 s up to 30 s.
   * @default 5
   */
  retries?: number;
  /**
   * Bytes per block of a staged upload; bodies up to this size go in one request. Azure allows 50,000 blocks
   * per blob, so with a declared `size` the block grows to fit.
   * @default 8 MiB
   */
  blockSize?: number;
  /**
   * Blocks uploaded at once per put. Memory per put is at most (concurrency + 1) × blockSize.
   * @default 8
   */
  concurrency?: number;
  /**
   * Bytes of block buffers the store holds at once across all of its puts. A staged upload of a stream needs up
   * to `(concurrency + 1) × blockSize` (less when its size is known and smaller); one that would go over waits,
   * its body unread, until earlier uploads finish, so that many large puts at once do not hold many buffers
   * (with the defaults, one staged upload of a large stream runs at a time). At least one upload always runs.
   * @default 96 MiB
   */
  uploadBuffer?: number;
  /**
   * Names per list request (the service returns at most 5,000).
   * @default 5000
   */
  pageSize?: number;
}

/** An {@link ObjectStore} on an Azure Blob Storage container, one block blob per key. */
export interface AzureStore extends ObjectStore {
  readonly kind: "azure";
  readonly container: string;
  /** Blob name prefix of every key: `""` or ending in `/`. */
  readonly prefix: string;
  /** The client of the container (e.g. to create it in tests); it may hold a SAS, so it is never enumerable. */
  readonly containerClient: ContainerClient;
}

/**
 * Names asked for in a listing's first request. Later requests ask for a full page ({@link AzureStoreOptions.pageSize});
 * a first page this short comes in a few milliseconds (a page of 5,000 takes Azurite ~0.15 s), so work on the
 * first objects listed starts at once.
 */
const FIRST_PAGE = 100;
const MAX_BLOCKS = 50_000;
const MAX_BLOCK = 4000 * MiB;

/**
 * Creates a store on an Azure Blob Storage container. Small bodies are written with one Put Blob; larger ones
 * as staged blocks committed by one Put Block List, so an object is visible whole or not at all (uncommitted
 * blocks are never listed nor read, and the service discards them).
 */
export function createAzureStore(options: AzureStoreOptions): AzureStore {
  if (typeof options?.container !== "string" || options.container === "") {
    throw new InvalidArgumentError("An Azure store needs a container.");
  }
  const prefix = options.prefix ?? "";
  if (prefix !== "" && (!prefix.endsWith("/") || keyProblem(prefix.slice(0, -1)))) {
    throw new InvalidArgumentError(
      `The prefix ${JSON.stringify(prefix)} of an Azure store must be a valid key followed by "/".`,
    );
  }
  const blockSize = options.blockSize ?? 8 * MiB;
  const concurrency = options.concurrency ?? 8;
  if (!Number.isSafeInteger(blockSize) || blockSize < 64 * 1024 || blockSize > MAX_BLOCK) {
    throw new InvalidArgumentError(`The block size of an Azure store must be from 64 KiB to 4000 MiB.`);
  }
  if (!Number.isSafeInteger(concurrency) || concurrency < 1) {
    throw new InvalidArgumentError("The upload concurrency of an Azure store must be a positive integer.");
  }
  const uploadBuffer = options.uploadBuffer ?? 96 * MiB;
  if (!Number.isSafeInteger(uploadBuffer) || uploadBuffer < 64 * 1024) {
    throw new InvalidArgumentError(
      "The upload buffer of an Azure store must be a whole number of bytes, at least 64 KiB.",
    );
  }
  const url = options.url ?? `azure://${options.container}/${prefix}`.replace(/\/$/, "");
  let client = options.containerClient;
  let direct: DirectReads | undefined;
  if (!client) {
    if (!options.endpoint) throw new InvalidArgumentError(`The Azure store ${url} needs an endpoint.`);
    const timeoutMs = (options.timeoutSeconds ?? 60) * 1000;
    const pipeline = newPipeline(options.credential ?? new AnonymousCredential(), {
      retryOptions: {
        retryPolicyType: StorageRetryPolicyType.EXPONENTIAL,
        maxTries: (options.retries ?? 5) + 1,
        retryDelayInMs: 500,
        maxRetryDelayInMs: 30_000,
        tryTimeoutInMs: timeoutMs,
      },
      keepAliveOptions: { enable: true },
    });
    pipeline.factories.push(
      new InjectorPolicyFactory(timeoutMs) as unknown as (typeof pipeline.factories)[number],
    );
    const base = `${options.endpoint.replace(/\/+$/, "")}/${encodeURIComponent(options.container)}`;
    client = new ContainerClient(options.sas ? `${base}?${options.sas}` : base, pipeline);
    direct = DirectReads.create({
      endpoint: options.endpoint,
      container: options.container,
      credential: options.credential,
      sas: options.sas,
      timeoutMs,
    });
  }
  return new AzureStoreImpl({
    client,
    container: options.container,
    prefix,
    url,
    endpoint: options.endpoint ?? "",
    blockSize,
    concurrency,
    uploadBuffer,
    pageSize: Math.min(Math.max(1, options.pageSize ?? 5000), 5000),
    direct,
  });
}

/** The one method of a request that the time limit below needs (the SDK's legacy `WebResourceLike`). */
interface TimedRequest {
  timeout: number;
  abortSignal?: { aborted: boolean };
}
interface NextPolicy {
  sendRequest(request: TimedRequest): Promise<unknown>;
}

/**
 * Limits each try of a request to a number of milliseconds, until the response headers arrive. The SDK's retry
 * policy only passes its `tryTimeoutInMs` to the service, so a server that accepts a connection and never
 * answers would hang a call forever. The SDK runs extra policy factories inside its retry loop (once per try)
 * when their class is named `InjectorPolicyFactory`; a try that times out becomes a `TIMEOUT` error, which that
 * loop retries with backoff.
 */
class InjectorPolicyFactory {
  constructor(readonly timeoutMs: number) {}
  create(next: NextPolicy): NextPolicy {
    const timeoutMs = this.timeoutMs;
    return {
      async sendRequest(request: TimedRequest): Promise<unknown> {
        request.timeout = timeoutMs;
        try {
          return await next.sendRequest(request);
        } catch (error) {
          if ((error as Error | null)?.name === "AbortError" && !request.abortSignal?.aborted) {
            throw new RestError(`No response within ${timeoutMs / 1000} s.`, { code: "TIMEOUT" });
          }
          throw error;
        }
      },
    };
  }
}

interface Config {
  client: ContainerClient;
  container: string;
  prefix: string;
  url: string;
  endpoint: string;
  blockSize: number;
  concurrency: number;
  uploadBuffer: number;
  pageSize: number;
  /** Reads without the SDK's pipeline, for a client the store made with a SAS or an account key. */
  direct: DirectReads | undefined;
}

/** ETags come quoted in headers and bare in listings: one form for both. */
const bareEtag = (etag: string | undefined): string => (etag ?? "").replace(/^(W\/)?"|"$/g, "");

function toBytes(chunk: unknown): Buffer {
  if (Buffer.isBuffer(chunk)) return chunk;
  if (chunk instanceof Uint8Array) return Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  if (typeof chunk === "string") return Buffer.from(chunk, "utf8");
  throw new InvalidArgumentError(`A put body must yield Uint8Array chunks, got ${typeof chunk}.`);
}

/** Carries an error raised by the caller's body, so it is rethrown as is rather than read as a service error. */
class BodyError extends Error {}

/**
 * Cuts a body into blocks of exactly `size` bytes (the last one shorter). Chunks are copied once, into the
 * block they belong to.
 */
async function* blocksOf(body: AsyncIterable<unknown>, size: number): AsyncGenerator<Buffer> {
  let parts: Buffer[] = [];
  let filled = 0;
  try {
    for await (const raw of body) {
      let chunk = toBytes(raw);
      while (chunk.length > 0) {
        const take = Math.min(size - filled, chunk.length);
        parts.push(take === chunk.length ? chunk : chunk.subarray(0, take));
        filled += take;
        chunk = chunk.subarray(take);
        if (filled === size) {
          const block = parts.length === 1 ? parts[0]! : Buffer.concat(parts, size);
          parts = [];
          filled = 0;
          yield block;
        }
      }
    }
  } catch (error) {
    if (error instanceof InvalidArgumentError) throw error;
    throw new BodyError("the body failed", { cause: error });
  }
  if (filled > 0 || parts.length > 0) yield parts.length === 1 ? parts[0]! : Buffer.concat(parts, filled);
}

/** A fresh block id prefix per upload: ids of one blob must all have the same length, so every id is 64 chars. */
const blockIds = () => {
  const upload = randomBytes(24).toString("hex");
  return (i: number) => Buffer.from(`${upload}${String(i).padStart(16, "0")}`).toString("base64");
};

class AzureStoreImpl implements AzureStore {
  readonly kind = "azure" as const;
  readonly url: string;
  readonly container: string;
  readonly prefix: string;
  // Private, so that logging or inspecting a store never prints its client, whose URL may hold a SAS.
  readonly #client: ContainerClient;
  /** {@link prefix} as it is written in blob names. */
  readonly #root: string;
  readonly #endpoint: string;
  readonly #blockSize: number;
  readonly #concurrency: number;
  readonly #pageSize: number;
  /** The block buffers of this store's uploads of streams, shared by its puts. */
  readonly #uploadBuffers: ByteBudget;
  readonly #direct: DirectReads | undefined;
  #closed = false;

  constructor(config: Config) {
    this.url = config.url;
    this.container = config.container;
    this.prefix = config.prefix;
    this.#root = blobNameOf(config.prefix);
    this.#client = config.client;
    this.#endpoint = config.endpoint;
    this.#blockSize = config.blockSize;
    this.#concurrency = config.concurrency;
    this.#pageSize = config.pageSize;
    this.#uploadBuffers = new ByteBudget(config.uploadBuffer);
    this.#direct = config.direct;
  }

  get containerClient(): ContainerClient {
    return this.#client;
  }

  #check(): void {
    if (this.#closed) throw new UnavailableError(`The Azure store ${this.url} is closed.`);
  }

  #blob(key: string): BlockBlobClient {
    return this.#client.getBlockBlobClient(this.#root + blobNameOf(key));
  }

  #error(error: unknown, key: string | undefined, action: AzureAction, createOnly = false): unknown {
    return mapAzureError(error, {
      url: this.url,
      endpoint: this.#endpoint,
      key,
      container: this.container,
      action,
      createOnly,
    });
  }

  async put(key: string, body: PutBody, options: PutOptions = {}): Promise<ObjectInfo> {
    this.#check();
    checkKey(key, this.url, this.#root);
    const createOnly = options.createOnly === true;
    const headers: BlobHTTPHeaders | undefined = options.contentType
      ? { blobContentType: options.contentType }
      : undefined;
    let blockSize = this.#blockSize;
    if (options.size !== undefined && options.size > blockSize * MAX_BLOCKS) {
      blockSize = Math.min(MAX_BLOCK, Math.ceil(options.size / MAX_BLOCKS));
    }
    const blob = this.#blob(key);
    let giveBack: (() => void) | undefined;
    try {
      if (body instanceof Uint8Array) {
        this.#checkSize(key, options.size, body.length);
        if (body.length <= blockSize)
          return await this.#putOnce(blob, key, toBytes(body), headers, createOnly);
        return await this.#putBlocks(
          blob,
          key,
          sliced(toBytes(body), blockSize),
          headers,
          createOnly,
          options.size,
        );
      }
      // Read into blocks within the store's budget: the blocks in flight and the next one being filled.
      const most = (this.#concurrency + 1) * blockSize;
      giveBack = await this.#uploadBuffers.take(
        options.size === undefined ? most : Math.min(options.size, most),
      );
      const blocks = blocksOf(body as AsyncIterable<unknown>, blockSize);
      const first = await blocks.next();
      if (first.done) {
        this.#checkSize(key, options.size, 0);
        return await this.#putOnce(blob, key, Buffer.alloc(0), headers, createOnly);
      }
      const second = await blocks.next();
      if (second.done) {
        this.#checkSize(key, options.size, first.value.length);
        return await this.#putOnce(blob, key, first.value, headers, createOnly);
      }
      return await this.#putBlocks(
        blob,
        key,
        prepend([first.value, second.value], blocks),
        headers,
        createOnly,
        options.size,
      );
    } catch (error) {
      if (error instanceof BodyError) throw error.cause;
      throw this.#error(error, key, "write", createOnly);
    } finally {
      giveBack?.();
    }
  }

  #checkSize(key: string, declared: number | undefined, actual: number): void {
    if (declared !== undefined && declared !== actual) {
      throw new InvalidArgumentError(
        `The body of "${key}" in ${this.url} has ${actual} bytes, not the ${declared} its size option says.`,
      );
    }
  }

  async #putOnce(
    blob: BlockBlobClient,
    key: string,
    bytes: Buffer,
    headers: BlobHTTPHeaders | undefined,
    createOnly: boolean,
  ): Promise<ObjectInfo> {
    const res = await blob.upload(bytes, bytes.length, {
      ...(headers ? { blobHTTPHeaders: headers } : {}),
      ...(createOnly ? { conditions: { ifNoneMatch: "*" } } : {}),
    });
    return {
      key,
      size: bytes.length,
      etag: bareEtag(res.etag),
      ...(res.lastModified ? { lastModified: res.lastModified } : {}),
    };
  }

  /**
   * Stages blocks with at most `concurrency` in flight and commits them in one request. Until the commit, the
   * blob (or its previous version) is all a reader sees; a failure leaves only uncommitted blocks, which the
   * service drops.
   */
  async #putBlocks(
    blob: BlockBlobClient,
    key: string,
    blocks: AsyncIterable<Buffer>,
    headers: BlobHTTPHeaders | undefined,
    createOnly: boolean,
    declared: number | undefined,
  ): Promise<ObjectInfo> {
    // A create-only write of many blocks asks first, so an existing object costs one request, not an upload;
    // the condition on the commit still decides a race.
    if (createOnly && (await this.#exists(blob))) {
      throw new AlreadyExistsError(`The object "${key}" already exists in ${this.url}.`);
    }
    const idOf = blockIds();
    const ids: string[] = [];
    const abort = new AbortController();
    const inFlight = new Set<Promise<void>>();
    let failure: unknown;
    let size = 0;
    const stage = (id: string, block: Buffer) => {
      const p: Promise<void> = blob.stageBlock(id, block, block.length, { abortSignal: abort.signal }).then(
        () => {
          inFlight.delete(p);
        },
        (error: unknown) => {
          inFlight.delete(p);
          if (failure === undefined) failure = error;
          abort.abort();
        },
      );
      inFlight.add(p);
    };
    try {
      for await (const block of blocks) {
        if (failure !== undefined) break;
        if (ids.length >= MAX_BLOCKS) {
          throw new InvalidArgumentError(
            `The body of "${key}" in ${this.url} needs more than ${MAX_BLOCKS} blocks of ${this.#blockSize} bytes; pass its size or a larger blockSize.`,
          );
        }
        const id = idOf(ids.length);
        ids.push(id);
        size += block.length;
        stage(id, block);
        while (inFlight.size >= this.#concurrency) await Promise.race(inFlight);
      }
    } catch (error) {
      abort.abort();
      await Promise.allSettled(inFlight);
      throw error;
    }
    await Promise.allSettled(inFlight);
    if (failure !== undefined) throw failure;
    this.#checkSize(key, declared, size);
    try {
      const res = await blob.commitBlockList(ids, {
        ...(headers ? { blobHTTPHeaders: headers } : {}),
        ...(createOnly ? { conditions: { ifNoneMatch: "*" } } : {}),
      });
      return {
        key,
        size,
        etag: bareEtag(res.etag),
        ...(res.lastModified ? { lastModified: res.lastModified } : {}),
      };
    } catch (error) {
      if (serviceError(error).errorCode !== "InvalidBlockList") throw error;
      // Another writer committed this blob meanwhile, which drops every uncommitted block, ours too.
      if (createOnly && (await this.#exists(blob))) {
        throw new AlreadyExistsError(`The object "${key}" already exists in ${this.url}.`, {
          cause: serviceError(error),
        });
      }
      throw new ConflictError(
        `A concurrent write of "${key}" in ${this.url} discarded the blocks of this upload; write it again.`,
        { cause: serviceError(error), paths: [key] },
      );
    }
  }

  async #exists(blob: BlockBlobClient): Promise<boolean> {
    try {
      await blob.getProperties();
      return true;
    } catch (error) {
      const e = serviceError(error);
      if (e.statusCode === 404 && e.errorCode !== "ContainerNotFound") return false;
      throw error;
    }
  }

  async get(key: string, options: GetOptions = {}): Promise<ObjectReader> {
    this.#check();
    checkKey(key, this.url, this.#root);
    const { range } = options;
    if (range) {
      const { start, end } = range;
      if (
        !Number.isSafeInteger(start) ||
        start < 0 ||
        (end !== undefined && (!Number.isSafeInteger(end) || end < start))
      ) {
        throw new InvalidArgumentError(
          `The range ${JSON.stringify(range)} of "${key}" in ${this.url} is not valid: it needs 0 <= start <= end.`,
        );
      }
    }
    const blobName = this.#root + blobNameOf(key);
    let reader: ObjectReader;
    /** The MD5 the service keeps of the whole blob (base64), to check a whole read against. */
    let md5: string | undefined;
    const direct = await this.#direct?.get(blobName, range?.start ?? 0, range?.end);
    if (direct) {
      const { size, etag, lastModified, body } = direct;
      reader = { key, size, etag: bareEtag(etag), ...(lastModified && { lastModified }), body };
      md5 = direct.contentMd5;
    } else {
      try {
        const count = range ? (range.end === undefined ? undefined : range.end - range.start + 1) : undefined;
        // maxRetryRequests resumes a broken download where it stopped, pinned to the same version by its ETag.
        const res = await this.#blob(key).download(range?.start ?? 0, count, { maxRetryRequests: 5 });
        const total = res.contentRange ? Number(/\/(\d+)$/.exec(res.contentRange)?.[1]) : res.contentLength;
        reader = {
          key,
          size: Number.isFinite(total) ? Number(total) : (res.contentLength ?? 0),
          etag: bareEtag(res.etag),
          ...(res.lastModified ? { lastModified: res.lastModified } : {}),
          body: (res.readableStreamBody as Readable | undefined) ?? Readable.from([]),
        };
        md5 = res.contentMD5 ? Buffer.from(res.contentMD5).toString("base64") : undefined;
      } catch (error) {
        const e = serviceError(error);
        if (e.statusCode === 416 && range) {
          throw new InvalidArgumentError(
            `The range starts at byte ${range.start}, beyond the end of "${key}" in ${this.url}.`,
            { cause: e },
          );
        }
        throw this.#error(error, key, "read");
      }
    }
    if (range || md5 === undefined || options.verify === false) return reader;
    // A whole read of a blob whose MD5 the service keeps (one Put Blob, or a client that sent it) is checked
    // against it: a mismatch fails the stream at its end.
    const check = digestChecked("md5", Buffer.from(md5, "base64").toString("hex"), () => {
      return new CorruptError(
        `The bytes read of "${key}" in ${this.url} do not match the MD5 the service keeps of it (Content-MD5): they changed or were damaged in transit.`,
      );
    });
    return { ...reader, body: pipeline(reader.body, check, () => {}) };
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    this.#check();
    checkKey(key, this.url, this.#root);
    try {
      const res = await this.#blob(key).getProperties();
      return {
        key,
        size: res.contentLength ?? 0,
        etag: bareEtag(res.etag),
        ...(res.lastModified ? { lastModified: res.lastModified } : {}),
      };
    } catch (error) {
      const e = serviceError(error);
      if (e.statusCode === 404 && e.errorCode !== "ContainerNotFound") return undefined;
      throw this.#error(error, key, "read");
    }
  }

  list(prefix: string, options: ListOptions = {}): AsyncIterable<ObjectInfo> {
    this.#check();
    checkListPrefix(prefix, this.url);
    const { after } = options;
    if (after !== undefined && typeof after !== "string") {
      throw new InvalidArgumentError(`"after" must be a string, got ${typeof after} (store ${this.url}).`);
    }
    return this.#list(prefix, after);
  }

  async *#list(prefix: string, after: string | undefined): AsyncGenerator<ObjectInfo> {
    // A prefix ending in half a surrogate pair still selects the keys with the whole pair; a lone surrogate
    // anywhere else cannot start any key.
    const serverPrefix = /[\ud800-\udbff]$/.test(prefix) ? prefix.slice(0, -1) : prefix;
    if (/\p{Cs}/u.test(serverPrefix)) return;
    const pages = this.#pages(serverPrefix);
    for await (const info of utf8Order(pages, (i) => i.key, serverPrefix.length)) {
      if (!info.key.startsWith(prefix)) continue;
      if (after !== undefined && compareKeys(info.key, after) <= 0) continue;
      yield info;
    }
  }

  /**
   * Objects under `prefix` in the service's order (UTF-16 code units), one page per request, the next asked for
   * while the reader has the one before (core's `pagesAhead`).
   */
  async *#pages(prefix: string): AsyncGenerator<ObjectInfo> {
    const root = this.#root.length;
    const serverPrefix = this.#root + blobNameOf(prefix);
    const pages = pagesAhead((token, size) => this.#listPage(serverPrefix, token, size), {
      first: Math.min(FIRST_PAGE, this.#pageSize),
      size: this.#pageSize,
    });
    for await (const blobs of pages) {
      for (const blob of blobs) {
        const key = keyOfBlobName(blob.name.slice(root));
        // Names no key can have (written by other tools, e.g. folder markers ending in "/") are not objects here.
        if (key === undefined || key === "" || keyProblem(key) !== undefined) continue;
        yield {
          key,
          size: blob.size,
          etag: bareEtag(blob.etag),
          ...(blob.lastModified && { lastModified: blob.lastModified }),
        };
      }
    }
  }

  /** Up to `size` blobs whose names start with `serverPrefix`, from `token` on, and the token of the rest. */
  async #listPage(
    serverPrefix: string,
    token: string | undefined,
    size: number,
  ): Promise<ListedPage<ListedBlob>> {
    this.#check();
    const page = await this.#direct?.listPage(serverPrefix, token, size);
    if (page) return { items: page.blobs, next: page.next };
    try {
      const sdkPage = (
        await this.containerClient
          .listBlobsFlat({ prefix: serverPrefix })
          .byPage({ maxPageSize: size, ...(token ? { continuationToken: token } : {}) })
          .next()
      ).value as { segment: { blobItems: BlobItem[] }; continuationToken?: string } | undefined;
      return {
        items: (sdkPage?.segment.blobItems ?? []).map((item) => ({
          name: item.name,
          size: item.properties.contentLength ?? 0,
          etag: item.properties.etag ?? "",
          lastModified: item.properties.lastModified,
        })),
        next: sdkPage?.continuationToken || undefined,
      };
    } catch (error) {
      throw this.#error(error, undefined, "list");
    }
  }

  async delete(key: string): Promise<void> {
    this.#check();
    checkKey(key, this.url, this.#root);
    try {
      await this.#blob(key).delete({ deleteSnapshots: "include" });
    } catch (error) {
      const e = serviceError(error);
      if (e.statusCode === 404 && e.errorCode !== "ContainerNotFound") return;
      throw this.#error(error, key, "delete");
    }
  }

  async copy(source: string, target: string, options: { createOnly?: boolean } = {}): Promise<ObjectInfo> {
    this.#check();
    checkKey(source, this.url, this.#root);
    checkKey(target, this.url, this.#root);
    const createOnly = options.createOnly === true;
    const from = this.#blob(source);
    const to = this.#blob(target);
    try {
      // Copy Blob within one account is done by the service (a SAS in `from.url` authorizes reading the source;
      // with a shared key, the request's own signature does).
      const poller = await to.beginCopyFromURL(from.url, {
        intervalInMs: 200,
        ...(createOnly ? { conditions: { ifNoneMatch: "*" } } : {}),
      });
      const done = await poller.pollUntilDone();
      if (done.copyStatus !== undefined && done.copyStatus !== "success") {
        throw new UnavailableError(
          `Copying "${source}" to "${target}" in ${this.url} ended as ${done.copyStatus}.`,
        );
      }
      const props = await to.getProperties();
      return {
        key: target,
        size: props.contentLength ?? 0,
        etag: bareEtag(props.etag),
        ...(props.lastModified ? { lastModified: props.lastModified } : {}),
      };
    } catch (error) {
      const e = serviceError(error);
      if (e.statusCode === 404 && e.errorCode !== "ContainerNotFound") {
        throw new NotFoundError(`No object "${source}" in ${this.url} to copy to "${target}".`, { cause: e });
      }
      throw this.#error(error, target, "copy to", createOnly);
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#direct?.close();
  }
}

/** `bytes` as blocks of `size` bytes, without copying. */
async function* sliced(bytes: Buffer, size: number): AsyncGenerator<Buffer> {
  for (let at = 0; at < bytes.length; at += size) yield bytes.subarray(at, at + size);
}

/** `first`, then the rest of `rest`; stopping early stops `rest` too, which releases the caller's body. */
async function* prepend<T>(first: readonly T[], rest: AsyncGenerator<T>): AsyncGenerator<T> {
  yield* first;
  yield* rest;
}
