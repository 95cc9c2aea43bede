import { readFile } from "node:fs/promises";
import {
  CairnError,
  ConflictError,
  DEFAULT_META_RETENTION,
  formatDuration,
  hasCode,
  InvalidArgumentError,
  type MetaBackupOutcome,
  MetaBackupScheduler,
  type MetadataEngine,
  metaBackupStatus,
  type ObjectStore,
  parseDuration,
  redactUrl,
} from "@cairn/core";
import type { EncryptionAlgorithm } from "@cairn/manifest";
import { type Command, Option } from "commander";
import { describeError, EXIT } from "./errors.js";
import { formatSize, formatTime, plural } from "./format.js";
import type { Output } from "./output.js";
import { type App, action, VERSION } from "./program.js";
import { addKeepOptions, describePolicy, type KeepOptions, keepPolicy } from "./retention-options.js";

interface RunOptions extends KeepOptions {
  to: string;
  every: string;
  once?: boolean;
  encryptRsaKey?: string;
  encryptAlgo: EncryptionAlgorithm;
  keepSecretKey?: boolean;
  leaseTtl: string;
}

async function readPublicKey(file: string): Promise<string> {
  try {
    return await readFile(file, "utf8");
  } catch (error) {
    throw new InvalidArgumentError(
      `Cannot read the public key ${file} (${(error as NodeJS.ErrnoException).code}).`,
      { cause: error },
    );
  }
}

const seconds = (ms: number): string => `${(ms / 1000).toFixed(1)} s`;

/** One line on stderr per event: text, or one JSON document with `--json`. */
function report(out: Output, event: Record<string, unknown>, text: string): void {
  out.note(out.json ? JSON.stringify(event) : `backup-meta: ${text}`);
}

function reportOutcome(out: Output, target: string, o: MetaBackupOutcome): void {
  switch (o.status) {
    case "done": {
      const s = o.state;
      const removed = o.removed.length ? `; removed ${plural(o.removed.length, "old dump")}` : "";
      report(
        out,
        { event: "done", ...s, removed: o.removed, warnings: o.warnings },
        `dumped ${plural(s.records, "record")} (${formatSize(s.size)}) to ${s.target.replace(/\/$/, "")}/${s.file} in ${seconds(s.durationMs)}${removed}`,
      );
      for (const w of o.warnings) report(out, { event: "warning", target, message: w }, w);
      return;
    }
    case "not-due":
      report(
        out,
        { event: "not-due", target, last: o.last, nextDue: o.nextDue.toISOString() },
        `not due: the last dump (${o.last.file}) started ${formatTime(o.last.time)}; the next is due at ${formatTime(o.nextDue.toISOString())}`,
      );
      return;
    case "busy":
      report(
        out,
        {
          event: "busy",
          target,
          holder: o.lease.holder,
          token: o.lease.token,
          expiresAt: o.lease.expiresAt.toISOString(),
        },
        `another process (${o.lease.holder}) is running this backup; its lease lasts until ${formatTime(o.lease.expiresAt.toISOString())}`,
      );
      return;
    case "fenced":
      report(
        out,
        { event: "fenced", target, file: o.file, written: o.written, deleted: o.deleted, token: o.token },
        fencedText(target, o),
      );
      return;
  }
}

function fencedText(target: string, o: Extract<MetaBackupOutcome, { status: "fenced" }>): string {
  return `another process took over the lease of ${target} during the dump (this one paused longer than --lease-ttl); its state stands, and ${o.written ? (o.deleted ? `${o.file} was removed again` : `${o.file} was left`) : "no dump was written"}`;
}

/**
 * Takes over SIGINT and SIGTERM while the backup runs. The process-wide Ctrl-C handler exits at once, which
 * would leave the lease held until it expires; here a signal stops the run instead (its dump abandoned, no
 * object left, the lease released), and a second signal exits at once. Returns the function that restores the
 * previous handlers.
 */
function takeSignals(stop: AbortController, received: { signal?: NodeJS.Signals }): () => void {
  const saved = new Map<NodeJS.Signals, NodeJS.SignalsListener[]>();
  const handler: NodeJS.SignalsListener = (signal) => {
    if (stop.signal.aborted) process.exit(EXIT.INTERRUPTED);
    received.signal = signal;
    stop.abort(new Error(`interrupted by ${signal}`));
  };
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    saved.set(signal, process.listeners(signal));
    process.removeAllListeners(signal);
    process.on(signal, handler);
  }
  return () => {
    for (const [signal, listeners] of saved) {
      process.removeListener(signal, handler);
      for (const l of listeners) process.on(signal, l);
    }
  };
}

