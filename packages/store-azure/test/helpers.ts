import { ContainerClient, StorageSharedKeyCredential } from "@azure/storage-blob";
import { randomName } from "@cairn/testkit";
import { AZURITE_ACCOUNT } from "@cairn/testkit/servers";
import { afterAll, inject } from "vitest";

/** The run's Azurite, also set as AZURE_STORAGE_CONNECTION_STRING so that azure:// URLs (and the worker processes of the repository suite, which inherit the environment) reach it. */
export function useAzurite(): { endpoint: string; connectionString: string } {
  const endpoint = inject("azuriteEndpoint");
  const connectionString = inject("azuriteConnectionString");
  process.env.AZURE_STORAGE_CONNECTION_STRING = connectionString;
  return { endpoint, connectionString };
}

/** A client of container `name` on `endpoint` with the development account's key. */
export function containerClient(endpoint: string, name: string): ContainerClient {
  return new ContainerClient(
    `${endpoint}/${name}`,
    new StorageSharedKeyCredential(AZURITE_ACCOUNT.name, AZURITE_ACCOUNT.key),
  );
}

/** Creates a container with a fresh name, deleted with everything in it after the test file. */
export async function newContainer(endpoint: string): Promise<string> {
  const name = randomName("cairn");
  const client = containerClient(endpoint, name);
  await client.create();
  afterAll(async () => {
    await client.deleteIfExists();
  });
  return name;
}
