import { startS3rver } from "@cairn/testkit/servers";
import type { TestProject } from "vitest/node";

declare module "vitest" {
  export interface ProvidedContext {
    /** Endpoint of the s3rver the tests share, e.g. `http://127.0.0.1:PORT`. */
    s3Endpoint: string;
  }
}

/** Starts one s3rver for the run; a test that needs to stop a server starts its own. */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const server = await startS3rver();
  project.provide("s3Endpoint", server.endpoint);
  return () => server.stop();
}
