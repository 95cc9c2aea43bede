import { mkdtemp, rm } from "node:fs/promises";
import { Agent, createServer, type IncomingHttpHeaders, request } from "node:http";
import { createRequire } from "node:module";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { CreateBucketCommand, S3Client } from "@aws-sdk/client-s3";
import { pipeCorrupted, randomName } from "@cairn/testkit";
import { EMULATOR_CREDENTIALS, freePort, startServer, type TestServer } from "@cairn/testkit/servers";

/** A client of the test server, for what the store does not do: creating buckets, reading behind its back. */
const MiB = 1024 * 1024;

export function adminClient(endpoint: string): S3Client {
  return new S3Client({
    endpoint,
    region: "us-east-1",
    forcePathStyle: true,
    credentials: { ...EMULATOR_CREDENTIALS },
  });
}

/** Creates a bucket with a name unique to this run; s3rver keeps it in its own temporary folder. */
export async function newBucket(endpoint: string): Promise<string> {
  const bucket = randomName("b").toLowerCase();
  const client = adminClient(endpoint);
  try {
    await client.send(new CreateBucketCommand({ Bucket: bucket }));
  } finally {
    client.destroy();
  }
  return bucket;
}

/** A request that passed through a {@link RecordingProxy}. */
export interface ProxiedRequest {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
}

/**
 * A pass-through HTTP proxy in front of the real server, for faults the server cannot be asked to make: it
 * records every request, and answers the next `failNext` ones itself with S3's 503 SlowDown, and the next
 * `refuseNext` ones with 403 AccessDenied.
 */
export interface RecordingProxy {
  readonly endpoint: string;
  readonly requests: ProxiedRequest[];
  failNext: number;
  refuseNext: number;
  /** Flips the first byte of the body of the next this many 200 answers to a GET. */
  corruptNext: number;
  /** Cuts the connection of the next this many PUT requests once 1 MiB of their body has passed. */
  cutNextPut: number;
  /** The most parts of multipart uploads (`partNumber=`) that were being sent at once. */
  mostPartsAtOnce: number;
  close(): Promise<void>;
}

export async function startProxy(target: string): Promise<RecordingProxy> {
  const to = new URL(target);
  const agent = new Agent({ keepAlive: true });
  const proxy: RecordingProxy = {
    endpoint: "",
    requests: [],
    failNext: 0,
    refuseNext: 0,
    corruptNext: 0,
    cutNextPut: 0,
    mostPartsAtOnce: 0,
    close: async () => {
      agent.destroy();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
  let partsAtOnce = 0;
  const server = createServer((req, res) => {
    proxy.requests.push({ method: req.method ?? "", url: req.url ?? "", headers: req.headers });
    if (req.url?.includes("partNumber=")) {
      proxy.mostPartsAtOnce = Math.max(proxy.mostPartsAtOnce, ++partsAtOnce);
      res.on("close", () => partsAtOnce--);
    }
    const answer = (status: number, code: string, message: string) => {
      req.resume();
      res.writeHead(status, { "content-type": "application/xml" });
      res.end(
        `<?xml version="1.0" encoding="UTF-8"?><Error><Code>${code}</Code><Message>${message}</Message></Error>`,
      );
    };
    if (proxy.failNext > 0) {
      proxy.failNext--;
      answer(503, "SlowDown", "Please reduce your request rate.");
      return;
    }
    if (proxy.refuseNext > 0) {
      proxy.refuseNext--;
      answer(403, "AccessDenied", "Access Denied");
      return;
    }
    const upstream = request(
      {
        host: to.hostname,
        port: to.port,
        method: req.method,
        path: req.url,
        headers: req.headers,
        agent,
      },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        if (req.method === "GET" && answer.statusCode === 200 && proxy.corruptNext > 0) {
          proxy.corruptNext--;
          pipeCorrupted(answer, res);
          return;
        }
        answer.pipe(res);
      },
    );
    upstream.on("error", () => res.destroy());
    if (req.method === "PUT" && proxy.cutNextPut > 0) {
      proxy.cutNextPut--;
      let passed = 0;
      req.on("data", (chunk: Buffer) => {
        passed += chunk.length;
        if (passed < MiB) return;
        upstream.destroy();
        req.socket.destroy();
      });
    }
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return Object.assign(proxy, { endpoint: `http://127.0.0.1:${port}` });
}

/** An s3rver of its own that a test can stop and start again on the same port, keeping its data. */
export interface RestartableS3rver {
  readonly endpoint: string;
  stop(): Promise<void>;
  start(): Promise<void>;
  /** Stops it and removes its data folder. */
  dispose(): Promise<void>;
}

export async function restartableS3rver(): Promise<RestartableS3rver> {
  const port = await freePort();
  const dataDir = await mkdtemp(join(tmpdir(), "cairn-s3rver-own-"));
  const require = createRequire(import.meta.url);
  const testkit = require.resolve("@cairn/testkit/package.json");
  const script = join(dirname(createRequire(testkit).resolve("s3rver/package.json")), "bin", "s3rver.js");
  let running: TestServer | undefined;
  const server: RestartableS3rver = {
    endpoint: `http://127.0.0.1:${port}`,
    async start() {
      running = await startServer({
        name: "s3rver",
        script,
        args: ["-d", dataDir, "-a", "127.0.0.1", "-p", String(port), "--silent"],
        nodeOptions: ["--openssl-legacy-provider"],
        port,
      });
    },
    async stop() {
      await running?.stop();
      running = undefined;
    },
    async dispose() {
      await server.stop();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
  await server.start();
  return server;
}
