import { randomBytes } from "node:crypto";
import mysql from "mysql2/promise";
import type { TestProject } from "vitest/node";

declare module "vitest" {
  export interface ProvidedContext {
    /** URL of the server without a database, ending in `/`. */
    mysqlServer: string;
    /** The database created for this run, dropped after it. */
    mysqlDatabase: string;
  }
}

/**
 * Creates one database for the whole run, `cairn_test_<random>`, and drops it afterwards, so runs can repeat
 * and overlap on one server. A server that cannot be reached fails the run: the tests need a real MySQL.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const server = process.env.MYSQL_URL ?? "mysql://root@127.0.0.1:3306/";
  const base = server.endsWith("/") ? server : `${server}/`;
  const database = `cairn_test_${Date.now().toString(36)}_${randomBytes(4).toString("hex")}`;
  const admin = await mysql.createConnection({ uri: base, connectTimeout: 5000 }).catch((error: unknown) => {
    throw new Error(
      `The MySQL tests need a server at ${base.replace(/:[^:@/]*@/, ":***@")} (set MYSQL_URL): ${String(error)}`,
    );
  });
  await admin.query(`CREATE DATABASE \`${database}\``);
  project.provide("mysqlServer", base);
  project.provide("mysqlDatabase", database);
  return async () => {
    try {
      await admin.query(`DROP DATABASE IF EXISTS \`${database}\``);
      // Databases the tests created themselves (to see them created on first use) share the run's name.
      const [rows] = await admin.query<mysql.RowDataPacket[]>("SHOW DATABASES LIKE ?", [`${database}%`]);
      for (const row of rows) await admin.query(`DROP DATABASE IF EXISTS \`${Object.values(row)[0]}\``);
    } finally {
      await admin.end();
    }
  };
}
