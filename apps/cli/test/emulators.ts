import { startAzurite, startDynalite, startS3rver } from "@cairn/testkit/servers";
import type { TestProject } from "vitest/node";

declare module "vitest" {
  export interface ProvidedContext {
    s3Endpoint: string;
    azureConnectionString: string;
    dynamoEndpoint: string;
  }
}

/**
 * Starts the S3, Azure Blob and DynamoDB emulators once for the CLI's end-to-end tests; a test passes their
 * endpoints to the binary through the environment, as a user's shell would.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const [s3, azure, dynamo] = await Promise.all([startS3rver(), startAzurite(), startDynalite()]);
  project.provide("s3Endpoint", s3.endpoint);
  project.provide("azureConnectionString", azure.connectionString);
  project.provide("dynamoEndpoint", dynamo.endpoint);
  return async () => {
    await Promise.all([s3.stop(), azure.stop(), dynamo.stop()]);
  };
}
