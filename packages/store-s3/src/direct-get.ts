// Object reads without the SDK's per-request machinery. Through `S3Client.send`, a GetObject costs ~0.4 ms of
// CPU before and after its bytes (middleware, endpoint rules, schema-driven (de)serialization): most of the
// work of downloading a small object. Here the endpoint and the signer are the client's own, resolved once per
// store; each read is one signed request on connections of the store's own (core's `HttpGets`, which hands a
// body over as its socket read it, with no copy). Only a 200 or 206 answer is taken: any other answer, and any
// failure before one, is the SDK's to handle, so redirects, retries, clock skew and error mapping stay where they
// are. A failure worth retrying counts as the read's first attempt.
import type { Readable } from "node:stream";
import type { S3Client } from "@aws-sdk/client-s3";
import { type HttpAnswer, HttpGets } from "@cairn/core";

/** The parts of a GetObject answer the store reads. */
export interface GetAnswer {
  ETag?: string | undefined;
  ContentLength?: number | undefined;
  ContentRange?: string | undefined;
  LastModified?: Date | undefined;
  ServerSideEncryption?: string | undefined;
  SSECustomerAlgorithm?: string | undefined;
  Body: Readable;
}

export interface DirectOptions {
  bucket: string;
  /** The custom endpoint the client was given, if any. */
  endpoint: string | undefined;
  connectTimeoutMs: number;
  /** Idle time before a request fails; 0 for none. */
  socketTimeoutMs: number;
}

/** A signed request's parts, as the SDK's signer takes and returns them. */
interface SignedRequest {
  method: string;
  protocol: string;
  hostname: string;
  port?: number;
  path: string;
  query: Record<string, string>;
  headers: Record<string, string>;
}

interface RequestSigner {
  sign(request: SignedRequest, options: Record<string, unknown>): Promise<SignedRequest>;
}

/** `encodeURIComponent` and the characters it leaves that S3's signing escapes too, as the SDK writes keys. */
const escapeSegment = (s: string) =>
  encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);

/** A client setting, given as a value or as a function that provides it. */
const setting = async (v: boolean | undefined | (() => Promise<boolean | undefined>)) =>
  typeof v === "function" ? await v() : v;

/** Reads objects of one bucket with the client's endpoint, credentials and connections. */
export class DirectGet {
  readonly #client: S3Client;
  readonly #options: DirectOptions;
  readonly #url: URL;
  readonly #signer: RequestSigner;
  readonly #signing: { signingRegion: string; signingService: string };
  readonly #http = new HttpGets();
  /** Cleared by an answer that says this way does not work here (a redirect, a refusal). */
  #usable = true;

  private constructor(
    client: S3Client,
    options: DirectOptions,
    url: URL,
    signer: RequestSigner,
    signing: { signingRegion: string; signingService: string },
  ) {
    this.#client = client;
    this.#options = options;
    this.#url = url;
    this.#signer = signer;
    this.#signing = signing;
  }

  /**
   * The reader for the client's bucket, or `undefined` where its endpoint rules ask for more than a SigV4
   * signature (S3 Express, multi-region access points) or cannot be resolved: the SDK reads those.
   */
  static async prepare(client: S3Client, options: DirectOptions): Promise<DirectGet | undefined> {
    try {
      const config = client.config;
      const endpoint = config.endpointProvider(
        {
          Bucket: options.bucket,
          Region: await config.region(),
          UseFIPS: await config.useFipsEndpoint(),
          UseDualStack: await config.useDualstackEndpoint(),
          ...(options.endpoint !== undefined && { Endpoint: options.endpoint }),
          ForcePathStyle: await setting(config.forcePathStyle),
          Accelerate: await setting(config.useAccelerateEndpoint),
          UseGlobalEndpoint: await setting(config.useGlobalEndpoint),
          DisableMultiRegionAccessPoints: await setting(config.disableMultiregionAccessPoints),
          UseArnRegion: await setting(config.useArnRegion),
        },
        {},
      );
      const schemes = endpoint.properties?.authSchemes as
        | { name?: string; signingName?: string; signingRegion?: string }[]
        | undefined;
      const scheme = schemes?.[0];
      const url = new URL(endpoint.url.href);
      if (
        scheme?.name !== "sigv4" ||
        !scheme.signingRegion ||
        Object.keys(endpoint.headers ?? {}).length > 0 ||
        url.search ||
        (url.protocol !== "http:" && url.protocol !== "https:")
      ) {
        return undefined;
      }
      const signer = (await config.signer({
        name: "sigv4",
        signingName: scheme.signingName ?? "s3",
        signingRegion: scheme.signingRegion,
        properties: {},
      })) as unknown as RequestSigner;
      return new DirectGet(client, options, url, signer, {
        signingRegion: scheme.signingRegion,
        signingService: scheme.signingName ?? "s3",
      });
    } catch {
      return undefined;
    }
  }

  /**
   * The answer to a GET of `key` (the bucket's key, prefix included); otherwise the SDK should ask instead:
   * `"retry"` after a failure worth retrying (no answer, throttling, a server error), that was the first
   * attempt; `undefined` after any other answer (missing key, redirect, refusal).
   */
  async get(key: string, range: string | undefined): Promise<GetAnswer | "retry" | undefined> {
    if (!this.#usable) return undefined;
    const url = this.#url;
    const base = url.pathname.endsWith("/") ? url.pathname : `${url.pathname}/`;
    const headers: Record<string, string> = { host: url.host };
    if (range !== undefined) headers.range = range;
    let signed: SignedRequest;
    try {
      signed = await this.#signer.sign(
        {
          method: "GET",
          protocol: url.protocol,
          hostname: url.hostname,
          ...(url.port && { port: Number(url.port) }),
          path: base + key.split("/").map(escapeSegment).join("/"),
          query: {},
          headers,
        },
        {
          ...this.#signing,
          signingDate: new Date(Date.now() + (this.#client.config.systemClockOffset ?? 0)),
        },
      );
    } catch {
      return undefined;
    }
    const { connectTimeoutMs, socketTimeoutMs } = this.#options;
    let res: HttpAnswer;
    try {
      res = await this.#http.get(url, signed.path, signed.headers, {
        connectTimeoutMs,
        ...(socketTimeoutMs > 0 && { silenceMs: socketTimeoutMs }),
      });
    } catch {
      // No answer came (the connection failed or timed out).
      return "retry";
    }
    const { status } = res;
    if (status === 200 || status === 206) return answer(res);
    // Read to its end, so that its connection serves again.
    res.body.resume();
    if (status === 429 || status >= 500) return "retry";
    // A redirect (the bucket is in another region), a malformed request or a refusal may be this way of
    // asking: every later read goes through the SDK. Others (a missing key, a range past the end) are the
    // read's own.
    if (status === 301 || status === 307 || status === 400 || status === 403) this.#usable = false;
    return undefined;
  }

  close(): void {
    this.#http.close();
  }
}

function answer(res: HttpAnswer): GetAnswer {
  const h = res.headers;
  const length = h["content-length"];
  const modified = h["last-modified"];
  return {
    ETag: h.etag,
    ContentLength: length === undefined ? undefined : Number(length),
    ContentRange: h["content-range"],
    LastModified: modified === undefined ? undefined : new Date(modified),
    ServerSideEncryption: h["x-amz-server-side-encryption"],
    SSECustomerAlgorithm: h["x-amz-server-side-encryption-customer-algorithm"],
    Body: res.body,
  };
}
