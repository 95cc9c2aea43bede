import { CreateBucketCommand, S3Client } from "@aws-sdk/client-s3";
import { randomName } from "@cairn/testkit";
import { EMULATOR_CREDENTIALS } from "@cairn/testkit/servers";

/** A client of the test server, for what the store does not do: creating buckets, reading behind its back. */
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
