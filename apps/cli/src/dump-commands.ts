import { createWriteStream } from "node:fs";
import { readFile, rename, rm } from "node:fs/promises";
import type { Writable } from "node:stream";
import { finished } from "node:stream/promises";
import {
  asCairnError,
  dumpEngine,
  ENGINE_DUMP_SECTIONS,
  InvalidArgumentError,
  loadEngine,
  redactUrl,
} from "@cairn/core";
import { type EncryptionAlgorithm, isGzipPath, writeDump } from "@cairn/manifest";
import { type Command, Option } from "commander";
import { plural } from "./format.js";
import { checkReadable, trackTempFile } from "./local-files.js";
import { type App, action, VERSION } from "./program.js";
import { startCounter } from "./progress.js";

interface DumpOptions {
  repo?: string;
  staging: boolean;
  keepSecretKey?: boolean;
  gzip?: boolean;
  encryptRsaKey?: string;
  encryptAlgo: EncryptionAlgorithm;
}

interface LoadOptions {
  repo?: string;
  encryptRsaKey?: string;
}

async function readKey(file: string, what: string): Promise<string> {
  try {
    return await readFile(file, "utf8");
  } catch (error) {
    throw new InvalidArgumentError(
      `Cannot read the ${what} ${file} (${(error as NodeJS.ErrnoException).code}).`,
      {
        cause: error,
      },
    );
  }
}

export function registerDumpCommands(program: Command, app: App): void {
  program
    .command("dump")
    .description("write a whole metadata engine (or one repository) as one portable JSON Lines document")
    .argument("<engine-url>", "the engine to dump, e.g. sqlite://./.cairn/meta.db")
    .argument("[file]", "where to write it (.gz compresses), or - for standard output", "-")
    .option("--repo <name>", "only this repository")
    .option("--no-staging", "leave out uncommitted (staged) entries")
    .option("--keep-secret-key", 'keep credentials in repository settings (default: written as "removed")')
    .option("--gzip", "compress with gzip (default: when the file name ends with .gz)")
    .option("--encrypt-rsa-key <pem-file>", "encrypt for this RSA public key")
    .addOption(
      new Option("--encrypt-algo <algorithm>", "cipher of an encrypted dump")
        .choices(["aes256gcm-rsa", "chacha20-rsa"])
        .default("aes256gcm-rsa"),
    )
    .addHelpText(
      "after",
      `
The dump is written to <file>.tmp and renamed to <file> once complete, so <file> is never half-written. It is a
consistent point in time on engines that offer snapshots (SQLite). Format: docs/manifest-format.md.

Examples:
  cairn dump sqlite://./.cairn/meta.db meta.json.gz
  cairn dump sqlite://./.cairn/meta.db - | cairn load sqlite:///srv/cairn/new.db -`,
    )
    .action(
      action<DumpOptions>(app, async (ctx, [url, file], opts) => {
        const target = file ?? "-";
        const publicKeyPem = opts.encryptRsaKey ? await readKey(opts.encryptRsaKey, "public key") : undefined;
        const engine = await app.registry.openEngine(url!);
        const tmp = target === "-" ? undefined : `${target}.tmp`;
        const untrack = tmp ? trackTempFile(tmp) : () => {};
        const output: Writable = tmp ? createWriteStream(tmp) : app.io.stdout;
        try {
          const writer = writeDump({
            output,
            sections: ENGINE_DUMP_SECTIONS,
            // No schema check on write: dumpEngine builds every record itself; load checks them all.
            source: { engine: engine.kind, url: redactUrl(url!) },
            tool: { name: "cairn", version: VERSION },
            consistency: engine.snapshot ? "snapshot" : "none",
            gzip: opts.gzip ?? (target !== "-" && isGzipPath(target)),
            endOutput: target !== "-",
            ...(publicKeyPem ? { encrypt: { publicKeyPem, algorithm: opts.encryptAlgo } } : {}),
          });
          const counter = await startCounter(ctx.out, "dumping");
          try {
            await dumpEngine(engine, writer, {
              ...(opts.repo !== undefined ? { repository: opts.repo } : {}),
              staging: opts.staging,
              keepSecrets: opts.keepSecretKey === true,
              onRecord: (n) => counter.update(n),
            });
          } catch (error) {
            await writer.abort(error as Error);
            throw error;
          } finally {
            counter.stop();
          }
          const footer = await writer.end();
          if (tmp) {
            await finished(output);
            await rename(tmp, target);
          }
          const total = Object.values(footer.counts).reduce((a, b) => a + b, 0);
          if (ctx.out.json)
            ctx.out.note(JSON.stringify({ file: target, counts: footer.counts, sha256: footer.sha256 }));
          else if (target !== "-") await ctx.out.line(`Dumped ${plural(total, "record")} to ${target}.`);
          else ctx.out.note(`Dumped ${plural(total, "record")}.`);
        } catch (error) {
          if (tmp) await rm(tmp, { force: true });
          throw asCairnError(error);
        } finally {
          untrack();
          await engine.close();
        }
      }),
    );

  program
    .command("load")
    .description("load a dump into an empty metadata engine (or one repository into any engine)")
    .argument("<engine-url>", "the engine to load into, e.g. sqlite:///srv/cairn/meta.db")
    .argument("[file]", "the dump (gzip and encryption are recognised), or - for standard input", "-")
    .option("--repo <name>", "load only this repository; the engine may hold others, not this one")
    .option(
      "--encrypt-rsa-key <pem-file>",
      "RSA private key of an encrypted dump (passphrase: $CAIRN_RSA_PASSPHRASE)",
    )
    .addHelpText(
      "after",
      `
The whole dump is checked — format, every record, references between records, the footer's counts and
digest — and nothing becomes visible until it all passed; a load that fails leaves the engine as it was.

Examples:
  cairn load sqlite:///srv/cairn/meta.db meta.json.gz
  cairn dump sqlite://./a.db - | cairn load sqlite://./b.db -`,
    )
    .action(
      action<LoadOptions>(app, async (ctx, [url, file], opts) => {
        const source = file ?? "-";
        const privateKeyPem = opts.encryptRsaKey
          ? await readKey(opts.encryptRsaKey, "private key")
          : undefined;
        const passphrase = app.io.env.CAIRN_RSA_PASSPHRASE;
        if (source !== "-") await checkReadable(source, "dump");
        const stdin = app.io.stdin as NodeJS.ReadableStream & AsyncIterable<Uint8Array>;
        const engine = await app.registry.openEngine(url!);
        try {
          // Read (a file by that thread itself) and checked on a thread of its own while this one writes.
          const dump = {
            ...(source === "-" ? { bytes: stdin, label: "standard input" } : { file: source, label: source }),
            ...(privateKeyPem ? { decrypt: { privateKeyPem, ...(passphrase ? { passphrase } : {}) } } : {}),
          };
          const counter = await startCounter(ctx.out, "loading");
          const result = await loadEngine(engine, dump, {
            ...(opts.repo !== undefined ? { repository: opts.repo } : {}),
            onRecord: (n) => counter.update(n),
          }).finally(() => counter.stop());
          const total = Object.values(result.counts).reduce((a, b) => a + b, 0);
          if (ctx.out.json) await ctx.out.record(result);
          else
            await ctx.out.line(
              `Loaded ${plural(total, "record")} (${result.repositories.length === 1 ? "1 repository" : `${result.repositories.length} repositories`}) into ${redactUrl(url!)}.`,
            );
        } finally {
          await engine.close();
        }
      }),
    );
}
