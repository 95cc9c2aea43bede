import { generateKeyPairSync } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { isEnvelope, readDump } from "@cairn/manifest";
import { afterAll, describe, expect, it } from "vitest";
import {
  Cairn,
  ENGINE_DUMP_SCHEMAS,
  ENGINE_DUMP_SECTIONS,
  type EngineFactory,
  type ErrorCode,
  hasCode,
  listMetaDumps,
  loadEngine,
  type MetaBackupOutcome,
  MetaBackupScheduler,
  metaBackupLeaseName,
  metaBackupStatus,
  metaBackupTargetId,
  metaDumpKey,
  metaDumpTime,
  type ObjectStore,
  readLease,
  runMetaBackup,
  type StoreFactory,
  UnavailableError,
} from "../src/index.js";

// Real adapters, loaded from their builds (core cannot depend on them: they depend on core).
const sqlite = (await import(new URL("../../engine-sqlite/dist/index.js", import.meta.url).href)) as {
  factory: EngineFactory;
};
const fs = (await import(new URL("../../store-fs/dist/index.js", import.meta.url).href)) as {
  factory: StoreFactory;
};

const dir = await mkdtemp(join(tmpdir(), "cairn-meta-backup-"));
const opened: { close(): Promise<void> }[] = [];
afterAll(async () => {
  for (const o of opened) await o.close();
  await rm(dir, { recursive: true, force: true });
});

let n = 0;
const next = (prefix: string) => join(dir, `${prefix}-${++n}`);

/** A new engine file with a repository and `records` extra engine records; `connect` opens another connection. */
async function engineWith(records = 100) {
  const url = `sqlite://${next("meta")}.db`;
  const connect = async () => {
    const e = await sqlite.factory.open(url);
    opened.push(e);
    return e;
  };
  const engine = await connect();
  const cairn = new Cairn({ engine, openStore: (u) => fs.factory.open(u) });
  const repo = await cairn.createRepository({ name: "photos", namespace: pathToFileURL(next("ns")).href });
  await repo.upload("main", "a.txt", Buffer.from("alpha"));
  await repo.commit("main", { message: "first", author: "tester" });
  const ops = Array.from({ length: records }, (_, i) => ({
    partition: "data",
    key: `k/${String(i).padStart(7, "0")}`,
    value: Buffer.from(`value ${i}`),
  }));
  for (let i = 0; i < ops.length; i += 5000) await engine.writeBatch(ops.slice(i, i + 5000));
  return { url, engine, connect };
}

async function target(): Promise<ObjectStore> {
  // fsync=false: these tests write hundreds of small objects; durability is not what they check.
  const store = await fs.factory.open(`${pathToFileURL(next("target")).href}?fsync=false`);
  opened.push(store);
  return store;
}

/** `store` with its `put` replaced; everything else goes to the real store. */
function withPut(store: ObjectStore, put: ObjectStore["put"]): ObjectStore {
  return {
    kind: store.kind,
    url: store.url,
    put,
    get: (k, o) => store.get(k, o),
    head: (k) => store.head(k),
    list: (p, o) => store.list(p, o),
    delete: (k) => store.delete(k),
    copy: (s, t, o) => store.copy(s, t, o),
    close: () => store.close(),
  };
}

/** `store` whose puts wait until `open()` is called; `entered` resolves when the first put has started. */
function gated(store: ObjectStore) {
  let open!: () => void;
  const gate = new Promise<void>((r) => {
    open = r;
  });
  let entered!: () => void;
  const started = new Promise<void>((r) => {
    entered = r;
  });
  return {
    store: withPut(store, async (key, body, options) => {
      entered();
      await gate;
      return store.put(key, body, options);
    }),
    open,
    started,
  };
}

async function expectCode(promise: Promise<unknown>, code: ErrorCode): Promise<Error> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(error instanceof Error)) return expect.fail(`expected ${code}, but it succeeded`);
  expect(hasCode(error, code), `${(error as { code?: string }).code}: ${error.message}`).toBe(true);
  return error;
}

