import { createHash, randomBytes } from "node:crypto";
import { once } from "node:events";
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import { type AddressInfo, createServer as createNetServer, type Server, type Socket } from "node:net";
import type { Readable } from "node:stream";
import { generate } from "selfsigned";
import { afterAll, beforeEach, describe, expect, it } from "vitest";
import { type HttpAnswer, HttpGets } from "../src/http-gets.js";

const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");

async function readAll(body: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of body) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** A server listening on 127.0.0.1, its URL, and the connections it accepted. */
async function listening<S extends Server>(server: S, protocol = "http:") {
  const connections: Socket[] = [];
  server.on(protocol === "https:" ? "secureConnection" : "connection", (socket: Socket) =>
    connections.push(socket),
  );
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as AddressInfo;
  return { server, url: new URL(`${protocol}//127.0.0.1:${port}`), connections };
}

/** Bodies the HTTP server gives, by path. */
const bodies = new Map<string, Buffer>();
const big = randomBytes(5 * 1024 * 1024 + 77);
bodies.set("/big", big);
const requests: { url: string; headers: IncomingMessage["headers"] }[] = [];
let handle: ((req: IncomingMessage, res: ServerResponse) => boolean) | undefined;

const web = await listening(
  createHttpServer((req, res) => {
    requests.push({ url: req.url ?? "", headers: req.headers });
    if (handle?.(req, res)) return;
    const body = bodies.get((req.url ?? "").split("?")[0]!);
    if (!body) {
      res.writeHead(404, { "content-type": "text/plain" }).end("no such thing");
      return;
    }
    res.writeHead(200, { "content-length": body.length, "x-double": ["a", "b"], ETag: '"e1"' }).end(body);
  }),
);

/** A server that answers each request with `reply(socket, count)`, raw bytes of its own making. */
async function raw(reply: (socket: Socket, count: number) => void) {
  let count = 0;
  return listening(
    createNetServer((socket) => {
      socket.on("data", () => reply(socket, count++));
      socket.on("error", () => {});
    }),
  );
}

const gets = new HttpGets();
const closers: (() => void)[] = [];
beforeEach(() => {
  handle = undefined;
  requests.length = 0;
});
afterAll(() => {
  gets.close();
  web.server.close();
  for (const close of closers) close();
});

