import { describeStore, randomName } from "@cairn/testkit";
import { inject } from "vitest";
import { factory } from "../src/index.js";
import { newBucket } from "./helpers.js";

const endpoint = inject("s3Endpoint");
const bucket = await newBucket(endpoint);

describeStore("s3 (s3rver)", {
  // Every store gets a fresh prefix of one bucket, as stores of many repositories share a bucket.
  open: async () => factory.open(`s3://${bucket}/${randomName("store")}?endpoint=${endpoint}`),
  // s3rver ignores If-None-Match, so the store falls back to a HEAD before the write (createOnly=check), which
  // keeps existing objects but cannot decide a race between writers.
  atomicCreateOnly: false,
  // s3rver writes a PUT's body in place as it arrives and keeps what came when the request is cut; S3 and
  // other services discard it. Bodies that can be reopened go up in one PUT (singlePutLimit), so a body failing
  // midway leaves its partial bytes on s3rver. Bodies that cannot be reopened go up in parts, and are checked.
  discardsCutUploads: false,
  timeout: 60_000,
});
