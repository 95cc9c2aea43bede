import { createHash, randomUUID } from "node:crypto";
import { Agent as HttpAgent } from "node:http";
import { Agent as HttpsAgent } from "node:https";
import { pipeline, Readable, Transform } from "node:stream";
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  type GetObjectCommandOutput,
  HeadBucketCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  type ListObjectsV2CommandOutput,
  PutObjectCommand,
  S3Client,
  type S3ClientConfig,
  UploadPartCommand,
} from "@aws-sdk/client-s3";
import {
  AlreadyExistsError,
  ByteBudget,
  CairnError,
  CorruptError,
  checkListPrefix,
  chunkStream,
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
  UnsupportedError,
} from "@cairn/core";
import { DirectGet, type DirectOptions, type GetAnswer } from "./direct-get.js";
import { errorCode, httpStatus, mapS3Error, type S3Action, worthRetrying } from "./errors.js";
import { checkKey, PROBE_FOLDER, safeStartAfter, showKey } from "./keys.js";
import { checkEndpoint, formatS3Url } from "./url.js";

const MiB = 1024 * 1024;
/**
 * Keys asked for in a listing's first request, and in each later one (the most S3 returns). A first page this
 * short comes quickly, so work on the first objects listed starts at once; later pages are asked for while the
 * reader has the one before (core's `pagesAhead`).
 */
const FIRST_PAGE = 100;
const PAGE = 1000;
/** The most parts a multipart upload may have. */
const MAX_PARTS = 10_000;
/** The largest object CopyObject copies in one request; larger ones need a multipart copy. */
const MAX_COPY_BYTES = 5 * 1024 * MiB;
const COPY_ATTEMPTS = 5;

/**
 * How `put` and `copy` with `createOnly` keep an existing object:
 * - `conditional`: the write carries `If-None-Match: *`, and the service refuses it atomically when the key
 *   exists (AWS S3 since 2024, MinIO, Cloudflare R2, Ceph RGW 19+).
 * - `check`: a HEAD before the write. Correct for one writer, but not atomic: two writers that check at the
 *   same time may both write, and the last one wins. For services that ignore `If-None-Match`.
 * - `auto`: a probe on the first create-only write (the same probe object written twice with
 *   `If-None-Match: *`) picks `conditional` when the second write is refused, else `check`.
 */
export type CreateOnlyMode = "auto" | "conditional" | "check";

/** Options of {@link createS3Store}; copied and frozen. */
export interface S3StoreOptions {
  /** The bucket; it must exist. */
  bucket: string;
  /**
   * Key prefix of the store inside the bucket, without leading or trailing `/` ("" for the whole bucket);
   * the store's keys are `prefix/key`.
   * @default ""
   */
  prefix?: string;
  /** AWS region. @default the AWS chain (AWS_REGION, profile); "us-east-1" with an `endpoint` and no other */
  region?: string;
  /** Endpoint of an S3-compatible service, e.g. `http://127.0.0.1:9000`. @default AWS S3 of the region */
  endpoint?: string;
  /**
   * Address buckets as `endpoint/bucket/key` rather than `bucket.endpoint/key`.
   * @default true with an `endpoint`, false for AWS
   */
  forcePathStyle?: boolean;
  /** How create-only writes are enforced; see {@link CreateOnlyMode}. @default "auto" */
  createOnly?: CreateOnlyMode;
  /**
   * Attempts per request, retried with exponential backoff and jitter on throttling, 5xx answers and network
   * errors (the SDK's standard retry strategy).
   * @default 3
   */
  maxAttempts?: number;
  /** Seconds to wait for a TCP connection. @default 10 */
  connectTimeout?: number;
  /** Seconds a request may stay idle (no byte sent or received) before it fails; 0 for no limit. @default 120 */
  requestTimeout?: number;
  /**
   * Bodies larger than this go up as a multipart upload of parts of this size (at least 5 MiB; raised for
   * objects whose size is known and would need more than 10,000 parts).
   * @default 8 MiB
   */
  partSize?: number;
  /** Parts of one multipart upload sent at once. @default 4 */
  partConcurrency?: number;
  /**
   * Bodies that can be sent again go up in one PUT up to this size, retried like any request: bodies in memory,
   * and streams given with their `size` and a `reopen` (see `PutOptions`), such as files. Larger ones, and
   * other streams larger than a part, go up in parts. As rclone's `upload_cutoff`: one PUT is faster on most
   * services (s3rver assembles parts by reading them again), parts are sent in parallel and retried one by one.
   * A service that writes objects in place (s3rver; not S3, MinIO or R2) may keep a partial object when every
   * attempt of such a PUT fails midway.
   * @default 100 MiB
   */
  singlePutLimit?: number;
  /**
   * Bytes of part buffers the store holds at once across all of its puts. A multipart upload needs up to
   * `(partConcurrency + 1) × partSize` (less when its size is known and smaller); one that would go over waits,
   * its body unread, until earlier uploads finish, so that many large puts at once do not hold many buffers
   * (with the defaults, two multipart uploads run at once). At least one upload always runs.
   * @default 96 MiB
   */
  uploadBuffer?: number;
  /** Connections kept open to the service, shared by all calls. @default 64 */
  maxSockets?: number;
  /** Credentials for programs that do not use the AWS chain. Never part of the store's URL. */
  credentials?: S3ClientConfig["credentials"];
  /** A ready client (tests, custom auth); the store does not destroy it on close. */
  client?: S3Client;
}

/** An {@link ObjectStore} on an S3 bucket (AWS S3 or an S3-compatible service), under one key prefix. */
export interface S3Store extends ObjectStore {
  readonly kind: "s3";
  readonly bucket: string;
  /** The key prefix in the bucket: "" or ending in "/". */
  readonly root: string;
  /** The create-only mode in force: the configured one, or what the probe of `auto` found. */
  createOnlyMode(): Promise<"conditional" | "check">;
}

