#!/usr/bin/env node
import { tuneHeapForStreaming } from "@cairn/core";
import { EXIT } from "./errors.js";
import { removeTempFilesSync } from "./local-files.js";
import { main } from "./main.js";

// The AWS SDK warns on stderr, once per process, that its releases from 2027 need Node 22; cairn pins SDK
// versions that run on Node 20, and a user's one-line error must stay one line.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";

// cairn streams bytes: V8's concurrent marking would run without a pause on its small heap (see the function).
tuneHeapForStreaming();

process.once("SIGINT", () => {
  // Never leave a half-written download behind; an interrupted command can be run again.
  removeTempFilesSync();
  process.stderr.write("\ncairn: interrupted\n");
  process.exit(EXIT.INTERRUPTED);
});

process.stdout.on("error", (e: NodeJS.ErrnoException) => {
  // The reader went away (`cairn fs cat … | head`): stop quietly, as other command-line tools do.
  if (e.code === "EPIPE") process.exit(EXIT.OK);
  throw e;
});

process.exitCode = await main(process.argv.slice(2));
