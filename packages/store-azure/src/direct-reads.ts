// Blob reads and listings without the SDK's pipeline. Through `BlobClient.download`, a read costs ~0.35 ms of
// CPU besides its bytes (a client per blob, header deserialization, tracing spans, abort signals): most of the
// work of downloading a small blob; a listing page of 2,000 blobs costs ~0.25 s of CPU in the SDK's model
// deserialization. Here a read or a page is one GET with the store's SAS, or with a SAS the store signs itself
// from its account key (read and list only), on connections of its own (core's `HttpGets`, which hands a body
// over as the socket reads it). Only a 200 or 206 answer is taken; any other, and any failure before one, goes
// to the SDK, which asks again and reports it as before. A body cut short is resumed where it stopped, pinned to
// the same version by its ETag, as the SDK's downloads are.
import { Readable } from "node:stream";
import {
  AnonymousCredential,
  ContainerSASPermissions,
  generateBlobSASQueryParameters,
  StorageSharedKeyCredential,
} from "@azure/storage-blob";
import { chunkStream, type HttpAnswer, HttpGets } from "@cairn/core";
import { SaxesParser } from "saxes";

/** The service version asked for; every version since has the same GET Blob answer for what is read here. */
const SERVICE_VERSION = "2023-11-03";
/** A SAS the store signs is valid this long, and signed again when less than {@link RESIGN_MS} is left. */
const SAS_LIFETIME_MS = 60 * 60_000;
const RESIGN_MS = 15 * 60_000;
/** Times a cut body is resumed, as the store's SDK downloads do (`maxRetryRequests`). */
const RESUMES = 5;

/** A blob of a listing page, as the service names it (with the store's prefix). */
export interface ListedBlob {
  name: string;
  size: number;
  etag: string;
  lastModified: Date | undefined;
}

/** One page of a listing and the marker of the next, if any. */
export interface ListPage {
  blobs: ListedBlob[];
  next: string | undefined;
}

/**
 * A `List Blobs` answer's blobs and next marker, or `undefined` when it is not one (another root, or not XML).
 * Text is kept as it is (names may start or end with spaces); entities and character references are decoded
 * once; a name marked `Encoded="true"` (one XML cannot carry) is URL-decoded. Read with a SAX parser, saxes: a page
 * of 2,000 blobs costs ~10 ms of CPU, against ~90 ms built into objects first (fast-xml-parser).
 */
export function parseListPage(xml: string): ListPage | undefined {
  const parser = new SaxesParser();
  /** The open elements' names, the root first. */
  const path: string[] = [];
  let text = "";
  let root: string | undefined;
  let blob: { name: string; encoded: boolean; size: string; etag: string; modified: string } | undefined;
  let next = "";
  const blobs: ListedBlob[] = [];
  parser.on("opentag", (tag) => {
    path.push(tag.name);
    text = "";
    root ??= tag.name;
    if (tag.name === "Blob" && path.length === 3 && path[1] === "Blobs") {
      blob = { name: "", encoded: false, size: "", etag: "", modified: "" };
    } else if (blob && tag.name === "Name" && path.length === 4) {
      blob.encoded = tag.attributes.Encoded === "true";
    }
  });
  parser.on("text", (t) => {
    text += t;
  });
  parser.on("cdata", (t) => {
    text += t;
  });
  parser.on("closetag", (tag) => {
    const depth = path.length;
    if (blob && depth === 4 && tag.name === "Name") blob.name = text;
    else if (blob && depth === 5 && path[3] === "Properties") {
      if (tag.name === "Content-Length") blob.size = text;
      else if (tag.name === "Etag") blob.etag = text;
      else if (tag.name === "Last-Modified") blob.modified = text;
    } else if (blob && depth === 3 && tag.name === "Blob") {
      blobs.push({
        name: blob.encoded ? decodeURIComponent(blob.name) : blob.name,
        size: Number(blob.size || 0),
        etag: blob.etag,
        lastModified: blob.modified ? new Date(blob.modified) : undefined,
      });
      blob = undefined;
    } else if (depth === 2 && tag.name === "NextMarker") next = text;
    path.pop();
    text = "";
  });
  try {
    parser.write(xml).close();
  } catch {
    return undefined;
  }
  if (root !== "EnumerationResults") return undefined;
  return { blobs, next: next || undefined };
}