function clock(start = Date.parse("2026-11-25T23:15:00.250Z")) {
  let t = start;
  return {
    now: () => new Date(t),
    advance: (ms: number) => {
      t += ms;
    },
  };
}

async function readBack(store: ObjectStore, file: string, decrypt?: { privateKeyPem: string }) {
  const { body } = await store.get(file);
  const reader = readDump(body, {
    schemas: ENGINE_DUMP_SCHEMAS,
    sections: ENGINE_DUMP_SECTIONS,
    ...(decrypt ? { decrypt } : {}),
  });
  return reader;
}

const HOUR = 3600_000;
const done = (o: MetaBackupOutcome) => {
  if (o.status !== "done") throw new Error(`expected a dump, got ${JSON.stringify(o)}`);
  return o;
};

describe("dump names", () => {
  it("are UTC times to the second, and only such names are recognised", () => {
    const t = new Date("2026-11-05T03:04:09.999Z");
    expect(metaDumpKey(t)).toBe("meta/dump-2026-11-05-030409.json.gz");
    expect(metaDumpTime("meta/dump-2026-11-05-030409.json.gz")).toEqual(new Date("2026-11-05T03:04:09Z"));
    for (const other of [
      "meta/dump-2026-02-31-000000.json.gz",
      "meta/dump-2026-11-05-030409.json",
      "meta/notes.txt",
      "meta/x/dump-2026-11-05-030409.json.gz",
      "dump-2026-11-05-030409.json.gz",
    ])
      expect(metaDumpTime(other)).toBeUndefined();
  });

  it("target ids ignore secrets in the URL", () => {
    expect(metaBackupTargetId("s3://b/p?secretKey=one")).toBe(metaBackupTargetId("s3://b/p?secretKey=two"));
    expect(metaBackupTargetId("s3://b/p")).not.toBe(metaBackupTargetId("s3://b/q"));
  });
});