describe("HttpGets", () => {
  it("gives an answer's status, headers and body, sending the path as it is", async () => {
    const answer = await gets.get(web.url, "/big?x=%2F", { "x-ms-version": "2023-11-03" });
    expect(answer.status).toBe(200);
    expect(answer.headers["content-length"]).toBe(String(big.length));
    expect(answer.headers.etag).toBe('"e1"');
    expect(answer.headers["x-double"]).toBe("a, b");
    expect(sha256(await readAll(answer.body))).toBe(sha256(big));
    expect(requests[0]).toMatchObject({
      url: "/big?x=%2F",
      headers: { "x-ms-version": "2023-11-03", host: web.url.host },
    });

    // A URL would resolve these segments to another path.
    bodies.set("/a/../b/./c%2E%2E", Buffer.from("dots"));
    const dots = await gets.get(web.url, "/a/../b/./c%2E%2E", { Host: "signed.example" });
    expect((await readAll(dots.body)).toString()).toBe("dots");
    // A host header given is sent instead of the server's.
    expect(requests[1]).toMatchObject({ url: "/a/../b/./c%2E%2E", headers: { host: "signed.example" } });
    expect(requests[1]!.headers.host).toBe("signed.example");
  });

  it("keeps a connection for the next request once a body has arrived whole", async () => {
    bodies.set("/small", Buffer.from("small"));
    const before = web.connections.length;
    for (let i = 0; i < 5; i++) {
      const answer = await gets.get(web.url, "/small");
      expect((await readAll(answer.body)).toString()).toBe("small");
    }
    const missing = await gets.get(web.url, "/missing");
    expect(missing.status).toBe(404);
    expect((await readAll(missing.body)).toString()).toBe("no such thing");
    await readAll((await gets.get(web.url, "/small")).body);
    expect(web.connections.length - before).toBeLessThanOrEqual(1);
  });

  it("gives each of many answers at once its own bytes, across the regions its connections read into", async () => {
    const files = Array.from({ length: 24 }, (_, i) => randomBytes(100_000 + i * 40_000));
    for (const [i, bytes] of files.entries()) bodies.set(`/many/${i}`, bytes);
    for (let round = 0; round < 3; round++) {
      const answers = await Promise.all(files.map((_, i) => gets.get(web.url, `/many/${i}`)));
      // Read in turn, so that the later answers' bytes wait while their connections read on.
      for (const [i, answer] of answers.entries()) {
        expect(sha256(await readAll(answer.body))).toBe(sha256(files[i]!));
      }
    }
  });

  it("reads a chunked body and one that runs to the end of its connection", async () => {
    const parts = [randomBytes(70_000), randomBytes(1), randomBytes(200_000)];
    handle = (req, res) => {
      if (req.url !== "/chunked") return false;
      res.writeHead(200, { "transfer-encoding": "chunked" });
      for (const part of parts) res.write(part);
      res.end();
      return true;
    };
    const chunked = await gets.get(web.url, "/chunked");
    expect((await readAll(chunked.body)).equals(Buffer.concat(parts))).toBe(true);

    const payload = randomBytes(300_000);
    const toClose = await raw((socket) => {
      socket.end(Buffer.concat([Buffer.from("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"), payload]));
    });
    closers.push(() => toClose.server.close());
    const answer = await gets.get(toClose.url, "/");
    expect((await readAll(answer.body)).equals(payload)).toBe(true);
  });

  it("fails a body cut short with ECONNRESET, and asks again on a new connection", async () => {
    handle = (req, res) => {
      if (req.url !== "/cut") return false;
      res.writeHead(200, { "content-length": 4 * 1024 * 1024 });
      res.write(randomBytes(100_000), () => res.socket?.destroy());
      return true;
    };
    const fresh = new HttpGets();
    closers.push(() => fresh.close());
    const before = web.connections.length;
    const answer = await fresh.get(web.url, "/cut");
    await expect(readAll(answer.body)).rejects.toMatchObject({ code: "ECONNRESET" });
    expect((await readAll((await fresh.get(web.url, "/big")).body)).length).toBe(big.length);
    expect(web.connections.length - before).toBe(2);
  });

  it("asks again on a new connection when a kept one turns out closed by the server", async () => {
    // Answers the first request on each connection, and closes it at the second without a word.
    const server = await raw((socket, count) => {
      if (count % 2 === 0) socket.write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
      else socket.destroy();
    });
    closers.push(() => server.server.close());
    const gets = new HttpGets();
    closers.push(() => gets.close());
    for (let i = 0; i < 3; i++) {
      expect((await readAll((await gets.get(server.url, "/")).body)).toString()).toBe("ok");
    }
    expect(server.connections.length).toBe(3);
  });

  it("closes a connection whose body is dropped before its end", async () => {
    const fresh = new HttpGets();
    closers.push(() => fresh.close());
    const before = web.connections.length;
    const answer = await fresh.get(web.url, "/big");
    const socket = web.connections.at(-1)!;
    const closed = new Promise((resolve) => socket.on("close", resolve));
    answer.body.destroy();
    await closed;
    expect((await readAll((await fresh.get(web.url, "/big")).body)).length).toBe(big.length);
    expect(web.connections.length - before).toBe(2);
  });

  it("stops reading while the body's reader is behind", async () => {
    const size = 64 * 1024 * 1024;
    let sent = 0;
    handle = (req, res) => {
      if (req.url !== "/flood") return false;
      res.writeHead(200, { "content-length": size });
      const block = Buffer.alloc(1024 * 1024, 7);
      const more = () => {
        while (sent < size) {
          sent += block.length;
          if (!res.write(block)) return void res.once("drain", more);
        }
        res.end();
      };
      more();
      return true;
    };
    const answer = await gets.get(web.url, "/flood");
    await new Promise((resolve) => setTimeout(resolve, 300));
    // Socket buffers on both ends hold a few MiB; the body, 1 MiB more.
    expect(sent).toBeLessThan(24 * 1024 * 1024);
    expect((await readAll(answer.body)).length).toBe(size);
  });

  it("gives up on a server that does not answer within the time given", async () => {
    const silent = await raw(() => {});
    closers.push(() => silent.server.close());
    const started = Date.now();
    await expect(gets.get(silent.url, "/", {}, { timeoutMs: 200 })).rejects.toMatchObject({
      code: "ETIMEDOUT",
    });
    expect(Date.now() - started).toBeLessThan(2000);
  });

  it("fails a body whose server falls silent, but not one whose reader is slow", async () => {
    handle = (req, res) => {
      if (req.url === "/stall") {
        res.writeHead(200, { "content-length": 1000 });
        res.write(Buffer.alloc(10));
        return true;
      }
      if (req.url === "/slow-reader") {
        res.writeHead(200, { "content-length": 8 * 1024 * 1024 }).end(Buffer.alloc(8 * 1024 * 1024));
        return true;
      }
      return false;
    };
    const stalled = await gets.get(web.url, "/stall", {}, { silenceMs: 150 });
    await expect(readAll(stalled.body)).rejects.toMatchObject({ code: "ETIMEDOUT" });

    const slow = await gets.get(web.url, "/slow-reader", {}, { silenceMs: 150 });
    // The reader takes 400 ms before it reads on; the server is not silent meanwhile, the connection is unread.
    await new Promise((resolve) => setTimeout(resolve, 400));
    expect((await readAll(slow.body)).length).toBe(8 * 1024 * 1024);
  });

  it("rejects an answer that is not HTTP, or whose length is not a number", async () => {
    const junk = await raw((socket) => socket.end("SSH-2.0-OpenSSH_9.2\r\n\r\n"));
    closers.push(() => junk.server.close());
    await expect(gets.get(junk.url, "/")).rejects.toMatchObject({ code: "EPROTO" });
    const length = await raw((socket) => socket.end("HTTP/1.1 200 OK\r\nContent-Length: 12abc\r\n\r\nhello"));
    closers.push(() => length.server.close());
    await expect(gets.get(length.url, "/")).rejects.toMatchObject({ code: "EPROTO" });
  });

  it("passes over interim answers to the answer that follows them, and refuses a switch of protocols", async () => {
    const interim = await raw((socket) =>
      socket.write(
        "HTTP/1.1 100 Continue\r\n\r\n" +
          "HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n" +
          'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nETag: "e2"\r\n\r\nhello',
      ),
    );
    closers.push(() => interim.server.close());
    const fresh = new HttpGets();
    closers.push(() => fresh.close());
    const answer = await fresh.get(interim.url, "/");
    expect(answer.status).toBe(200);
    expect(answer.headers.etag).toBe('"e2"');
    expect(answer.headers.link).toBeUndefined();
    expect((await readAll(answer.body)).toString()).toBe("hello");
    // The connection was kept, and serves the next request.
    expect((await readAll((await fresh.get(interim.url, "/")).body)).toString()).toBe("hello");
    expect(interim.connections.length).toBe(1);

    const upgrade = await raw((socket) =>
      socket.end(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x05hello",
      ),
    );
    closers.push(() => upgrade.server.close());
    await expect(fresh.get(upgrade.url, "/")).rejects.toMatchObject({ code: "EPROTO" });
  });

  it("refuses a path or a header it cannot send as it is", async () => {
    await expect(gets.get(web.url, "/a b")).rejects.toThrow(/path/);
    await expect(gets.get(web.url, "relative")).rejects.toThrow(/path/);
    await expect(gets.get(web.url, "/", { "x-a": "1\r\nx-b: 2" })).rejects.toThrow(/header "x-a"/);
    await expect(gets.get(web.url, "/", { "x a": "1" })).rejects.toThrow(/header "x a"/);
    await expect(gets.get(new URL("ftp://127.0.0.1/"), "/")).rejects.toThrow(/ftp:/);
    expect(requests).toHaveLength(0);
  });

  it("rejects when the server cannot be reached", async () => {
    const gone = await raw(() => {});
    gone.server.close();
    await once(gone.server, "close");
    await expect(gets.get(gone.url, "/")).rejects.toMatchObject({ code: "ECONNREFUSED" });
  });

  it("reads over TLS, checking the server's certificate", async () => {
    const pems = await generate([{ name: "commonName", value: "localhost" }], {
      keyType: "ec",
      algorithm: "sha256",
      extensions: [{ name: "subjectAltName", altNames: [{ type: 7, ip: "127.0.0.1" }] }],
    });
    const secure = await listening(
      createHttpsServer({ key: pems.private, cert: pems.cert }, (_req, res) => {
        res.writeHead(200, { "content-length": big.length }).end(big);
      }),
      "https:",
    );
    closers.push(() => secure.server.close());
    const trusting = new HttpGets({ tls: { ca: pems.cert } });
    closers.push(() => trusting.close());
    const answer: HttpAnswer = await trusting.get(secure.url, "/");
    expect(sha256(await readAll(answer.body))).toBe(sha256(big));
    // Without the certificate's issuer, the connection is refused.
    await expect(gets.get(secure.url, "/")).rejects.toThrow(/self[- ]signed/i);
  });

  it("fails bodies under way and later requests once closed", async () => {
    const closing = new HttpGets();
    const answer = await closing.get(web.url, "/big");
    closing.close();
    await expect(readAll(answer.body)).rejects.toMatchObject({ code: "ECONNRESET" });
    await expect(closing.get(web.url, "/big")).rejects.toThrow(/closed/);
  });
});