/**
 * Whether the SDK's pipeline sends requests for `endpoint` through a proxy, as it decides from the environment
 * (`@azure/core-rest-pipeline`'s proxy policy): when `HTTPS_PROXY`, `ALL_PROXY` or `HTTP_PROXY` is set (upper or
 * lower case; for either protocol), unless `NO_PROXY` names the endpoint's host, exactly or as `.domain` (which
 * takes the domain and every host under it).
 */
export function proxiedBySdk(endpoint: URL, env: NodeJS.ProcessEnv = process.env): boolean {
  const value = (name: string) => env[name] || env[name.toLowerCase()];
  if (!(value("HTTPS_PROXY") || value("ALL_PROXY") || value("HTTP_PROXY"))) return false;
  const host = endpoint.hostname;
  const bypassed = (value("NO_PROXY") ?? "")
    .split(",")
    .map((pattern) => pattern.trim())
    .some((pattern) =>
      pattern.startsWith(".")
        ? host.endsWith(pattern) || host === pattern.slice(1)
        : pattern !== "" && host === pattern,
    );
  return !bypassed;
}

/** What a read answered, for the store to make its {@link ObjectReader} of. */
export interface DirectAnswer {
  /** The whole blob's size. */
  size: number;
  etag: string;
  lastModified: Date | undefined;
  /** The MD5 the service keeps of the whole blob (`Content-MD5`, base64), when it sent one. */
  contentMd5: string | undefined;
  body: Readable;
}

export interface DirectOptions {
  /** Blob service endpoint without SAS. */
  endpoint: string;
  container: string;
  credential: unknown;
  /** The store's SAS, without `?`. */
  sas: string | undefined;
  /** Time until the answer's headers, before the read goes to the SDK. */
  timeoutMs: number;
}

/** Answers up to this size are read whole before they are handed over. */
const IN_MEMORY = 4 * 1024 * 1024;

/** `bytes=start-end` for `x-ms-range`, or `undefined` for the whole blob. */
const rangeHeader = (start: number, end: number | undefined) =>
  start === 0 && end === undefined ? undefined : `bytes=${start}-${end ?? ""}`;

/** Reads blobs and listing pages of one container with the store's credential, or says the SDK should. */
export class DirectReads {
  readonly #options: DirectOptions;
  readonly #base: URL;
  readonly #containerPath: string;
  readonly #http = new HttpGets();
  readonly #sign: (() => string) | undefined;
  #sas: { query: string; renewAt: number } | undefined;
  /** Cleared by an answer that says this way does not work here (a refusal, a malformed request). */
  #usable = true;
  /** The same for listings, which a SAS may allow or not apart from reads. */
  #listable = true;

  private constructor(options: DirectOptions, sign: (() => string) | undefined) {
    this.#options = options;
    this.#base = new URL(`${options.endpoint.replace(/\/+$/, "")}/${encodeURIComponent(options.container)}/`);
    this.#containerPath = this.#base.pathname.slice(0, -1);
    this.#sign = sign;
  }

