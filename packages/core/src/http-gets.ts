// GETs over HTTP/1.1 on connections of their own, for stores that read large bodies: the bytes are handed over as
// the socket read them, with no copy between the kernel and the reader.
import { isIP, connect as netConnect, type Socket } from "node:net";
import { Readable } from "node:stream";
import { type ConnectionOptions, connect as tlsConnect } from "node:tls";
import { HTTPParser } from "http-parser-js";

/**
 * Each connection reads into regions of memory of this size, a read at a time, each read filling the room after
 * the last; the body's chunks are views of them, so nothing is copied or allocated per read. A region is freed
 * once no chunk of it is held.
 */
const REGION = 1024 * 1024;
/** A read has at least this much room: with less left in its region, a connection starts a new one. */
const MIN_READ = 64 * 1024;
/** Bytes of a body buffered for its reader before the connection stops reading. */
const BODY_BUFFER = 1024 * 1024;

export interface HttpAnswer {
  status: number;
  /** The answer's headers, names in lower case; a repeated header's values joined with `, `. */
  headers: Record<string, string>;
  /**
   * The body's bytes. It ends once all of them came (as `Content-Length`, chunked encoding or the connection's
   * end frames them) and fails with an `ECONNRESET` error when the connection ends before. Must be read to its
   * end or destroyed; a connection goes back to the pool only once its body has arrived whole.
   */
  body: Readable;
}

/** Limits of one request, each in ms; none by default. A limit passed fails the request with `ETIMEDOUT`. */
export interface HttpGetOptions {
  /** Until the answer's head came, connecting included. */
  timeoutMs?: number;
  /** Until a new connection is open (TCP). */
  connectTimeoutMs?: number;
  /**
   * The longest the server may stay silent while the request waits on it: for the head, then for the body while
   * its reader keeps up (not while the reader is behind and the connection is not read).
   */
  silenceMs?: number;
}

export interface HttpGetsOptions {
  /** How long an unused connection is kept open, in ms: 4 s by default, less than servers' usual 5 s. */
  idleMs?: number;
  /** The most unused connections kept per server: 64 by default. */
  maxIdle?: number;
  /** TLS options for `https:` (`ca`, `rejectUnauthorized`, …); Node's defaults otherwise. */
  tls?: ConnectionOptions;
}

/**
 * GET requests over HTTP/1.1, on keep-alive connections of their own, with the answer's body handed over as the
 * socket reads it.
 *
 * Node's `http` module copies every chunk of a body out of the socket's read into a new buffer, and the socket
 * allocates a fresh 64 KiB buffer for each read: downloading 256 MB cost ~0.5 s of the main thread's CPU (with the
 * collections of all that memory), against ~0.2 s here, measured on a 2-core machine where that CPU was what a
 * download waited for. Here each connection reads into regions of memory that only grow (see {@link REGION}), and
 * the body's chunks are views of them. Responses are parsed by http-parser-js.
 *
 * For GETs only: no request body, no redirects, no proxies, no HTTP/2. Callers bound how many requests run at
 * once; each takes a connection of its own.
 */
export class HttpGets {
  readonly #idleMs: number;
  readonly #maxIdle: number;
  readonly #tls: ConnectionOptions;
  /** Unused connections by origin, the most recently used last. */
  readonly #idle = new Map<string, Connection[]>();
  readonly #all = new Set<Connection>();
  #closed = false;

  constructor(options: HttpGetsOptions = {}) {
    this.#idleMs = options.idleMs ?? 4000;
    this.#maxIdle = options.maxIdle ?? 64;
    this.#tls = options.tls ?? {};
  }

