import { DeleteTableCommand, DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { randomName } from "@cairn/testkit";
import { afterAll, inject } from "vitest";

export const endpoint = inject("dynamodbEndpoint");

/** A raw client on the run's dynalite, for inspecting and tampering with tables. */
export function rawClient(): DynamoDBClient {
  return new DynamoDBClient({ endpoint, region: "us-east-1" });
}

const created = new Set<string>();

/** A table name unique to this run, deleted after the test file. */
export function tableName(label = "cairn"): string {
  const name = randomName(label);
  created.add(name);
  return name;
}

/** The URL of a table unique to this run (deleted after the test file), with extra parameters. */
export function tableUrl(label = "cairn", params = ""): string {
  return `dynamodb://${tableName(label)}?endpoint=${endpoint}&region=us-east-1${params}`;
}

afterAll(async () => {
  const client = rawClient();
  try {
    for (const name of created) {
      await client.send(new DeleteTableCommand({ TableName: name })).catch(() => undefined);
    }
  } finally {
    client.destroy();
  }
});