  /**
   * A reader for the store's credential: its SAS, a SAS signed with its account key, or none (a public
   * container); `undefined` for other credentials (tokens), which only the SDK's pipeline knows how to use.
   */
  static create(options: DirectOptions): DirectReads | undefined {
    if (!/^https?:\/\//i.test(options.endpoint)) return undefined;
    // These connections go straight to the service; where the SDK would go through a proxy, so do the reads.
    if (proxiedBySdk(new URL(options.endpoint))) return undefined;
    const { credential } = options;
    if (credential instanceof StorageSharedKeyCredential && options.sas === undefined) {
      return new DirectReads(options, () =>
        generateBlobSASQueryParameters(
          {
            containerName: options.container,
            permissions: ContainerSASPermissions.parse("rl"),
            expiresOn: new Date(Date.now() + SAS_LIFETIME_MS),
          },
          credential,
        ).toString(),
      );
    }
    if (credential instanceof AnonymousCredential || credential === undefined) {
      return new DirectReads(options, undefined);
    }
    return undefined;
  }

  close(): void {
    this.#http.close();
  }

  /** The SAS query of every request ("" for none). */
  #query(): string {
    if (!this.#sign) return this.#options.sas ?? "";
    const now = Date.now();
    if (!this.#sas || now >= this.#sas.renewAt) {
      this.#sas = { query: this.#sign(), renewAt: now + SAS_LIFETIME_MS - RESIGN_MS };
    }
    return this.#sas.query;
  }

  /**
   * Bytes `start`..`end` (inclusive; `end` absent for the rest) of `blobName`; `undefined` when the SDK should
   * ask instead: the service answered anything but the bytes, or did not answer in time.
   */
  async get(blobName: string, start: number, end: number | undefined): Promise<DirectAnswer | undefined> {
    if (!this.#usable) return undefined;
    const path = `${this.#base.pathname}${blobName.split("/").map(encodeURIComponent).join("/")}`;
    const res = await this.#send(path, rangeHeader(start, end), undefined);
    if (!res) return undefined;
    const { status } = res;
    if (status !== 200 && status !== 206) {
      // Read to its end, so that its connection serves again.
      res.body.resume();
      // A refusal or a request the service cannot read may be this way of asking: every later read goes through
      // the SDK. Others (a missing blob, a range past the end, throttling) are the read's own.
      if (status === 400 || status === 401 || status === 403) this.#usable = false;
      return undefined;
    }
    const h = res.headers;
    const etag = h.etag ?? "";
    const length = Number(h["content-length"] ?? 0);
    const total = h["content-range"] ? Number(/\/(\d+)$/.exec(h["content-range"])?.[1]) : length;
    // The last byte this answer ends at: where a resumed read must stop too.
    const last = start + length - 1;
    const resume = (offset: number) =>
      this.#send(path, `bytes=${offset}-${last}`, etag).then((r) => {
        if (r?.status === 206) return r.body;
        r?.body.resume();
        return undefined;
      });
    const bytes = new Resumed(res.body, start, last, resume);
    let whole: Buffer[] | undefined;
    if (length <= IN_MEMORY) {
      // Small answers are read whole first: one stream over chunks in memory costs less than one that follows
      // the response, and a cut is resumed before the caller sees a byte. One that cannot be
      // resumed (the blob changed meanwhile) is read again by the SDK, whole and of one version.
      whole = [];
      try {
        for await (const chunk of bytes) whole.push(chunk);
      } catch {
        return undefined;
      }
    }
    return {
      size: Number.isFinite(total) ? total : length,
      etag,
      lastModified: h["last-modified"] ? new Date(h["last-modified"]) : undefined,
      contentMd5: Array.isArray(h["content-md5"]) ? h["content-md5"][0] : h["content-md5"],
      body: whole ? chunkStream(whole) : bytes,
    };
  }