describe("runMetaBackup", () => {
  it("writes a whole-engine dump that loads into a new engine, and records it in the engine", async () => {
    const { engine, url } = await engineWith(2000);
    const store = await target();
    const c = clock();
    const o = done(
      await runMetaBackup(engine, store, { every: HOUR, now: c.now, engineUrl: url, holder: "host-a" }),
    );
    expect(o.state).toMatchObject({
      file: "meta/dump-2026-11-25-231500.json.gz",
      time: "2026-11-25T23:15:00.250Z",
      engine: "sqlite",
      consistency: "snapshot",
      encrypted: false,
      holder: "host-a",
      token: 1,
    });
    expect(o.state.records).toBeGreaterThan(2000);
    expect(o.state.size).toBe((await store.head(o.state.file))!.size);
    expect(o.removed).toEqual([]);

    const reader = await readBack(store, o.state.file);
    expect(await reader.header()).toMatchObject({ consistency: "snapshot", source: { engine: "sqlite" } });
    const copy = await sqlite.factory.open(`sqlite://${next("copy")}.db`);
    opened.push(copy);
    const loaded = await loadEngine(copy, reader);
    expect(loaded.repositories).toEqual(["photos"]);
    expect(Object.values(loaded.counts).reduce((a, b) => a + b, 0)).toBe(o.state.records);
    expect(Buffer.from((await copy.get("data", "k/0001999"))!).toString()).toBe("value 1999");
    // Nothing but the dump: no temporary name is left in meta/.
    expect((await listMetaDumps(store)).map((d) => d.file)).toEqual([o.state.file]);

    const status = await metaBackupStatus(engine, store);
    expect(status.last).toEqual(o.state);
    expect(status.lease!.expiresAt.getTime()).toBe(0);
    expect(status.dumps).toHaveLength(1);
  });

  it("dumps again only when the interval has passed since the last dump started", async () => {
    const { engine } = await engineWith(10);
    const store = await target();
    const c = clock();
    done(await runMetaBackup(engine, store, { every: HOUR, now: c.now }));
    c.advance(HOUR - 1);
    const skipped = await runMetaBackup(engine, store, { every: HOUR, now: c.now });
    expect(skipped).toMatchObject({
      status: "not-due",
      nextDue: new Date(Date.parse("2026-11-25T23:15:00.250Z") + HOUR),
    });
    // A process with a shorter interval finds the same state due: the shortest interval wins.
    done(await runMetaBackup(engine, store, { every: 30 * 60_000, now: c.now }));
    c.advance(HOUR - 1);
    expect((await runMetaBackup(engine, store, { every: HOUR, now: c.now })).status).toBe("not-due");
    c.advance(1);
    done(await runMetaBackup(engine, store, { every: HOUR, now: c.now }));
    expect(await listMetaDumps(store)).toHaveLength(3);
  });

  it("makes one dump when two processes check at the same moment", async () => {
    const { engine, connect } = await engineWith(3000);
    const other = await connect();
    const store = await target();
    const outcomes = await Promise.all([
      runMetaBackup(engine, store, { every: HOUR, holder: "host-a" }),
      runMetaBackup(other, store, { every: HOUR, holder: "host-b" }),
      runMetaBackup(other, store, { every: HOUR, holder: "host-c" }),
    ]);
    expect(outcomes.filter((o) => o.status === "done")).toHaveLength(1);
    for (const o of outcomes) expect(["done", "busy", "not-due"]).toContain(o.status);
    expect(await listMetaDumps(store)).toHaveLength(1);
  });

  it("fences a holder whose lease was taken over while it dumped: its dump goes, the new state stays", async () => {
    const { engine, connect } = await engineWith(50);
    const other = await connect();
    const real = await target();
    const slow = gated(real);
    const c = clock();
    const running = runMetaBackup(engine, slow.store, {
      every: HOUR,
      now: c.now,
      leaseTtlMs: 60_000,
      holder: "a",
    });
    await slow.started;
    // Another host, a few minutes later (this one paused): the lease has expired, so it takes over.
    const later = clock(Date.parse("2026-11-25T23:20:00Z"));
    const b = done(await runMetaBackup(other, real, { every: HOUR, now: later.now, holder: "b" }));
    expect(b.state.token).toBe(2);
    slow.open();
    const a = await running;
    expect(a).toMatchObject({ status: "fenced", written: true, deleted: true, token: 1 });
    const status = await metaBackupStatus(engine, real);
    expect(status.last).toEqual(b.state);
    expect(status.dumps.map((d) => d.file)).toEqual([b.state.file]);
  });

  it("stops a dump whose lease could not be renewed, leaving no object", async () => {
    const { engine, connect } = await engineWith(50);
    const other = await connect();
    const real = await target();
    const slow = gated(real);
    const running = runMetaBackup(engine, slow.store, { every: HOUR, leaseTtlMs: 300, holder: "a" });
    await slow.started;
    const later = clock(Date.now() + 1000);
    const b = done(await runMetaBackup(other, real, { every: HOUR, now: later.now, holder: "b" }));
    // The renewal (every 100 ms) finds the lease gone and aborts the put before the gate opens.
    await new Promise((r) => setTimeout(r, 250));
    slow.open();
    expect(await running).toMatchObject({ status: "fenced", written: false, deleted: false });
    expect((await listMetaDumps(real)).map((d) => d.file)).toEqual([b.state.file]);
  });

  it("fails with the store's error when the target is unavailable, leaving no dump; the next run works", async () => {
    const { engine } = await engineWith(20_000);
    const store = await target();
    let seen = 0;
    const down = withPut(store, async (key, body) => {
      // Reads a little, then the connection drops: the dump must stop, not wait for a reader forever.
      for await (const chunk of body as AsyncIterable<Uint8Array>) {
        seen += chunk.length;
        break;
      }
      throw new UnavailableError(
        `Cannot write "${key}" in ${store.url}: the service is unreachable (ECONNRESET).`,
      );
    });
    const error = await expectCode(runMetaBackup(engine, down, { every: HOUR }), "UNAVAILABLE");
    expect(error.message).toContain(store.url);
    expect(seen).toBeGreaterThan(0);
    const status = await metaBackupStatus(engine, store);
    expect(status.last).toBeUndefined();
    expect(status.dumps).toEqual([]);
    expect(status.lease!.expiresAt.getTime()).toBe(0);
    done(await runMetaBackup(engine, store, { every: HOUR }));
  });

  it("stops at once when interrupted: no object, lease released, state unchanged", async () => {
    const { engine } = await engineWith(10);
    const real = await target();
    const slow = gated(real);
    const stop = new AbortController();
    const running = runMetaBackup(engine, slow.store, { every: HOUR, signal: stop.signal });
    await slow.started;
    stop.abort(new Error("interrupted"));
    slow.open();
    await expect(running).rejects.toThrow("interrupted");
    const status = await metaBackupStatus(engine, real);
    expect(status).toMatchObject({ dumps: [] });
    expect(status.last).toBeUndefined();
    expect(status.lease!.expiresAt.getTime()).toBe(0);
  });

  it("applies retention to dumps only, after each dump", async () => {
    const { engine } = await engineWith(10);
    const store = await target();
    for (const day of ["01", "02", "03", "04"])
      await store.put(`meta/dump-2026-11-${day}-000000.json.gz`, Buffer.from("x"));
    await store.put("meta/notes.txt", Buffer.from("mine"));
    await store.put("meta/dump-2026-02-31-000000.json.gz", Buffer.from("not a date"));
    const c = clock();
    const o = done(await runMetaBackup(engine, store, { every: HOUR, now: c.now, retention: { last: 2 } }));
    expect(o.removed).toEqual([
      "meta/dump-2026-11-03-000000.json.gz",
      "meta/dump-2026-11-02-000000.json.gz",
      "meta/dump-2026-11-01-000000.json.gz",
    ]);
    const left = [];
    for await (const obj of store.list("meta/")) left.push(obj.key);
    expect(left).toEqual([
      "meta/dump-2026-02-31-000000.json.gz",
      "meta/dump-2026-11-04-000000.json.gz",
      o.state.file,
      "meta/notes.txt",
    ]);
  });

  it("keeps JuiceFS's policy by default", async () => {
    const { engine } = await engineWith(10);
    const store = await target();
    // Hourly dumps for 20 days before now.
    const now = Date.parse("2026-11-25T23:15:00Z");
    for (let h = 1; h <= 20 * 24; h++)
      await store.put(metaDumpKey(new Date(now - h * HOUR)), Buffer.from("x"));
    const c = clock(now);
    const o = done(await runMetaBackup(engine, store, { every: HOUR, now: c.now }));
    const left = (await listMetaDumps(store)).map((d) => d.time.getTime());
    // Every dump of the last two days, then one a day (and one a week, one a month) before.
    expect(left.filter((t) => now - t <= 2 * 24 * HOUR)).toHaveLength(49);
    expect(left.length).toBeLessThan(49 + 20);
    expect(o.removed.length + left.length).toBe(20 * 24 + 1);
  });

  it("encrypts for a public key; the dump keeps its name", async () => {
    const { engine } = await engineWith(10);
    const store = await target();
    const { publicKey, privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
    const pem = {
      pub: publicKey.export({ type: "spki", format: "pem" }).toString(),
      priv: privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
    };
    const o = done(await runMetaBackup(engine, store, { every: HOUR, encrypt: { publicKeyPem: pem.pub } }));
    expect(o.state).toMatchObject({ encrypted: true });
    expect(o.state.file).toMatch(/\.json\.gz$/);
    const { body } = await store.get(o.state.file);
    const first = (await body.toArray())[0] as Buffer;
    expect(isEnvelope(first)).toBe(true);
    const records = [];
    for await (const r of await readBack(store, o.state.file, { privateKeyPem: pem.priv })) records.push(r);
    expect(records).toHaveLength(o.state.records);
  });

  it("refuses an empty retention policy, a bad interval and a bad lease TTL before writing anything", async () => {
    const { engine } = await engineWith(10);
    const store = await target();
    expect(
      (await expectCode(runMetaBackup(engine, store, { every: HOUR, retention: {} }), "INVALID_ARGUMENT"))
        .message,
    ).toMatch(/empty/);
    await expectCode(
      runMetaBackup(engine, store, { every: HOUR, retention: { last: 0, daily: 0 } }),
      "INVALID_ARGUMENT",
    );
    await expectCode(
      runMetaBackup(engine, store, { every: HOUR, retention: { last: 1.5 } }),
      "INVALID_ARGUMENT",
    );
    await expectCode(runMetaBackup(engine, store, { every: 0 }), "INVALID_ARGUMENT");
    await expectCode(runMetaBackup(engine, store, { every: HOUR, leaseTtlMs: -1 }), "INVALID_ARGUMENT");
    expect(() => new MetaBackupScheduler(engine, store, { every: HOUR, retention: {} })).toThrow(/empty/);
    expect(await listMetaDumps(store)).toEqual([]);
    expect(await readLease(engine, metaBackupLeaseName(metaBackupTargetId(store.url)))).toBeUndefined();
  });
});

describe("MetaBackupScheduler", () => {
  it("two schedulers on two connections make one dump per interval between them", async () => {
    const { engine, connect } = await engineWith(200);
    const other = await connect();
    const store = await target();
    const times: number[] = [];
    const errors: unknown[] = [];
    const record = (o: MetaBackupOutcome) => {
      if (o.status === "done") times.push(Date.parse(o.state.time));
    };
    const stop = new AbortController();
    const schedulers = [engine, other].map(
      (e) =>
        new MetaBackupScheduler(e, store, {
          every: 1000,
          retryMs: 100,
          onOutcome: record,
          onError: (err) => errors.push(err),
        }),
    );
    const started = Date.now();
    const running = schedulers.map((s) => s.run(stop.signal));
    await new Promise((r) => setTimeout(r, 3500));
    stop.abort();
    await Promise.all(running);
    const elapsed = Date.now() - started;
    expect(errors).toEqual([]);
    times.sort();
    expect(times.length).toBeGreaterThanOrEqual(3);
    expect(times.length).toBeLessThanOrEqual(Math.floor(elapsed / 1000) + 1);
    for (let i = 1; i < times.length; i++) expect(times[i]! - times[i - 1]!).toBeGreaterThanOrEqual(1000);
    expect((await listMetaDumps(store)).length).toBe(times.length);
    const lease = await readLease(engine, metaBackupLeaseName(metaBackupTargetId(store.url)));
    expect(lease!.expiresAt.getTime()).toBe(0);
  });

  it("keeps running after a failed run and dumps on the next try", async () => {
    const { engine } = await engineWith(10);
    const store = await target();
    let failures = 1;
    const flaky = withPut(store, async (key, body, options) => {
      if (failures-- > 0) throw new UnavailableError(`Cannot write "${key}" in ${store.url} (ETIMEDOUT).`);
      return store.put(key, body, options);
    });
    const outcomes: MetaBackupOutcome[] = [];
    const errors: unknown[] = [];
    const stop = new AbortController();
    const scheduler = new MetaBackupScheduler(engine, flaky, {
      every: HOUR,
      retryMs: 50,
      onOutcome: (o) => {
        outcomes.push(o);
        stop.abort();
      },
      onError: (e) => errors.push(e),
    });
    await scheduler.run(stop.signal);
    expect(errors).toHaveLength(1);
    expect(hasCode(errors[0], "UNAVAILABLE")).toBe(true);
    expect(outcomes.map((o) => o.status)).toEqual(["done"]);
  });
});