type Config = Readonly<{
  bucket: string;
  root: string;
  url: string;
  createOnly: CreateOnlyMode;
  partSize: number;
  partConcurrency: number;
  singlePutLimit: number;
  uploadBuffer: number;
  probeScope: string;
}>;

/** Probe results per endpoint and bucket, shared by the stores of a process (the answer cannot differ). */
const probes = new Map<string, Promise<"conditional" | "check">>();

/**
 * Creates a store on `bucket` under `prefix`. No request is made until the first call; a missing bucket is
 * reported then, with `NOT_FOUND`.
 */
export function createS3Store(options: S3StoreOptions): S3Store {
  const o = { ...options };
  if (typeof o.bucket !== "string" || o.bucket.length === 0) {
    throw new InvalidArgumentError("An S3 store needs a bucket.");
  }
  const prefix = (o.prefix ?? "").replace(/^\/+|\/+$/g, "");
  const url = formatS3Url({ ...o, prefix });
  if (o.endpoint !== undefined) o.endpoint = checkEndpoint(o.endpoint, url);
  const partSize = o.partSize ?? 8 * MiB;
  if (!Number.isSafeInteger(partSize) || partSize < 5 * MiB) {
    throw new InvalidArgumentError(
      `The part size of ${url} must be a whole number of bytes, at least 5 MiB.`,
    );
  }
  const partConcurrency = o.partConcurrency ?? 4;
  if (!Number.isSafeInteger(partConcurrency) || partConcurrency < 1) {
    throw new InvalidArgumentError(`The part concurrency of ${url} must be a whole number, at least 1.`);
  }
  const single = o.singlePutLimit ?? 100 * MiB;
  if (!Number.isSafeInteger(single) || single < 0 || single > 5 * 1024 * MiB) {
    throw new InvalidArgumentError(
      `The single PUT limit of ${url} must be a whole number of bytes up to 5 GiB.`,
    );
  }
  const uploadBuffer = o.uploadBuffer ?? 96 * MiB;
  if (!Number.isSafeInteger(uploadBuffer) || uploadBuffer < MiB) {
    throw new InvalidArgumentError(
      `The upload buffer of ${url} must be a whole number of bytes, at least 1 MiB.`,
    );
  }
  const config: Config = Object.freeze({
    bucket: o.bucket,
    root: prefix ? `${prefix}/` : "",
    url,
    createOnly: o.createOnly ?? "auto",
    partSize,
    partConcurrency,
    singlePutLimit: single,
    uploadBuffer,
    probeScope: `${o.endpoint ?? `aws:${o.region ?? ""}`}|${o.bucket}`,
  });
  if (o.client) return new S3StoreImpl(config, o.client, undefined, undefined);
  // The SDK's connections: kept alive, as many at once as the store may make. Direct reads have their own.
  const sockets = { keepAlive: true, maxSockets: o.maxSockets ?? 64 };
  const agents = { http: new HttpAgent(sockets), https: new HttpsAgent(sockets) };
  const settings = clientConfig(o, agents);
  const direct: DirectOptions = {
    bucket: o.bucket,
    endpoint: o.endpoint,
    connectTimeoutMs: settings.requestHandler.connectionTimeout,
    socketTimeoutMs: settings.requestHandler.socketTimeout,
  };
  return new S3StoreImpl(config, new S3Client(settings), settings, direct);
}

const SILENT = { debug() {}, info() {}, warn() {}, error() {} };

function clientConfig(o: S3StoreOptions, agents: { http: HttpAgent; https: HttpsAgent }) {
  const region =
    o.region ??
    (o.endpoint !== undefined && !process.env.AWS_REGION && !process.env.AWS_DEFAULT_REGION
      ? "us-east-1"
      : undefined);
  return {
    ...(region !== undefined && { region }),
    ...(o.endpoint !== undefined && { endpoint: o.endpoint }),
    forcePathStyle: o.forcePathStyle ?? o.endpoint !== undefined,
    // A copy: the SDK marks where credentials came from on the object itself, and a frozen one would throw.
    ...(o.credentials !== undefined && {
      credentials: typeof o.credentials === "function" ? o.credentials : { ...o.credentials },
    }),
    maxAttempts: o.maxAttempts ?? 3,
    retryMode: "standard",
    followRegionRedirects: true,
    // Checksums only where S3 requires them: S3-compatible services differ in their support of the
    // aws-chunked trailers that default CRC32 checksums of streamed bodies use.
    requestChecksumCalculation: "WHEN_REQUIRED",
    responseChecksumValidation: "WHEN_REQUIRED",
    // Resolve each command's middleware once per command class, not on every request: per request it costs
    // more CPU than signing and parsing together. No command here adds middleware of its own.
    cacheMiddleware: true,
    requestHandler: {
      connectionTimeout: Math.round((o.connectTimeout ?? 10) * 1000),
      socketTimeout: Math.round((o.requestTimeout ?? 120) * 1000),
      httpAgent: agents.http,
      httpsAgent: agents.https,
    },
  } satisfies S3ClientConfig;
}

type PutParams = { Bucket: string; Key: string; ContentType?: string; IfNoneMatch?: string };

/** A caller's body, its bytes counted as they are read: see `#counted`. */
interface CountedBody {
  chunks: AsyncGenerator<Uint8Array>;
  /** Bytes read so far. */
  count: number;
  /** Set when the body failed, or was not as long as its size said. */
  failure: { error: unknown } | undefined;
  /** Aborted on such a failure, to end the request that sends the body. */
  abort: AbortController;
}