  /**
   * One page of the blobs whose names start with `prefix`, from `marker` on, or `undefined` when the SDK should
   * ask instead.
   */
  async listPage(prefix: string, marker: string | undefined, max: number): Promise<ListPage | undefined> {
    if (!this.#listable) return undefined;
    const params = new URLSearchParams({
      restype: "container",
      comp: "list",
      prefix,
      maxresults: String(max),
    });
    if (marker) params.set("marker", marker);
    const res = await this.#send(`${this.#containerPath}?${params}`, undefined, undefined);
    if (!res) return undefined;
    const { status } = res;
    if (status !== 200) {
      res.body.resume();
      if (status === 400 || status === 401 || status === 403) this.#listable = false;
      return undefined;
    }
    let xml: string;
    try {
      const chunks: Buffer[] = [];
      for await (const chunk of res.body) chunks.push(chunk as Buffer);
      xml = Buffer.concat(chunks).toString("utf8");
    } catch {
      return undefined;
    }
    const page = parseListPage(xml);
    // Not the answer this code reads: the SDK reads this service from now on.
    if (!page) this.#listable = false;
    return page;
  }

  /** The answer to a GET of `path`, or `undefined` when none came in time (or the connection failed). */
  #send(
    path: string,
    range: string | undefined,
    ifMatch: string | undefined,
  ): Promise<HttpAnswer | undefined> {
    const sas = this.#query();
    const query = sas ? `${path.includes("?") ? "&" : "?"}${sas}` : "";
    const headers: Record<string, string> = { "x-ms-version": SERVICE_VERSION };
    if (range !== undefined) headers["x-ms-range"] = range;
    if (ifMatch !== undefined) headers["if-match"] = ifMatch;
    return this.#http
      .get(this.#base, path + query, headers, { timeoutMs: this.#options.timeoutMs })
      .catch(() => undefined);
  }
}

/**
 * The bytes `start`..`last` of `first`, and of the answers `resume` gives from where a cut one stopped (at most
 * {@link RESUMES} times); fails with the cut's error when no resumption answers.
 *
 * A stream that passes each answer's chunks on as they come, pausing the answer while the reader is behind: an
 * async generator over the answer, made a stream with `Readable.from`, costs two more promises per chunk
 * (~0.04 s of the main thread per 256 MB read in 64 KiB chunks).
 */
class Resumed extends Readable {
  #res: Readable | undefined;
  #offset: number;
  readonly #last: number;
  readonly #resume: (offset: number) => Promise<Readable | undefined>;
  #resumes = 0;

  constructor(
    first: Readable,
    start: number,
    last: number,
    resume: (offset: number) => Promise<Readable | undefined>,
  ) {
    super();
    this.#offset = start;
    this.#last = last;
    this.#resume = resume;
    this.#follow(first);
  }

  #follow(res: Readable): void {
    this.#res = res;
    res.on("data", (chunk: Buffer) => {
      this.#offset += chunk.length;
      if (!this.push(chunk)) res.pause();
    });
    res.once("end", () => {
      if (this.#offset > this.#last) {
        this.#res = undefined;
        this.push(null);
      } else {
        this.#cut(
          res,
          Object.assign(new Error(`The answer ended at byte ${this.#offset} of ${this.#last + 1}.`), {
            code: "ECONNRESET",
          }),
        );
      }
    });
    res.once("error", (error) => this.#cut(res, error));
    // An answer closed before its end or an error (its connection destroyed) is cut too.
    res.once("close", () => {
      if (!res.readableEnded)
        this.#cut(res, Object.assign(new Error("The answer was cut."), { code: "ECONNRESET" }));
    });
  }

  /** Drops `res`, cut by `error`, and reads the rest from a new answer, or fails with `error`. */
  #cut(res: Readable, error: Error): void {
    if (this.#res !== res) return; // Already dropped, or this stream was destroyed.
    this.#drop();
    if (this.#resumes++ >= RESUMES) {
      this.destroy(error);
      return;
    }
    this.#resume(this.#offset).then(
      (next) => {
        if (this.destroyed) next?.destroy();
        else if (next) this.#follow(next);
        else this.destroy(error);
      },
      () => this.destroy(error),
    );
  }

  override _read(): void {
    this.#res?.resume();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.#drop();
    callback(error);
  }

  /** Stops following the current answer, if any, and closes it; its later events are ignored. */
  #drop(): void {
    const res = this.#res;
    this.#res = undefined;
    if (!res) return;
    res.removeAllListeners("data");
    res.on("error", () => {});
    res.destroy();
  }
}
