import { startAzurite } from "@cairn/testkit/servers";
import type { TestProject } from "vitest/node";

declare module "vitest" {
  export interface ProvidedContext {
    /** Blob endpoint of the Azurite this run started, e.g. `http://127.0.0.1:PORT/devstoreaccount1`. */
    azuriteEndpoint: string;
    /** Connection string of Azurite's development account, with BlobEndpoint. */
    azuriteConnectionString: string;
  }
}

// One Azurite for the whole run, on a free port with its own data folder; a failure to start fails the run.
// Tests create their own containers, so runs never see each other's blobs.
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const azurite = await startAzurite();
  project.provide("azuriteEndpoint", azurite.endpoint);
  project.provide("azuriteConnectionString", azurite.connectionString);
  return () => azurite.stop();
}