/** Carries an error raised by the caller's body, so it is rethrown as is rather than read as a service error. */
class BodyError extends Error {}

function toBytes(chunk: unknown): Uint8Array {
  if (chunk instanceof Uint8Array) return chunk;
  if (typeof chunk === "string") return Buffer.from(chunk, "utf8");
  throw new InvalidArgumentError(`A put body must yield Uint8Array chunks, got ${typeof chunk}.`);
}

const etagOf = (etag: string | undefined): string => etag ?? "";

/**
 * The wait before attempt `failed + 1`, as the SDK's standard retry strategy waits: up to 100 ms × 2^failed
 * (200 ms before the second attempt), full jitter, at most 20 s.
 */
const retryBackoff = (failed = 1) =>
  new Promise((resolve) => setTimeout(resolve, Math.random() * Math.min(20_000, 100 * 2 ** failed)));

/** Whole objects up to this size are read into memory and checked before the caller gets them. */
const VERIFY_IN_MEMORY = 4 * MiB;
const VERIFY_ATTEMPTS = 8;
/** Wait before reading again an object that did not match its MD5: 20 ms doubling, with full jitter. */
const verifyBackoff = (attempt: number) =>
  new Promise((resolve) => setTimeout(resolve, Math.random() * 20 * 2 ** attempt));

interface ContentRange {
  start: number;
  end: number;
  total: number;
}

function parseContentRange(header: string | undefined): ContentRange | undefined {
  const m = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(header ?? "");
  return m ? { start: Number(m[1]), end: Number(m[2]), total: Number(m[3]) } : undefined;
}

/**
 * The MD5 of the object's bytes when its ETag is one: S3 sets the ETag of an object written by one PUT or
 * a copy, unencrypted or with SSE-S3, to the MD5 of its bytes. Multipart ETags ("…-N") and those of SSE-KMS or
 * SSE-C objects are something else, and are not checked.
 */
function plainMd5(out: GetAnswer | GetObjectCommandOutput): string | undefined {
  const m = /^"?([0-9a-f]{32})"?$/i.exec(out.ETag ?? "");
  if (!m || out.SSECustomerAlgorithm || (out.ServerSideEncryption ?? "").startsWith("aws:kms"))
    return undefined;
  return m[1]!.toLowerCase();
}

const corrupt = (key: string, url: string) =>
  new CorruptError(
    `The bytes read of ${showKey(key)} in ${url} do not match the MD5 in its ETag: they changed or were damaged in transit.`,
  );

/** Passes the bytes through and fails the stream at its end when their MD5 is not `md5`. */
const md5Check = (md5: string, key: string, url: string) =>
  digestChecked("md5", md5, () => corrupt(key, url));

/** Skips `skip` bytes, passes `take`, and drops the rest. */
function slice(skip: number, take: number): Transform {
  return new Transform({
    transform(chunk: Buffer, _encoding, done) {
      const from = Math.min(skip, chunk.length);
      skip -= from;
      const part = chunk.subarray(from, from + take);
      take -= part.length;
      done(null, part.length ? part : undefined);
    },
  });
}

/** The chunks of `body` and their MD5, hex. Kept apart rather than joined: a copy of every byte read costs more
 * garbage collection than the bytes themselves. */
async function readAll(body: Readable): Promise<{ chunks: Buffer[]; md5: string }> {
  const chunks: Buffer[] = [];
  const hash = createHash("md5");
  for await (const chunk of body) {
    hash.update(chunk as Buffer);
    chunks.push(chunk as Buffer);
  }
  return { chunks, md5: hash.digest("hex") };
}

class S3StoreImpl implements S3Store {
  readonly kind = "s3" as const;
  readonly bucket: string;
  readonly root: string;
  readonly url: string;
  readonly #config: Config;
  readonly #client: S3Client;
  /** The settings of the client the store made, or `undefined` for a client the caller gave. */
  readonly #settings: S3ClientConfig | undefined;
  /**
   * The same connections with fewer attempts per request, by their number: one for streamed bodies that
   * cannot be sent twice, one fewer for reads whose first attempt went without the SDK.
   */
  readonly #clients = new Map<number, S3Client>();
  #streaming: S3Client | undefined;
  #closed = false;
  /** Set once any call has shown that the bucket exists (a HEAD's 404 cannot tell a missing bucket). */
  #bucketSeen = false;
  /** The part buffers of this store's uploads, shared by its puts. */
  readonly #uploadBuffers: ByteBudget;
  /** How reads reach the client's connections without the SDK, for a client the store made. */
  readonly #directOptions: DirectOptions | undefined;
  #direct: Promise<DirectGet | undefined> | undefined;

  constructor(
    config: Config,
    client: S3Client,
    settings: S3ClientConfig | undefined,
    direct: DirectOptions | undefined,
  ) {
    this.#config = config;
    this.#client = client;
    this.#settings = settings;
    this.#directOptions = direct;
    this.bucket = config.bucket;
    this.root = config.root;
    this.url = config.url;
    this.#uploadBuffers = new ByteBudget(config.uploadBuffer);
  }

  #check(): void {
    if (this.#closed) throw new UnavailableError(`The S3 store ${this.url} is closed.`);
  }

