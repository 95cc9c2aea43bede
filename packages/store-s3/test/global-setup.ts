import { startS3rver } from "@cairn/testkit/servers";
import type { TestProject } from "vitest/node";

declare module "vitest" {
  export interface ProvidedContext {
    /** Endpoint of the s3rver of the conformance and package tests, e.g. `http://127.0.0.1:PORT`. */
    s3Endpoint: string;
    /** Endpoint of a second s3rver, for the repository suite: s3rver is single-threaded, so two use two cores. */
    s3RepositoryEndpoint: string;
  }
}

/** Starts the s3rvers of the run; a test that needs to stop a server starts its own. */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const [shared, repository] = await Promise.all([startS3rver(), startS3rver()]);
  project.provide("s3Endpoint", shared.endpoint);
  project.provide("s3RepositoryEndpoint", repository.endpoint);
  return async () => {
    await Promise.all([shared.stop(), repository.stop()]);
  };
}
