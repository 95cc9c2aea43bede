import { createServer, type IncomingHttpHeaders, request, type Server } from "node:http";
import type { Socket } from "node:net";
import { pipeCorrupted } from "@cairn/testkit";
import { freePort } from "@cairn/testkit/servers";

/**
 * An HTTP proxy in front of a real Azurite, so tests can make the service answer 503 (as Azure does when it
 * throttles) or vanish mid-request, and come back on the same port.
 */
export interface FaultProxy {
  /** `http://127.0.0.1:PORT/<account>`: the proxied blob endpoint. */
  readonly endpoint: string;
  /**
   * Answers the next `n` requests with `status` and the service error code `code` instead of forwarding them;
   * status 0 never answers them (a hung server).
   */
  failNext(n: number, status: number, code: string): void;
  /** Requests seen, forwarded or failed. */
  readonly requests: number;
  /** The method, URL and headers of every request seen, in order. */
  readonly seen: { method: string; url: string; headers: IncomingHttpHeaders }[];
  /** Cuts the connection of the next answer with a body once `bytes` of its body have gone through. */
  cutNextBody(bytes: number): void;
  /** Flips the first byte of the body of the next answer with a body. */
  corruptNextBody(): void;
  /** Stops listening and cuts every open connection, as a crashed server would. */
  cut(): Promise<void>;
  /** Listens again on the same port. */
  restore(): Promise<void>;
}

export async function startProxy(target: string): Promise<FaultProxy> {
  const { hostname, port: targetPort, pathname } = new URL(target);
  const port = await freePort();
  const sockets = new Set<Socket>();
  let failing = 0;
  let failStatus = 503;
  let failCode = "ServerBusy";
  let requests = 0;
  const seen: FaultProxy["seen"] = [];
  let cutAt: number | undefined;
  let corrupt = false;
  let server: Server | undefined;

  const listen = () =>
    new Promise<void>((resolve, reject) => {
      const s = createServer((req, res) => {
        requests++;
        seen.push({ method: req.method ?? "", url: req.url ?? "", headers: req.headers });
        if (failing > 0) {
          failing--;
          req.resume();
          if (failStatus === 0) return;
          res.writeHead(failStatus, { "x-ms-error-code": failCode, "content-type": "application/xml" });
          res.end(
            `<?xml version="1.0" encoding="utf-8"?><Error><Code>${failCode}</Code><Message>injected</Message></Error>`,
          );
          return;
        }
        const upstream = request(
          { host: hostname, port: targetPort, method: req.method, path: req.url, headers: req.headers },
          (up) => {
            res.writeHead(up.statusCode ?? 502, up.headers);
            const hasBody = Number(up.headers["content-length"] ?? 0) > 0;
            if (hasBody && corrupt) {
              corrupt = false;
              pipeCorrupted(up, res);
              return;
            }
            const cut = hasBody ? cutAt : undefined;
            if (cut === undefined) {
              up.pipe(res);
              return;
            }
            cutAt = undefined;
            let sent = 0;
            up.on("data", (chunk: Buffer) => {
              const take = chunk.subarray(0, Math.max(0, cut - sent));
              sent += take.length;
              if (take.length > 0) res.write(take);
              if (sent >= cut) {
                up.destroy();
                res.socket?.destroy();
              }
            });
          },
        );
        upstream.on("error", () => res.destroy());
        req.pipe(upstream);
      });
      s.on("connection", (socket: Socket) => {
        sockets.add(socket);
        socket.on("close", () => sockets.delete(socket));
      });
      s.once("error", reject);
      s.listen(port, "127.0.0.1", () => {
        server = s;
        resolve();
      });
    });

  await listen();
  return {
    endpoint: `http://127.0.0.1:${port}${pathname}`,
    failNext(n, status, code) {
      failing = n;
      failStatus = status;
      failCode = code;
    },
    get requests() {
      return requests;
    },
    seen,
    cutNextBody(bytes) {
      cutAt = bytes;
    },
    corruptNextBody() {
      corrupt = true;
    },
    async cut() {
      const s = server;
      server = undefined;
      for (const socket of sockets) socket.destroy();
      if (s) await new Promise<void>((resolve) => s.close(() => resolve()));
    },
    restore: listen,
  };
}