  #key(key: string): string {
    checkKey(key, this.root, this.url);
    return this.root + key;
  }

  #error(error: unknown, key: string | undefined, action: S3Action): unknown {
    return mapS3Error(error, {
      url: this.url,
      bucket: this.bucket,
      action,
      ...(key !== undefined && { key }),
    });
  }

  createOnlyMode(): Promise<"conditional" | "check"> {
    const mode = this.#config.createOnly;
    if (mode !== "auto") return Promise.resolve(mode);
    const scope = this.#config.probeScope;
    let probe = probes.get(scope);
    if (!probe) {
      probe = this.#probe();
      probes.set(scope, probe);
      // A failed probe (bucket missing, no permission) is not an answer: the next write probes again.
      probe.catch(() => probes.delete(scope));
    }
    return probe;
  }

  /** Writes a probe object twice with `If-None-Match: *`: a service that enforces it refuses the second. */
  async #probe(): Promise<"conditional" | "check"> {
    const key = `${PROBE_FOLDER}/${randomUUID()}`;
    const Key = this.root + key;
    const put = () =>
      this.#client.send(new PutObjectCommand({ Bucket: this.bucket, Key, Body: "probe", IfNoneMatch: "*" }));
    try {
      try {
        await put();
      } catch (error) {
        // A service that does not know the header at all may refuse it: it cannot enforce it either.
        const status = httpStatus(error);
        if (status === 400 || status === 501) return "check";
        throw error;
      }
      try {
        await put();
        return "check";
      } catch (error) {
        const status = httpStatus(error);
        if (status === 412 || status === 409) return "conditional";
        if (status === 400 || status === 501) return "check";
        throw error;
      }
    } catch (error) {
      throw this.#error(error, key, "write");
    } finally {
      await this.#client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key })).catch(() => {});
    }
  }

  async put(key: string, body: PutBody, options: PutOptions = {}): Promise<ObjectInfo> {
    this.#check();
    const Key = this.#key(key);
    const createOnly = options.createOnly === true;
    const conditional = createOnly && (await this.createOnlyMode()) === "conditional";
    if (createOnly && !conditional && (await this.#head(key, Key)) !== undefined) {
      throw new AlreadyExistsError(`The object ${showKey(key)} already exists in ${this.url}.`);
    }
    const params = {
      Bucket: this.bucket,
      Key,
      ...(options.contentType !== undefined && { ContentType: options.contentType }),
      ...(conditional && { IfNoneMatch: "*" }),
    };
    const { size, reopen } = options;
    if (body instanceof Uint8Array) {
      if (size !== undefined && size !== body.length) throw this.#sizeMismatch(key, body.length, size);
      // One request, retried by the SDK, without copying into parts: tree ranges and small objects.
      if (body.length <= Math.max(this.#config.singlePutLimit, this.#config.partSize)) {
        return this.#putBytes(key, params, body, createOnly);
      }
      return this.#upload(key, params, body, size, createOnly);
    }
    if (size !== undefined && size <= this.#config.partSize) {
      // A small stream is read into memory, as one part would be, and sent as one request the SDK can retry.
      // Streamed instead, its chunks (a file's read buffers) would live until sent, which costs more in garbage
      // collection than the copy.
      const giveBack = await this.#uploadBuffers.take(size);
      try {
        return await this.#putBytes(key, params, await this.#readWhole(key, body, size), createOnly);
      } finally {
        giveBack();
      }
    }
    if (reopen !== undefined && size !== undefined && size <= this.#config.singlePutLimit) {
      return this.#putWhole(key, params, body, reopen, size, createOnly);
    }
    // Other streams are read into parts.
    const giveBack = await this.#uploadBuffers.take(this.#buffersOf(size));
    try {
      return await this.#upload(key, params, body, size, createOnly);
    } finally {
      giveBack();
    }
  }

  async #putBytes(
    key: string,
    params: PutParams,
    bytes: Uint8Array,
    createOnly: boolean,
  ): Promise<ObjectInfo> {
    try {
      const out = await this.#client.send(
        new PutObjectCommand({ ...params, Body: bytes, ContentLength: bytes.length }),
      );
      this.#bucketSeen = true;
      return { key, size: bytes.length, etag: etagOf(out.ETag) };
    } catch (error) {
      throw this.#putError(error, key, createOnly);
    }
  }

  /** The `size` bytes of `body`, in one buffer; `INVALID_ARGUMENT` when it has more or fewer. */
  async #readWhole(key: string, body: PutBody, size: number): Promise<Uint8Array> {
    const bytes = Buffer.allocUnsafe(size);
    let read = 0;
    for await (const value of body as AsyncIterable<unknown>) {
      const chunk = toBytes(value);
      if (read + chunk.length > size) throw this.#sizeMismatch(key, read + chunk.length, size);
      bytes.set(chunk, read);
      read += chunk.length;
    }
    if (read !== size) throw this.#sizeMismatch(key, read, size);
    return bytes;
  }

  /**
   * One streamed PUT of a body the caller can reopen, buffering nothing. A failure worth retrying (no answer,
   * throttling, a server error) sends it again from a reopened stream, up to the store's attempts, waiting as
   * the SDK's standard retry strategy waits; a failure of the body itself is the caller's and is not retried.
   */
  async #putWhole(
    key: string,
    params: PutParams,
    body: PutBody,
    reopen: NonNullable<PutOptions["reopen"]>,
    size: number,
    createOnly: boolean,
  ): Promise<ObjectInfo> {
    for (let attempt = 1; ; attempt++) {
      const source = attempt === 1 ? body : reopen();
      const counted = this.#counted(key, source, size);
      const stream = Readable.from(counted.chunks, { objectMode: false, highWaterMark: 1 });
      // A failing body is recorded in `failure` and reported here. After the abort the SDK may have let go of the
      // stream, and an 'error' event nobody listens to would end the process.
      stream.on("error", () => {});
      try {
        const out = await this.#streamingClient().send(
          new PutObjectCommand({ ...params, Body: stream, ContentLength: size }),
          { abortSignal: counted.abort.signal },
        );
        this.#bucketSeen = true;
        return { key, size: counted.count, etag: etagOf(out.ETag) };
      } catch (error) {
        // The SDK may have stopped reading before the end, or before the start.
        stream.destroy();
        if (source instanceof Readable) source.destroy();
        if (counted.failure) throw counted.failure.error;
        if (attempt >= this.#maxAttempts || !worthRetrying(error)) {
          throw this.#putError(error, key, createOnly);
        }
        await retryBackoff(attempt);
      }
    }
  }

  /** The part size of an upload of `size` bytes: the configured one, raised when 10,000 parts would not do. */
  #partSizeOf(size: number | undefined): number {
    return Math.max(this.#config.partSize, size !== undefined ? Math.ceil(size / MAX_PARTS) : 0);
  }

  /** The most an upload of a stream of `size` bytes holds in part buffers: the parts in flight and the next. */
  #buffersOf(size: number | undefined): number {
    const most = (this.#config.partConcurrency + 1) * this.#partSizeOf(size);
    return size === undefined ? most : Math.min(size, most);
  }

  #sizeMismatch(key: string, actual: number, expected: number): InvalidArgumentError {
    return new InvalidArgumentError(
      `The body of ${showKey(key)} in ${this.url} has ${actual} bytes, not the ${expected} its size option says.`,
    );
  }

  #putError(error: unknown, key: string, createOnly: boolean): unknown {
    const status = httpStatus(error);
    if (createOnly && (status === 412 || status === 409)) {
      return new AlreadyExistsError(
        status === 412
          ? `The object ${showKey(key)} already exists in ${this.url}.`
          : `The object ${showKey(key)} in ${this.url} is being created by another writer.`,
        { cause: error },
      );
    }
    return this.#error(error, key, "write");
  }

  /**
   * The chunks of `body`, counting its bytes against `size`. A failure of the body, or a count other than `size`,
   * is kept in `failure` and aborts `abort`: a streamed PUT whose body fails must end its request, or the service
   * would wait for the missing bytes.
   */
  #counted(key: string, body: PutBody, size: number | undefined): CountedBody {
    const url = this.url;
    const mismatch = (n: number, expected: number) => this.#sizeMismatch(key, n, expected);
    // `read` runs only once its chunks are asked for, when `counted` is there.
    const counted: CountedBody = {
      count: 0,
      failure: undefined,
      abort: new AbortController(),
      chunks: read(),
    };
    const fail = (error: unknown) => {
      counted.failure = { error };
      counted.abort.abort();
      return error;
    };
    async function* read(): AsyncGenerator<Uint8Array> {
      const iterator = (body as AsyncIterable<unknown>)[Symbol.asyncIterator]();
      let done = false;
      try {
        for (;;) {
          let next: IteratorResult<unknown>;
          try {
            next = await iterator.next();
          } catch (error) {
            done = true;
            fail(error);
            throw new BodyError(`the body of ${showKey(key)} for ${url} failed`, { cause: error });
          }
          if (next.done) break;
          let bytes: Uint8Array;
          try {
            bytes = toBytes(next.value);
          } catch (error) {
            throw fail(error);
          }
          counted.count += bytes.length;
          if (size !== undefined && counted.count > size) throw fail(mismatch(counted.count, size));
          // What is thrown in here is the reader tearing the chunks down, not a failure of the body.
          yield bytes;
        }
        done = true;
      } finally {
        if (!done) await iterator.return?.();
      }
      // Failing here, before the body ends, keeps the request (or the multipart upload) from completing.
      if (size !== undefined && counted.count !== size) throw fail(mismatch(counted.count, size));
    }
    return counted;
  }

  /**
   * Sends `body` as a multipart upload, `partConcurrency` parts at a time, completed only when every part is in, so
   * the object appears whole or not at all; a body that turns out to fit in one part goes as one PUT. A stream's
   * bytes are copied once, into part buffers this upload takes `partConcurrency + 1` of at most and reuses as its
   * parts go in; a body in memory is sent in slices of itself. (lib-storage's `Upload`, used before, concatenated
   * each part's chunks into a new buffer and kept the rest of the last chunk as a view of it, holding it too:
   * uploading 4 × 64 MiB in parts of 8 MiB peaked at 324 MB, all of it waiting for garbage collection.) After a
   * failure the parts under way are cancelled and the upload aborted.
   */
  async #upload(
    key: string,
    params: PutParams,
    body: PutBody,
    size: number | undefined,
    createOnly: boolean,
  ): Promise<ObjectInfo> {
    const { Bucket, Key } = params;
    const partSize = this.#partSizeOf(size);
    const concurrency = this.#config.partConcurrency;
    const counted = body instanceof Uint8Array ? undefined : this.#counted(key, body, size);
    const client = this.#client;
    /** Cancels the parts under way once the upload has failed. */
    const cancel = new AbortController();
    let serviceFailure: { error: unknown } | undefined;
    let uploadId: string | undefined;
    const done: { PartNumber: number; ETag: string | undefined }[] = [];
    const running = new Set<Promise<void>>();
    /** Part buffers free to fill, and how many this upload made. */
    const free: Buffer[] = [];
    let made = 0;
    let sent = 0;
    /** Waits until fewer than `most` parts are under way, or a part failed. */
    const under = async (most: number) => {
      while (running.size > 0 && running.size >= most && !serviceFailure) await Promise.race(running);
    };
    /** A part buffer to fill: a free one, a new one while there are fewer than `concurrency + 1`, else the next freed. */
    const take = async (): Promise<Buffer | undefined> => {
      if (free.length === 0 && made > concurrency) await under(running.size);
      if (serviceFailure) return undefined;
      const reused = free.pop();
      if (reused) return reused;
      made++;
      return Buffer.allocUnsafeSlow(partSize);
    };
    const send = async (bytes: Uint8Array, buffer?: Buffer) => {
      if (uploadId === undefined) {
        const out = await client.send(
          new CreateMultipartUploadCommand({
            Bucket,
            Key,
            ...(params.ContentType !== undefined && { ContentType: params.ContentType }),
          }),
        );
        uploadId = out.UploadId;
        if (uploadId === undefined) throw new Error("CreateMultipartUpload gave no UploadId.");
      }
      if (sent === MAX_PARTS) {
        throw new InvalidArgumentError(
          `The body of ${showKey(key)} for ${this.url} needs more than ${MAX_PARTS} parts of ${partSize} bytes; give its size, so that the parts are large enough.`,
        );
      }
      const PartNumber = ++sent;
      const part = client
        .send(
          new UploadPartCommand({
            Bucket,
            Key,
            UploadId: uploadId,
            PartNumber,
            Body: bytes,
            ContentLength: bytes.length,
          }),
          { abortSignal: cancel.signal },
        )
        .then(
          (out) => {
            done.push({ PartNumber, ETag: out.ETag });
          },
          (error: unknown) => {
            serviceFailure ??= { error };
            cancel.abort();
          },
        )
        .finally(() => {
          running.delete(part);
          if (buffer) free.push(buffer);
        });
      running.add(part);
      await under(concurrency);
      if (serviceFailure) throw serviceFailure.error;
    };
    /** The first part, held until a second comes: a body of one part goes as one PUT. */
    let first: { bytes: Uint8Array; buffer: Buffer | undefined } | undefined;
    const ship = async (bytes: Uint8Array, buffer?: Buffer) => {
      if (first === undefined) {
        first = { bytes, buffer };
        return;
      }
      if (sent === 0) await send(first.bytes, first.buffer);
      await send(bytes, buffer);
    };
    try {
      if (!counted) {
        const bytes = body as Uint8Array;
        for (let at = 0; at < bytes.length; at += partSize) await ship(bytes.subarray(at, at + partSize));
      } else {
        let buffer: Buffer | undefined;
        let filled = 0;
        for await (const chunk of counted.chunks) {
          for (let at = 0; at < chunk.length; ) {
            buffer ??= await take();
            if (!buffer) break;
            const n = Math.min(partSize - filled, chunk.length - at);
            buffer.set(at === 0 && n === chunk.length ? chunk : chunk.subarray(at, at + n), filled);
            filled += n;
            at += n;
            if (filled === partSize) {
              await ship(buffer, buffer);
              buffer = undefined;
              filled = 0;
            }
          }
          if (serviceFailure) break;
        }
        // A failure of the body itself was thrown by its chunks, above.
        if (serviceFailure) throw serviceFailure.error;
        if (buffer && filled > 0) await ship(buffer.subarray(0, filled), buffer);
      }
      if (sent === 0) {
        // The whole body fits in one part.
        return await this.#putBytes(key, params, first?.bytes ?? new Uint8Array(0), createOnly);
      }
      await under(1);
      if (serviceFailure) throw serviceFailure.error;
      done.sort((a, b) => a.PartNumber - b.PartNumber);
      const out = await client.send(
        new CompleteMultipartUploadCommand({
          Bucket,
          Key,
          UploadId: uploadId,
          MultipartUpload: { Parts: done },
          ...(params.IfNoneMatch !== undefined && { IfNoneMatch: params.IfNoneMatch }),
        }),
      );
      this.#bucketSeen = true;
      return { key, size: counted?.count ?? (body as Uint8Array).length, etag: etagOf(out.ETag) };
    } catch (error) {
      cancel.abort();
      await Promise.allSettled(running);
      if (uploadId !== undefined) {
        await client.send(new AbortMultipartUploadCommand({ Bucket, Key, UploadId: uploadId })).catch(() => {
          // Unreachable or unsupported: incomplete uploads are never listed, and a bucket lifecycle rule
          // (AbortIncompleteMultipartUpload) removes their parts.
        });
      }
      if (counted?.failure) throw counted.failure.error;
      // Reported already: a body too large for its parts, or the one PUT of a body that fit in a part.
      if (error instanceof CairnError) throw error;
      throw this.#putError(serviceFailure?.error ?? error, key, createOnly);
    }
  }

  async get(key: string, options: GetOptions = {}): Promise<ObjectReader> {
    this.#check();
    const Key = this.#key(key);
    const { range } = options;
    if (range !== undefined) {
      const { start, end } = range;
      if (
        !Number.isSafeInteger(start) ||
        start < 0 ||
        (end !== undefined && (!Number.isSafeInteger(end) || end < start))
      ) {
        throw new InvalidArgumentError(
          `The range ${JSON.stringify(range)} for ${showKey(key)} in ${this.url} is not valid; expected 0 ≤ start ≤ end.`,
        );
      }
    }
    for (let attempt = 1; ; attempt++) {
      let out: GetAnswer | GetObjectCommandOutput;
      const Range = range && `bytes=${range.start}-${range.end ?? ""}`;
      try {
        const direct = await (await this.#directGet())?.get(Key, Range);
        if (direct === undefined || direct === "retry") {
          // After a first attempt that failed, the rest of the read's attempts, after the SDK's first backoff.
          if (direct === "retry") await retryBackoff();
          const client = direct === "retry" ? this.#retryClient() : this.#client;
          out = await client.send(
            new GetObjectCommand({ Bucket: this.bucket, Key, ...(Range && { Range }) }),
          );
        } else {
          out = direct;
        }
      } catch (error) {
        throw this.#error(error, key, "read");
      }
      this.#bucketSeen = true;
      const served = parseContentRange(out.ContentRange);
      const size = served?.total ?? out.ContentLength ?? 0;
      const info: ObjectInfo = {
        key,
        size,
        etag: etagOf(out.ETag),
        ...(out.LastModified && { lastModified: out.LastModified }),
      };
      const body = out.Body as Readable;
      if (range) return { ...info, body: this.#exactRange(key, body, range, served, size) };
      if (options.verify === false) return { ...info, body };
      const md5 = plainMd5(out);
      if (md5 === undefined) {
        // Every S3 service sends an ETag; an empty one is s3rver caught between writing an object and its
        // digest, so the bytes may be partial: read again.
        if (!/^"?"?$/.test(out.ETag ?? "") || size > VERIFY_IN_MEMORY || attempt >= VERIFY_ATTEMPTS) {
          return { ...info, body };
        }
        body.destroy();
        await verifyBackoff(attempt);
        continue;
      }
      if (size > VERIFY_IN_MEMORY)
        return { ...info, body: pipeline(body, md5Check(md5, key, this.url), () => {}) };
      // Small objects are read whole and checked before the caller sees a byte, so a read that raced an
      // overwrite on a service that does not replace objects atomically (s3rver) is simply read again.
      // A body cut short (the connection reset mid-read, as s3rver does when the object shrinks under it) is
      // read again too.
      let bytes: { chunks: Buffer[]; md5: string } | undefined;
      let failure: unknown;
      try {
        bytes = await readAll(body);
      } catch (error) {
        failure = error;
      }
      if (bytes?.md5 === md5) return { ...info, body: chunkStream(bytes.chunks) };
      if (attempt >= VERIFY_ATTEMPTS)
        throw bytes ? corrupt(key, this.url) : this.#error(failure, key, "read");
      await verifyBackoff(attempt);
    }
  }

  /**
   * The requested bytes of a ranged answer. A server that sends more than was asked (s3rver ignores a range
   * ending at byte 0) is trimmed here; one that sends less fails the read.
   */
  #exactRange(
    key: string,
    body: Readable,
    range: { start: number; end?: number },
    served: ContentRange | undefined,
    size: number,
  ): Readable {
    const end = Math.min(range.end ?? size - 1, size - 1);
    const from = served?.start ?? 0;
    const to = served?.end ?? size - 1;
    if (from === range.start && to === end) return body;
    if (from > range.start || to < end) {
      body.destroy();
      throw new UnavailableError(
        `The service answered bytes ${from}-${to} of ${showKey(key)} in ${this.url} when ${range.start}-${end} were asked.`,
      );
    }
    return pipeline(body, slice(range.start - from, end - range.start + 1), () => {});
  }

  /**
   * The direct reader, prepared on the first read; none for a client the caller gave, or when one attempt
   * per request is all there may be.
   */
  #directGet(): Promise<DirectGet | undefined> | undefined {
    const options = this.#directOptions;
    if (!options || this.#maxAttempts < 2) return undefined;
    this.#direct ??= DirectGet.prepare(this.#client, options);
    return this.#direct;
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    this.#check();
    return this.#head(key, this.#key(key));
  }

  async #head(key: string, Key: string): Promise<ObjectInfo | undefined> {
    try {
      const out = await this.#client.send(new HeadObjectCommand({ Bucket: this.bucket, Key }));
      this.#bucketSeen = true;
      return {
        key,
        size: out.ContentLength ?? 0,
        etag: etagOf(out.ETag),
        ...(out.LastModified && { lastModified: out.LastModified }),
      };
    } catch (error) {
      if (httpStatus(error) !== 404) throw this.#error(error, key, "read");
      await this.#checkBucket();
      return undefined;
    }
  }

  /** Tells a missing bucket from a missing key once per store, for the first HEAD that found nothing. */
  async #checkBucket(): Promise<void> {
    if (this.#bucketSeen) return;
    try {
      await this.#client.send(new HeadBucketCommand({ Bucket: this.bucket }));
      this.#bucketSeen = true;
    } catch (error) {
      if (httpStatus(error) === 404) {
        throw new NotFoundError(`The bucket "${this.bucket}" of ${this.url} does not exist.`, {
          cause: error,
        });
      }
      // Without permission to HEAD the bucket, the object's 404 is taken at its word.
      if (httpStatus(error) === 403) return;
      throw this.#error(error, undefined, "read");
    }
  }

  async *list(prefix: string, options: ListOptions = {}): AsyncGenerator<ObjectInfo> {
    this.#check();
    checkListPrefix(prefix, this.url);
    const { after } = options;
    // The last key yielded: keys are yielded in strictly increasing byte order, so a server whose pages are not
    // (s3rver's pages follow its folder walk) never makes the store yield a key twice or out of order.
    let last = after;
    const pages = pagesAhead((token, size) => this.#listPage(prefix, token, size, after), {
      first: FIRST_PAGE,
      size: PAGE,
    });
    for await (const infos of pages) {
      for (const info of infos) {
        if (last !== undefined && compareKeys(info.key, last) <= 0) continue;
        last = info.key;
        yield info;
      }
    }
  }

  /**
   * Up to `size` objects whose keys start with `prefix`, in byte order, from `token` on (from the first key past
   * `after` without one), and the token of the rest.
   */
  async #listPage(
    prefix: string,
    token: string | undefined,
    size: number,
    after: string | undefined,
  ): Promise<ListedPage<ObjectInfo>> {
    this.#check();
    const root = this.root;
    let page: ListObjectsV2CommandOutput;
    try {
      page = await this.#client.send(
        new ListObjectsV2Command({
          Bucket: this.bucket,
          Prefix: root + prefix,
          MaxKeys: size,
          ...(token !== undefined && { ContinuationToken: token }),
          ...(token === undefined && after !== undefined && { StartAfter: root + safeStartAfter(after) }),
        }),
      );
    } catch (error) {
      throw this.#error(error, prefix === "" ? "(listing)" : `${prefix}… (listing)`, "list");
    }
    this.#bucketSeen = true;
    const items: ObjectInfo[] = [];
    for (const object of page.Contents ?? []) {
      if (object.Key === undefined || !object.Key.startsWith(root)) continue;
      const key = object.Key.slice(root.length);
      if (!key.startsWith(prefix) || key.startsWith(`${PROBE_FOLDER}/`)) continue;
      items.push({
        key,
        size: object.Size ?? 0,
        etag: etagOf(object.ETag),
        ...(object.LastModified && { lastModified: object.LastModified }),
      });
    }
    items.sort((a, b) => compareKeys(a.key, b.key));
    return { items, next: page.IsTruncated ? page.NextContinuationToken : undefined };
  }

  async delete(key: string): Promise<void> {
    this.#check();
    const Key = this.#key(key);
    try {
      await this.#client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key }));
      this.#bucketSeen = true;
    } catch (error) {
      // Deleting an absent key succeeds on S3; some services answer 404 instead.
      if (errorCode(error) === "NoSuchKey") return;
      throw this.#error(error, key, "delete");
    }
  }

  async copy(source: string, target: string, options: { createOnly?: boolean } = {}): Promise<ObjectInfo> {
    this.#check();
    const SourceKey = this.#key(source);
    const TargetKey = this.#key(target);
    const createOnly = options.createOnly === true;
    if (SourceKey === TargetKey) {
      // S3 refuses to copy an object onto itself unchanged; the result would be the object as it is.
      const info = await this.#head(source, SourceKey);
      if (!info) throw new NotFoundError(`No object ${showKey(source)} in ${this.url} to copy.`);
      if (createOnly)
        throw new AlreadyExistsError(`The object ${showKey(target)} already exists in ${this.url}.`);
      return info;
    }
    const conditional = createOnly && (await this.createOnlyMode()) === "conditional";
    for (let attempt = 1; ; attempt++) {
      // The source's size is not in CopyObject's answer: read it first and copy exactly that version.
      const from = await this.#head(source, SourceKey);
      if (!from) throw new NotFoundError(`No object ${showKey(source)} in ${this.url} to copy.`);
      if (from.size > MAX_COPY_BYTES) {
        throw new UnsupportedError(
          `The object ${showKey(source)} in ${this.url} is ${from.size} bytes; a server-side copy above 5 GiB needs a multipart copy, which this store does not do.`,
        );
      }
      if (createOnly && !conditional && (await this.#head(target, TargetKey)) !== undefined) {
        throw new AlreadyExistsError(`The object ${showKey(target)} already exists in ${this.url}.`);
      }
      try {
        const out = await this.#client.send(
          new CopyObjectCommand({
            Bucket: this.bucket,
            Key: TargetKey,
            CopySource: `${this.bucket}/${SourceKey.split("/").map(encodeURIComponent).join("/")}`,
            ...(from.etag && { CopySourceIfMatch: from.etag }),
            ...(conditional && { IfNoneMatch: "*" }),
          }),
        );
        return {
          key: target,
          size: from.size,
          etag: etagOf(out.CopyObjectResult?.ETag),
          ...(out.CopyObjectResult?.LastModified && { lastModified: out.CopyObjectResult.LastModified }),
        };
      } catch (error) {
        const status = httpStatus(error);
        // 412 is either the target existing (If-None-Match) or the source replaced since its HEAD.
        if (status === 412 && createOnly && conditional && (await this.#head(target, TargetKey))) {
          throw new AlreadyExistsError(`The object ${showKey(target)} already exists in ${this.url}.`, {
            cause: error,
          });
        }
        if ((status === 412 || errorCode(error) === "NoSuchKey") && attempt < COPY_ATTEMPTS) continue;
        if (createOnly && status === 409) throw this.#putError(error, target, true);
        throw this.#error(error, errorCode(error) === "NoSuchKey" ? source : target, "copy");
      }
    }
  }

  /**
   * The client of streamed PUTs: one attempt, since the store retries them itself from a reopened body, and a
   * logger of its own, without which the SDK writes to the console whenever such a request fails. The other
   * clients keep the SDK's default of none: any other logger makes the SDK filter every request's input and
   * output for it, which costs more CPU than a small PUT.
   */
  #streamingClient(): S3Client {
    if (!this.#settings) return this.#client;
    this.#streaming ??= new S3Client({
      ...this.#settings,
      maxAttempts: 1,
      logger: SILENT,
      requestHandler: this.#client.config.requestHandler,
    });
    return this.#streaming;
  }

  /** Attempts per request of the store's own client. */
  get #maxAttempts(): number {
    return Number(this.#settings?.maxAttempts ?? 1);
  }

  /** The client for what is left of a read whose first attempt failed. */
  #retryClient(): S3Client {
    return this.#clientWith(this.#maxAttempts - 1);
  }

  /** The store's client with `attempts` attempts per request; a caller's client keeps its own retry policy. */
  #clientWith(attempts: number): S3Client {
    if (!this.#settings || attempts === this.#maxAttempts) return this.#client;
    let client = this.#clients.get(attempts);
    if (!client) {
      client = new S3Client({
        ...this.#settings,
        maxAttempts: attempts,
        // Shares the connection pool; only the retry policy differs.
        requestHandler: this.#client.config.requestHandler,
      });
      this.#clients.set(attempts, client);
    }
    return client;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#settings) this.#client.destroy();
    // Not destroyed: they share the main client's handler, which the main client's owner destroys.
    this.#clients.clear();
    this.#streaming = undefined;
    (await this.#direct)?.close();
  }
}
