import { startDynalite } from "@cairn/testkit/servers";
import type { TestProject } from "vitest/node";

declare module "vitest" {
  export interface ProvidedContext {
    /** `http://127.0.0.1:PORT` of the dynalite started for this run. */
    dynamodbEndpoint: string;
  }
}

/** Starts dynalite for the whole run; a failure to start it fails the run. */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const server = await startDynalite();
  project.provide("dynamodbEndpoint", server.endpoint);
  return () => server.stop();
}