export function registerBackupMetaCommands(program: Command, app: App): void {
  const group = program
    .command("backup-meta")
    .description(
      "scheduled dumps of the whole metadata engine to a store, with retention (JuiceFS's backup)",
    );

  addKeepOptions(
    group
      .command("run")
      .description("dump the engine every interval to <store-url>/meta/, one process at a time across hosts")
      .requiredOption("--to <store-url>", "where the dumps go, e.g. file:///mnt/backup/cairn")
      .option("--every <duration>", "interval between dumps: 90s, 15m, 1h, 1d, …", "1h")
      .option("--once", "check once, dump if due, apply retention and exit (for cron)")
      .option("--encrypt-rsa-key <pem-file>", "encrypt the dumps for this RSA public key")
      .addOption(
        new Option("--encrypt-algo <algorithm>", "cipher of encrypted dumps")
          .choices(["aes256gcm-rsa", "chacha20-rsa"])
          .default("aes256gcm-rsa"),
      )
      .option("--keep-secret-key", 'keep credentials in repository settings (default: written as "removed")')
      .option(
        "--lease-ttl <duration>",
        "how long the lease outlives a process that stopped renewing it",
        "1m",
      ),
    "dump",
  )
    .addHelpText(
      "after",
      `
Every --every, a dump of the whole engine (--meta) goes to <store-url>/meta/dump-YYYY-MM-DD-HHMMSS.json.gz (UTC,
gzip, encrypted with --encrypt-rsa-key), streamed and made visible only once complete. Any number of processes
on any hosts may run this for the same engine and target: a lease in the engine lets one dump at a time, and a
dump is due when the last one (by anyone) started at least --every ago, so the shortest interval wins.

After each dump, dumps no --keep-* rule keeps are removed; without rules, JuiceFS's policy applies: every dump
of the last 2 days, one a day for 2 weeks, one a week for 2 months, one a month before. Other files under
meta/ are never touched. Each run is one line on stderr (JSON with --json). Ctrl-C or SIGTERM stops cleanly:
an unfinished dump leaves nothing behind and the lease is released.

Examples:
  cairn --meta sqlite:///srv/cairn/meta.db backup-meta run --to file:///mnt/backup/cairn --every 1h
  cairn backup-meta run --to file:///mnt/backup/cairn --every 1d --once --keep-daily 7 --keep-weekly 4
  cairn backup-meta status --to file:///mnt/backup/cairn`,
    )
    .action(
      action<RunOptions>(app, async (ctx, _args, opts) => {
        const every = parseDuration(opts.every, "--every interval");
        const leaseTtlMs = parseDuration(opts.leaseTtl, "--lease-ttl duration");
        // Rules given explicitly replace the default whole.
        const retention = keepPolicy(opts, "dump") ?? { ...DEFAULT_META_RETENTION };
        const publicKeyPem = opts.encryptRsaKey ? await readPublicKey(opts.encryptRsaKey) : undefined;
        let target = redactUrl(opts.to);

        const stop = new AbortController();
        const received: { signal?: NodeJS.Signals } = {};
        const restoreSignals = takeSignals(stop, received);
        let engine: MetadataEngine | undefined;
        let store: ObjectStore | undefined;
        try {
          engine = await app.registry.openEngine(ctx.meta);
          store = await app.registry.openStore(opts.to);
          target = redactUrl(store.url);
          const scheduler = new MetaBackupScheduler(engine, store, {
            every,
            retention,
            leaseTtlMs,
            engineUrl: ctx.meta,
            tool: { name: "cairn", version: VERSION },
            keepSecrets: opts.keepSecretKey === true,
            ...(publicKeyPem ? { encrypt: { publicKeyPem, algorithm: opts.encryptAlgo } } : {}),
            onOutcome: (o) => {
              // A long-running process logs what it did, not every check that found nothing due.
              if (o.status === "done" || o.status === "fenced") reportOutcome(ctx.out, target, o);
            },
            onError: (error) => {
              const { code, message } = describeError(error);
              report(ctx.out, { event: "failed", target, error: { code, message } }, `failed: ${message}`);
            },
          });

          if (opts.once) {
            let outcome: MetaBackupOutcome;
            try {
              outcome = await scheduler.runOnce(stop.signal);
            } catch (error) {
              if (stop.signal.aborted) return await interrupted(ctx.out, received, engine, store);
              // A store's key collision is a CONFLICT naming the key in its message; the list of paths that
              // follows a merge conflict would only repeat it, so the error stays one line.
              if (hasCode(error, "CONFLICT"))
                throw new CairnError("CONFLICT", error.message, { cause: error });
              throw error;
            }
            if (outcome.status === "fenced") throw new ConflictError(`${fencedText(target, outcome)}.`);
            reportOutcome(ctx.out, target, outcome);
            return;
          }

          report(
            ctx.out,
            {
              event: "start",
              target,
              every: formatDuration(every),
              retention: describePolicy(retention),
              holder: scheduler.holder,
            },
            `every ${formatDuration(every)} to ${target}, keeping ${describePolicy(retention)} (as ${scheduler.holder})`,
          );
          await scheduler.run(stop.signal);
          await interrupted(ctx.out, received, engine, store);
        } finally {
          restoreSignals();
          await store?.close().catch(() => {});
          await engine?.close().catch(() => {});
        }
      }),
    );

  group
    .command("status")
    .description("the last successful scheduled dump to <store-url> (from the engine) and the dumps present")
    .requiredOption("--to <store-url>", "the target of `backup-meta run`")
    .addHelpText(
      "after",
      `
Examples:
  cairn backup-meta status --to file:///mnt/backup/cairn
  cairn backup-meta status --to file:///mnt/backup/cairn --json | jq .last.completedAt`,
    )
    .action(
      action<{ to: string }>(app, async (ctx, _args, opts) => {
        const engine = await app.registry.openEngine(ctx.meta);
        let store: ObjectStore | undefined;
        try {
          store = await app.registry.openStore(opts.to);
          const status = await metaBackupStatus(engine, store);
          const now = Date.now();
          const lease = status.lease && {
            holder: status.lease.holder,
            token: status.lease.token,
            expiresAt: status.lease.expiresAt.toISOString(),
            held: status.lease.expiresAt.getTime() > now,
          };
          if (ctx.out.json) {
            await ctx.out.record({
              target: status.target,
              targetId: status.targetId,
              last: status.last ?? null,
              lease: lease ?? null,
              dumps: status.dumps.map((d) => ({ file: d.file, time: d.time.toISOString(), size: d.size })),
            });
            return;
          }
          const last = status.last;
          await ctx.out.line(`target:       ${status.target}`);
          await ctx.out.line(
            `last backup:  ${
              last
                ? `${formatTime(last.completedAt)}, ${last.file}, ${formatSize(last.size)}, ${plural(last.records, "record")}, ${seconds(last.durationMs)}${last.encrypted ? ", encrypted" : ""}`
                : "never"
            }`,
          );
          await ctx.out.line(
            `lease:        ${
              lease?.held
                ? `held by ${lease.holder} until ${formatTime(lease.expiresAt)} (token ${lease.token})`
                : "free"
            }`,
          );
          await ctx.out.line(`dumps:        ${status.dumps.length}`);
          for (const d of [...status.dumps].reverse()) {
            await ctx.out.line(
              `  ${formatTime(d.time.toISOString())}  ${formatSize(d.size).padStart(9)}  ${d.file}`,
            );
          }
        } finally {
          await store?.close().catch(() => {});
          await engine.close().catch(() => {});
        }
      }),
    );
}

/**
 * Ends a run stopped by a signal, after the lease was released: SIGTERM is the ordinary way to stop a service
 * (status 0); Ctrl-C is cairn's "interrupted" (status 130), as for every other command.
 */
async function interrupted(
  out: Output,
  received: { signal?: NodeJS.Signals },
  engine: MetadataEngine,
  store: ObjectStore,
): Promise<void> {
  if (received.signal === undefined) return;
  report(
    out,
    { event: "stopped", signal: received.signal },
    `stopped (${received.signal}); the lease is released`,
  );
  if (received.signal === "SIGINT") {
    await store.close().catch(() => {});
    await engine.close().catch(() => {});
    process.stderr.write("cairn: interrupted\n");
    process.exit(EXIT.INTERRUPTED);
  }
}