  /**
   * GETs `path` (sent as it is: no `.` or `..` segments are resolved, unlike in a `URL`, since an object's key may
   * have them) from the server of `server` (its protocol, host and port), with `headers` besides `Host`; resolves
   * with the answer once its head came. Rejects when the server cannot be reached, when a limit of `options`
   * passed before the head came, and when the answer is not HTTP. A connection kept from an earlier request that
   * turns out closed by the server is replaced by a new one, once. A `host` header replaces the one made of
   * `server` (a signed request carries its own).
   */
  get(
    server: URL,
    path: string,
    headers: Record<string, string> = {},
    options: HttpGetOptions = {},
  ): Promise<HttpAnswer> {
    if (this.#closed) return Promise.reject(new Error("This HttpGets is closed."));
    if (server.protocol !== "http:" && server.protocol !== "https:") {
      return Promise.reject(new TypeError(`HttpGets reads http: and https: URLs, not ${server.protocol}.`));
    }
    if (!/^\/[\x21-\x7e]*$/.test(path)) {
      return Promise.reject(new TypeError(`The path ${JSON.stringify(path)} is not one to send as it is.`));
    }
    let head = `GET ${path} HTTP/1.1\r\n`;
    let host = false;
    for (const [name, value] of Object.entries(headers)) {
      if (!/^[!#$%&'*+\-.^`|~\w]+$/.test(name) || /[\r\n\0]/.test(value)) {
        return Promise.reject(new TypeError(`The header ${JSON.stringify(name)} cannot be sent as it is.`));
      }
      host ||= name.toLowerCase() === "host";
      head += `${name}: ${value}\r\n`;
    }
    head += host ? "\r\n" : `Host: ${server.host}\r\n\r\n`;
    const origin = `${server.protocol}//${server.host}`;
    const exchange = (reused: Connection | undefined): Promise<HttpAnswer> =>
      new Promise<HttpAnswer>((resolve, reject) => {
        const connection = reused ?? this.#connect(server, origin);
        new Exchange(connection, head, options, resolve, (error, early) => {
          // A kept connection the server closed meanwhile fails before a byte of the answer: ask again on a new one.
          if (reused && early && (error as NodeJS.ErrnoException).code !== "ETIMEDOUT") {
            exchange(undefined).then(resolve, reject);
          } else reject(error);
        });
      });
    return exchange(this.#take(origin));
  }

  /** Closes every connection, those of requests under way too (their bodies fail). */
  close(): void {
    this.#closed = true;
    for (const connection of this.#all) connection.destroy();
    this.#idle.clear();
  }

  #take(origin: string): Connection | undefined {
    const idle = this.#idle.get(origin);
    const connection = idle?.pop();
    connection?.use();
    return connection;
  }

  #connect(url: URL, origin: string): Connection {
    const host = url.hostname.startsWith("[") ? url.hostname.slice(1, -1) : url.hostname;
    const secure = url.protocol === "https:";
    const port = Number(url.port || (secure ? 443 : 80));
    const connection = new Connection(
      (onread) =>
        secure
          ? tlsConnect({
              ...this.#tls,
              host,
              port,
              ...(isIP(host) ? {} : { servername: host }),
              ALPNProtocols: ["http/1.1"],
              // Node takes `onread` for TLS too (since 15.1), though its types do not say so.
              ...({ onread } as ConnectionOptions),
            })
          : netConnect({ host, port, onread }),
      {
        release: (c) => {
          const idle = this.#idle.get(origin) ?? [];
          if (this.#closed || idle.length >= this.#maxIdle) return false;
          idle.push(c);
          this.#idle.set(origin, idle);
          return true;
        },
        gone: (c) => {
          this.#all.delete(c);
          const idle = this.#idle.get(origin);
          const at = idle?.indexOf(c) ?? -1;
          if (at >= 0) idle!.splice(at, 1);
        },
      },
      this.#idleMs,
    );
    this.#all.add(connection);
    return connection;
  }
}

type OnRead = { buffer: () => Uint8Array; callback: (n: number, buffer: Uint8Array) => boolean };

/** A socket, the regions it reads into, and the exchange it serves, if any. */
class Connection {
  readonly socket: Socket;
  exchange: Exchange | undefined;
  #region = Buffer.allocUnsafeSlow(REGION);
  #used = 0;
  #idleTimer: NodeJS.Timeout | undefined;
  readonly #pool: { release: (c: Connection) => boolean; gone: (c: Connection) => void };
  readonly #idleMs: number;

  constructor(
    open: (onread: OnRead) => Socket,
    pool: { release: (c: Connection) => boolean; gone: (c: Connection) => void },
    idleMs: number,
  ) {
    this.#pool = pool;
    this.#idleMs = idleMs;
    this.socket = open({
      buffer: () => {
        if (this.#region.length - this.#used < MIN_READ) {
          this.#region = Buffer.allocUnsafeSlow(REGION);
          this.#used = 0;
        }
        return this.#region.subarray(this.#used);
      },
      callback: (n, buffer) => {
        this.#used += n;
        const chunk = (buffer as Buffer).subarray(0, n);
        if (this.exchange) return this.exchange.read(chunk);
        // Bytes nobody asked for: the connection cannot be trusted with another request.
        this.destroy();
        return false;
      },
    });
    this.socket.setNoDelay(true);
    this.socket.on("end", () => this.exchange?.ended());
    this.socket.on("error", (error) => this.exchange?.failed(error));
    this.socket.on("close", () => {
      clearTimeout(this.#idleTimer);
      this.#pool.gone(this);
      this.exchange?.failed(Object.assign(new Error("The connection was closed."), { code: "ECONNRESET" }));
    });
  }

  /** Taken from the idle ones for a new exchange. */
  use(): void {
    clearTimeout(this.#idleTimer);
    this.socket.ref();
  }

  /** The exchange is over and the connection can serve another: kept for a while, or closed. */
  release(): void {
    this.exchange = undefined;
    if (this.socket.destroyed || !this.#pool.release(this)) {
      this.destroy();
      return;
    }
    this.socket.unref();
    // Reading on while unused sees the server close the connection.
    this.socket.resume();
    this.#idleTimer = setTimeout(() => this.destroy(), this.#idleMs).unref();
  }

  destroy(): void {
    this.socket.destroy();
  }
}

/** One request and its answer on a connection. */
class Exchange {
  readonly #connection: Connection;
  readonly #parser = new HTTPParser(HTTPParser.RESPONSE);
  readonly #resolve: (answer: HttpAnswer) => void;
  /** `early`: no byte of the answer came. */
  readonly #reject: (error: Error, early: boolean) => void;
  /** Until the head; until connected; the server's silence. */
  #timer: NodeJS.Timeout | undefined;
  #connectTimer: NodeJS.Timeout | undefined;
  #silence: NodeJS.Timeout | undefined;
  #body: Readable | undefined;
  #bytes = 0;
  #complete = false;
  #keepAlive = false;
  /** The body's reader is behind: the socket stops reading until it asks for more. */
  #paused = false;
  #over = false;
  /** The head cannot be read as this client does (a length that is not a number). */
  #broken: Error | undefined;

  constructor(
    connection: Connection,
    head: string,
    options: HttpGetOptions,
    resolve: (answer: HttpAnswer) => void,
    reject: (error: Error, early: boolean) => void,
  ) {
    this.#connection = connection;
    this.#resolve = resolve;
    this.#reject = reject;
    connection.exchange = this;
    const parser = this.#parser;
    parser[HTTPParser.kOnHeadersComplete] = (...args: unknown[]) => this.#head(args);
    parser[HTTPParser.kOnBody] = (chunk: Buffer, offset: number, length: number) => {
      if (!this.#body || this.#broken) return;
      const view = offset === 0 && length === chunk.length ? chunk : chunk.subarray(offset, offset + length);
      if (!this.#body.push(view)) this.#paused = true;
    };
    parser[HTTPParser.kOnMessageComplete] = () => {
      if (this.#complete || !this.#body || this.#broken) return;
      this.#complete = true;
      this.#body.push(null);
    };
    const { socket } = connection;
    const timeout = (message: string) => () =>
      this.failed(Object.assign(new Error(message), { code: "ETIMEDOUT" }));
    const { timeoutMs, connectTimeoutMs, silenceMs } = options;
    if (timeoutMs !== undefined) {
      this.#timer = setTimeout(timeout(`No answer came within ${timeoutMs} ms.`), timeoutMs);
    }
    if (connectTimeoutMs !== undefined && socket.connecting) {
      this.#connectTimer = setTimeout(
        timeout(`Could not connect within ${connectTimeoutMs} ms.`),
        connectTimeoutMs,
      );
      socket.once("connect", () => clearTimeout(this.#connectTimer));
    }
    if (silenceMs !== undefined) {
      const silent = timeout(`The server sent nothing for ${silenceMs} ms.`);
      // While the reader is behind, the connection is not read: that silence is not the server's.
      this.#silence = setTimeout(() => (this.#paused ? this.#silence?.refresh() : silent()), silenceMs);
    }
    socket.write(head);
    socket.resume();
  }

  /** Bytes from the socket; false pauses it. */
  read(chunk: Buffer): boolean {
    if (this.#over) return false;
    this.#bytes += chunk.length;
    this.#silence?.refresh();
    let result: number | Error;
    try {
      result = this.#parser.execute(chunk);
    } catch (error) {
      result = error as Error;
    }
    // http-parser-js counts a read that ends an answer toward the next one's head, whose size it limits: past
    // the end of the answer, its error is not about it.
    if (this.#complete) {
      // The answer came whole: the connection serves the next request, or closes.
      this.#end(this.#keepAlive);
      return !this.#connection.socket.destroyed;
    }
    if (result instanceof Error || this.#broken) {
      const why = this.#broken ?? (result as Error);
      this.failed(
        Object.assign(new Error(`The answer is not HTTP/1.1 as read here: ${why.message}.`), {
          code: "EPROTO",
        }),
      );
      return false;
    }
    return !this.#paused;
  }

  /** The server ended the connection: the end of a body that runs to it, or a cut. */
  ended(): void {
    if (this.#over) return;
    if (this.#body && !this.#complete) this.#parser.finish();
    if (this.#complete) this.#end(false);
    else {
      this.failed(
        Object.assign(new Error("The connection ended before the answer did."), { code: "ECONNRESET" }),
      );
    }
  }

  failed(error: Error): void {
    if (!this.#end(false)) return;
    if (this.#body) this.#body.destroy(error);
    else this.#reject(error, this.#bytes === 0);
  }

  #head(args: unknown[]): void {
    // http-parser-js passes one object, unless something read its `kOnExecute` (Node's own parser's API).
    const info = (
      typeof args[0] === "object"
        ? args[0]
        : { headers: args[2], statusCode: args[5], shouldKeepAlive: args[8] }
    ) as { headers: string[]; statusCode: number; shouldKeepAlive: boolean };
    if (info.statusCode === 101) {
      // Nothing here asks to switch protocols: what follows is not HTTP/1.1.
      this.#broken = new Error("it switches protocols (101) unasked");
      return;
    }
    // An interim answer (100 Continue, 103 Early Hints) has no body; the answer itself follows it.
    if (info.statusCode >= 100 && info.statusCode < 200) return;
    clearTimeout(this.#timer);
    const headers: Record<string, string> = {};
    const raw = info.headers;
    for (let i = 0; i + 1 < raw.length; i += 2) {
      const name = raw[i]!.toLowerCase();
      const value = raw[i + 1]!;
      headers[name] = name in headers ? `${headers[name]}, ${value}` : value;
    }
    const length = headers["content-length"];
    if (length !== undefined && !/^\d+$/.test(length.trim())) {
      // http-parser-js would read the body by a length that is not a number.
      this.#broken = new Error(`its Content-Length is ${JSON.stringify(length)}`);
      return;
    }
    this.#keepAlive = info.shouldKeepAlive;
    this.#body = new Readable({
      highWaterMark: BODY_BUFFER,
      read: () => {
        if (!this.#paused) return;
        this.#paused = false;
        if (this.#over) return;
        this.#silence?.refresh();
        this.#connection.socket.resume();
      },
      destroy: (error, callback) => {
        // A body dropped before its end leaves the connection in the middle of an answer.
        this.#end(false);
        callback(error);
      },
    });
    this.#resolve({ status: info.statusCode, headers, body: this.#body });
  }

  /**
   * Ends the exchange, once: its timers stop, and its connection goes back to the pool (`keep`) or closes. False
   * when it had ended already.
   */
  #end(keep: boolean): boolean {
    if (this.#over) return false;
    this.#over = true;
    clearTimeout(this.#timer);
    clearTimeout(this.#connectTimer);
    clearTimeout(this.#silence);
    if (keep) this.#connection.release();
    else {
      this.#connection.exchange = undefined;
      this.#connection.destroy();
    }
    return true;
  }
}
