import { type EngineFactory, InvalidArgumentError, redactUrl, urlScheme } from "@cairn/core";
import { createMysqlEngine, type MysqlEngine, type MysqlEngineOptions } from "./mysql-engine.js";

const PARAMS = ["prefix", "poolSize", "connectTimeout", "pageSize", "createDatabase"] as const;

/**
 * `url` with the password hidden, also where {@link redactUrl} cannot find it: a JuiceFS-style URL keeps its
 * password unescaped, so it may hold `/`, `@` or `:`. Everything between the first `:` after `//` and the last
 * `@` before the parameters is the password.
 */
export function hideMysqlPassword(url: string): string {
  const start = url.indexOf("://");
  if (start < 0) return redactUrl(url);
  const q = url.indexOf("?", start);
  const main = q >= 0 ? url.slice(0, q) : url;
  const at = main.lastIndexOf("@");
  const colon = main.indexOf(":", start + 3);
  const hidden = at > start && colon >= 0 && colon < at ? `${main.slice(0, colon)}:***${url.slice(at)}` : url;
  return redactUrl(hidden);
}

function wholeNumber(url: string, name: string, raw: string, min: number, max: number): number {
  const n = Number(raw);
  if (!/^\d+$/.test(raw) || !Number.isSafeInteger(n) || n < min || n > max) {
    throw new InvalidArgumentError(
      `The parameter ${name}=${raw} in ${url} must be a whole number from ${min} to ${max}.`,
    );
  }
  return n;
}

function flag(url: string, name: string, raw: string): boolean {
  if (raw !== "true" && raw !== "false") {
    throw new InvalidArgumentError(`The parameter ${name}=${raw} in ${url} must be true or false.`);
  }
  return raw === "true";
}

function decode(url: string, what: string, raw: string): string {
  try {
    return decodeURIComponent(raw);
  } catch (cause) {
    throw new InvalidArgumentError(
      `The ${what} in ${url} has a malformed percent-escape; write a literal % as %25.`,
      { cause },
    );
  }
}

/**
 * Reads the options of a `mysql://` URL. Two forms name the server:
 *
 * - `mysql://user:password@host:3306/database` (host and port optional: `127.0.0.1`, `3306`; `[::1]` for IPv6);
 * - JuiceFS's `mysql://user:password@(host:3306)/database`, also written `@tcp(host:3306)`.
 *
 * The user defaults to `root`; without a password in the URL, the `MYSQL_PWD` environment variable is used when
 * set. User, password and database are percent-decoded (a literal `%` is `%25`); the password is everything
 * between the first `:` and the last `@`, so it may hold `@`, `:` or `/` as they are. Parameters: `prefix`
 * (table-name prefix, default `cairn_`), `poolSize`, `connectTimeout` (ms), `pageSize` and `createDatabase`
 * (`true|false`); any other is refused.
 */
export function parseMysqlUrl(url: string): MysqlEngineOptions {
  const shown = hideMysqlPassword(url);
  if (urlScheme(url) !== "mysql" || !/^mysql:\/\//i.test(url)) {
    throw new InvalidArgumentError(
      `"${shown}" is not a MySQL URL; expected mysql://user:password@host:3306/database.`,
    );
  }
  const rest = url.slice("mysql://".length);
  const q = rest.indexOf("?");
  const main = q >= 0 ? rest.slice(0, q) : rest;
  const query = q >= 0 ? rest.slice(q + 1) : "";
  const at = main.lastIndexOf("@");
  const userinfo = at >= 0 ? main.slice(0, at) : "";
  const address = main.slice(at + 1);

  let hostPort: string;
  let path: string;
  const wrapped = /^(?:tcp)?\(([^)]*)\)(.*)$/i.exec(address);
  if (wrapped) {
    hostPort = wrapped[1]!;
    path = wrapped[2]!;
  } else {
    const slash = address.indexOf("/");
    hostPort = slash >= 0 ? address.slice(0, slash) : address;
    path = slash >= 0 ? address.slice(slash) : "";
  }
  if (!path.startsWith("/") || path.length === 1) {
    throw new InvalidArgumentError(
      `${shown} names no database; expected mysql://user:password@host:3306/database.`,
    );
  }
  const database = decode(shown, "database name", path.slice(1));
  if (database.includes("/") || database.length > 64) {
    throw new InvalidArgumentError(
      `${shown} names the database "${database}", which MySQL does not allow (at most 64 characters, no "/").`,
    );
  }

  let host = "127.0.0.1";
  let port = 3306;
  const ipv6 = /^\[([^\]]+)\](?::(.*))?$/.exec(hostPort);
  let rawPort: string | undefined;
  if (ipv6) {
    host = ipv6[1]!;
    rawPort = ipv6[2];
  } else if (hostPort !== "") {
    const colon = hostPort.lastIndexOf(":");
    if (colon >= 0) {
      rawPort = hostPort.slice(colon + 1);
      host = hostPort.slice(0, colon) || host;
    } else {
      host = hostPort;
    }
  }
  if (rawPort !== undefined) {
    if (!/^\d{1,5}$/.test(rawPort) || Number(rawPort) < 1 || Number(rawPort) > 65535) {
      throw new InvalidArgumentError(`The port "${rawPort}" in ${shown} is not a port number (1 to 65535).`);
    }
    port = Number(rawPort);
  }

  const options: MysqlEngineOptions = { host, port, database, url: shown };
  if (userinfo !== "") {
    const colon = userinfo.indexOf(":");
    options.user = decode(shown, "user name", colon >= 0 ? userinfo.slice(0, colon) : userinfo);
    if (colon >= 0) options.password = decode(shown, "password", userinfo.slice(colon + 1));
  }
  if (options.password === undefined && process.env.MYSQL_PWD) options.password = process.env.MYSQL_PWD;

  for (const [name, value] of new URLSearchParams(query)) {
    switch (name) {
      case "prefix":
        options.tablePrefix = value;
        break;
      case "poolSize":
        options.poolSize = wholeNumber(shown, name, value, 1, 1000);
        break;
      case "connectTimeout":
        options.connectTimeout = wholeNumber(shown, name, value, 1, 600_000);
        break;
      case "pageSize":
        options.pageSize = wholeNumber(shown, name, value, 1, 100_000);
        break;
      case "createDatabase":
        options.createDatabase = flag(shown, name, value);
        break;
      default:
        throw new InvalidArgumentError(
          `Unknown parameter "${name}" in ${shown}; supported: ${PARAMS.join(", ")}.`,
        );
    }
  }
  return options;
}

/** An {@link EngineFactory} whose engines are typed as {@link MysqlEngine}. */
export interface MysqlEngineFactory extends EngineFactory {
  open(url: string): Promise<MysqlEngine>;
}

/** Opens MySQL / MariaDB engines from `mysql://` URLs; see {@link parseMysqlUrl}. */
export const factory: MysqlEngineFactory = Object.freeze({
  schemes: Object.freeze(["mysql"]),
  async open(url: string): Promise<MysqlEngine> {
    return createMysqlEngine(parseMysqlUrl(url));
  },
});
