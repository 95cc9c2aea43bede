import { AnonymousCredential, StorageSharedKeyCredential } from "@azure/storage-blob";
import { InvalidArgumentError, type StoreFactory, urlScheme } from "@cairn/core";
import { type AzureStore, type AzureStoreOptions, createAzureStore } from "./azure-store.js";
import { keyProblem } from "./keys.js";

/** The parameters a store URL may carry (besides a SAS in an `https:` URL). */
const PARAMS = ["timeout", "retries", "concurrency", "blockSize", "uploadBuffer"] as const;

/** Query parameters that make up a shared access signature; they are credentials, never shown. */
const SAS_PARAMS = new Set([
  "sv",
  "ss",
  "srt",
  "sp",
  "se",
  "st",
  "sip",
  "spr",
  "sig",
  "sr",
  "si",
  "sdd",
  "ses",
  "skoid",
  "sktid",
  "skt",
  "ske",
  "sks",
  "skv",
  "saoid",
  "suoid",
  "scid",
  "sduoid",
  "skdutid",
  "rscc",
  "rscd",
  "rsce",
  "rscl",
  "rsct",
]);

/** What a store URL names, before credentials are looked up. */
export interface AzureUrl {
  /** `azure` for `azure://container/prefix`, `https` for `https://account.blob.core.windows.net/…`. */
  form: "azure" | "https";
  /** Storage account, known from an `https:` URL only. */
  account?: string;
  /** Blob service endpoint of an `https:` URL, e.g. `https://acct.blob.core.windows.net`. */
  endpoint?: string;
  container: string;
  /** Blob name prefix of every key, `""` or ending in `/`. */
  prefix: string;
  /** A SAS found in the URL's query, without `?`. A credential. */
  sas?: string;
  /** The URL without SAS, for messages. */
  display: string;
  timeoutSeconds?: number;
  retries?: number;
  concurrency?: number;
  blockSize?: number;
  uploadBuffer?: number;
}

const CONTAINER = /^(?:[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}|\$root|\$web)$/;
const ACCOUNT_HOST = /^([a-z0-9]{3,24})\.blob\.(core\.[a-z0-9.-]+)$/;

function positiveInt(name: string, value: string, url: string, max: number): number {
  const n = /^\d+$/.test(value) ? Number(value) : Number.NaN;
  if (!Number.isSafeInteger(n) || n < 1 || n > max) {
    throw new InvalidArgumentError(
      `The parameter ${name}=${value} in ${url} must be a whole number from 1 to ${max}.`,
    );
  }
  return n;
}

function byteSize(name: string, value: string, url: string): number {
  const m = /^(\d+)([KMG]i?B?)?$/i.exec(value);
  const unit = m?.[2]?.[0]?.toUpperCase();
  const n = m
    ? Number(m[1]) * (unit === "K" ? 1024 : unit === "M" ? 1024 ** 2 : unit === "G" ? 1024 ** 3 : 1)
    : 0;
  if (!(n >= 64 * 1024 && n <= 4000 * 1024 ** 2)) {
    throw new InvalidArgumentError(
      `The parameter ${name}=${value} in ${url} must be a size from 64KiB to 4000MiB, e.g. 8MiB.`,
    );
  }
  return n;
}

/**
 * Reads a store URL: `azure://container/prefix` (account and credentials from the environment) or
 * `https://<account>.blob.core.windows.net/<container>/<prefix>` as Azure users write it, optionally with a
 * SAS in its query. Path segments are percent-decoded. Parameters: `timeout` (seconds per request try),
 * `retries`, `concurrency` (blocks in flight per upload), `blockSize` (e.g. `8MiB`), `uploadBuffer` (block
 * buffers of all uploads at once, e.g. `96MiB`); any other parameter is refused, except the SAS parameters of an
 * `https:` URL.
 */
export function parseAzureUrl(url: string): AzureUrl {
  if (typeof url !== "string") throw new InvalidArgumentError("An Azure store URL must be a string.");
  const scheme = urlScheme(url);
  const q = url.indexOf("?");
  const base = q >= 0 ? url.slice(0, q) : url;
  const query = q >= 0 ? url.slice(q + 1) : "";
  const own: string[] = [];
  const sas: string[] = [];
  for (const part of query.split("&")) {
    if (part === "") continue;
    const name = decodeURIComponent(part.split("=", 1)[0]!);
    if (scheme === "https" && SAS_PARAMS.has(name)) sas.push(part);
    else own.push(part);
  }
  const display = own.length > 0 ? `${base}?${own.join("&")}` : base;
  if (sas.length > 0 && !sas.some((p) => p.startsWith("sig="))) {
    throw new InvalidArgumentError(
      `The shared access signature in ${display} has no "sig" parameter; copy the whole SAS token.`,
    );
  }

  let rest: string;
  const parsed: Partial<AzureUrl> = {};
  if (scheme === "azure") {
    rest = base.slice("azure://".length);
    if (!base.slice(0, 8).toLowerCase().startsWith("azure://")) {
      throw new InvalidArgumentError(
        `"${display}" is not an Azure store URL; expected azure://container/prefix.`,
      );
    }
  } else if (scheme === "https") {
    const m = /^https:\/\/([^/?#]+)(\/.*)?$/i.exec(base);
    const host = m?.[1]?.toLowerCase() ?? "";
    const account = ACCOUNT_HOST.exec(host);
    if (!m || !account) {
      throw new InvalidArgumentError(
        `${display} is not an Azure Blob Storage URL; expected https://<account>.blob.core.windows.net/<container>/<prefix> (for other endpoints use azure://container/prefix with a connection string whose BlobEndpoint names it).`,
      );
    }
    parsed.account = account[1]!;
    parsed.endpoint = `https://${host}`;
    rest = (m[2] ?? "").slice(1);
  } else {
    throw new InvalidArgumentError(
      `"${display}" is not an Azure store URL; expected azure://container/prefix or https://<account>.blob.core.windows.net/<container>/<prefix>.`,
    );
  }
  if (/#/.test(rest)) {
    throw new InvalidArgumentError(`${display} has a "#" fragment; encode "#" in a prefix as %23.`);
  }
  const slash = rest.indexOf("/");
  const container = slash >= 0 ? rest.slice(0, slash) : rest;
  if (!CONTAINER.test(container)) {
    throw new InvalidArgumentError(
      container === ""
        ? `${display} names no container; expected ${scheme === "azure" ? "azure://container/prefix" : "https://<account>.blob.core.windows.net/<container>/<prefix>"}.`
        : `"${container}" in ${display} is not a valid container name: 3 to 63 lower-case letters, digits and single hyphens, starting with a letter or digit.`,
    );
  }
  let prefix = "";
  const path = slash >= 0 ? rest.slice(slash + 1).replace(/\/+$/, "") : "";
  if (path !== "") {
    try {
      prefix = path
        .split("/")
        .map((s) => decodeURIComponent(s))
        .join("/");
    } catch (cause) {
      throw new InvalidArgumentError(`The prefix of ${display} is not valid percent-encoding.`, { cause });
    }
    const why = keyProblem(prefix);
    if (why) throw new InvalidArgumentError(`The prefix ${JSON.stringify(prefix)} of ${display} ${why}.`);
    prefix += "/";
  }

  const out: AzureUrl = { form: scheme, ...parsed, container, prefix, display };
  if (sas.length > 0) out.sas = sas.join("&");
  for (const part of own) {
    const eq = part.indexOf("=");
    const name = decodeURIComponent(eq >= 0 ? part.slice(0, eq) : part);
    const value = eq >= 0 ? decodeURIComponent(part.slice(eq + 1)) : "";
    switch (name) {
      case "timeout":
        out.timeoutSeconds = positiveInt(name, value, display, 3600);
        break;
      case "retries":
        out.retries = value === "0" ? 0 : positiveInt(name, value, display, 20);
        break;
      case "concurrency":
        out.concurrency = positiveInt(name, value, display, 256);
        break;
      case "blockSize":
        out.blockSize = byteSize(name, value, display);
        break;
      case "uploadBuffer":
        out.uploadBuffer = byteSize(name, value, display);
        break;
      default:
        throw new InvalidArgumentError(
          `Unknown parameter "${name}" in ${display}; supported: ${PARAMS.join(", ")}${scheme === "https" ? " and the parameters of a SAS token" : ""}.`,
        );
    }
  }
  return out;
}

/** The credential and endpoint a store connects with. Never shown: {@link AzureUrl.display} names the store. */
export interface AzureAccess {
  /** Blob service endpoint without SAS, e.g. `https://acct.blob.core.windows.net` or `http://127.0.0.1:10000/devstoreaccount1`. */
  endpoint: string;
  credential: StorageSharedKeyCredential | AnonymousCredential;
  /** SAS token without `?`, appended to every request URL. */
  sas?: string;
}

/** `AZURE_STORAGE_CONNECTION_STRING` as key-value pairs (names are case-insensitive, values may contain `=`). */
function parseConnectionString(value: string): Map<string, string> {
  const pairs = new Map<string, string>();
  for (const part of value.split(";")) {
    const trimmed = part.trim();
    if (trimmed === "") continue;
    const eq = trimmed.indexOf("=");
    if (eq <= 0) {
      throw new InvalidArgumentError(
        "AZURE_STORAGE_CONNECTION_STRING is not a connection string of Name=value pairs separated by ';'.",
      );
    }
    pairs.set(trimmed.slice(0, eq).toLowerCase(), trimmed.slice(eq + 1));
  }
  return pairs;
}

function sharedKey(account: string, key: string, source: string): StorageSharedKeyCredential {
  if (!/^[A-Za-z0-9+/]+=*$/.test(key)) {
    throw new InvalidArgumentError(`The account key in ${source} is not base64.`);
  }
  return new StorageSharedKeyCredential(account, key);
}

const stripQuestion = (sas: string) => sas.replace(/^\?/, "");

/** Account, endpoint and credential from `AZURE_STORAGE_CONNECTION_STRING`. */
function fromConnectionString(value: string): AzureAccess & { account: string } {
  const cs = parseConnectionString(value);
  if (cs.get("usedevelopmentstorage")?.toLowerCase() === "true") {
    throw new InvalidArgumentError(
      "AZURE_STORAGE_CONNECTION_STRING=UseDevelopmentStorage=true is not supported; give AccountName, AccountKey and BlobEndpoint of the emulator instead.",
    );
  }
  const blobEndpoint = cs.get("blobendpoint")?.replace(/\/+$/, "");
  let account = cs.get("accountname");
  if (!account && blobEndpoint) {
    account = /^https?:\/\/([a-z0-9]{3,24})\.blob\./i.exec(blobEndpoint)?.[1] ?? undefined;
  }
  if (!account && !cs.get("sharedaccesssignature")) {
    throw new InvalidArgumentError("AZURE_STORAGE_CONNECTION_STRING has no AccountName.");
  }
  const protocol = cs.get("defaultendpointsprotocol") ?? "https";
  const endpoint =
    blobEndpoint ?? `${protocol}://${account}.blob.${cs.get("endpointsuffix") ?? "core.windows.net"}`;
  if (!/^https?:\/\/[^/]+/i.test(endpoint)) {
    throw new InvalidArgumentError(
      "The BlobEndpoint in AZURE_STORAGE_CONNECTION_STRING is not an http(s) URL.",
    );
  }
  const key = cs.get("accountkey");
  const sas = cs.get("sharedaccesssignature");
  if (key) {
    return {
      account: account!,
      endpoint,
      credential: sharedKey(account!, key, "AZURE_STORAGE_CONNECTION_STRING"),
    };
  }
  if (sas)
    return {
      account: account ?? "",
      endpoint,
      credential: new AnonymousCredential(),
      sas: stripQuestion(sas),
    };
  throw new InvalidArgumentError(
    "AZURE_STORAGE_CONNECTION_STRING has neither AccountKey nor SharedAccessSignature.",
  );
}

/**
 * Finds the credentials for `parsed` in `env`: for `azure://` URLs `AZURE_STORAGE_CONNECTION_STRING`, or
 * `AZURE_STORAGE_ACCOUNT` with `AZURE_STORAGE_KEY` or `AZURE_STORAGE_SAS_TOKEN`; for `https:` URLs a SAS in the
 * URL, else the same variables when they name the URL's account, else anonymous access (public containers).
 */
export function resolveAccess(parsed: AzureUrl, env: NodeJS.ProcessEnv = process.env): AzureAccess {
  const connectionString = env.AZURE_STORAGE_CONNECTION_STRING?.trim();
  const envAccount = env.AZURE_STORAGE_ACCOUNT?.trim();
  const envKey = env.AZURE_STORAGE_KEY?.trim();
  const envSas = env.AZURE_STORAGE_SAS_TOKEN?.trim();
  if (parsed.form === "https") {
    const account = parsed.account!;
    const endpoint = parsed.endpoint!;
    if (parsed.sas) return { endpoint, credential: new AnonymousCredential(), sas: parsed.sas };
    if (connectionString) {
      const cs = fromConnectionString(connectionString);
      if (cs.account === account) {
        return cs.sas
          ? { endpoint, credential: cs.credential, sas: cs.sas }
          : { endpoint, credential: cs.credential };
      }
    }
    if (!envAccount || envAccount === account) {
      if (envKey) return { endpoint, credential: sharedKey(account, envKey, "AZURE_STORAGE_KEY") };
      if (envSas) return { endpoint, credential: new AnonymousCredential(), sas: stripQuestion(envSas) };
    }
    return { endpoint, credential: new AnonymousCredential() };
  }
  if (connectionString) {
    const { account: _, ...access } = fromConnectionString(connectionString);
    return access;
  }
  if (envAccount && (envKey || envSas)) {
    const endpoint = `https://${envAccount}.blob.core.windows.net`;
    if (envKey) return { endpoint, credential: sharedKey(envAccount, envKey, "AZURE_STORAGE_KEY") };
    return { endpoint, credential: new AnonymousCredential(), sas: stripQuestion(envSas!) };
  }
  throw new InvalidArgumentError(
    `No Azure credentials for ${parsed.display}: set AZURE_STORAGE_CONNECTION_STRING, or AZURE_STORAGE_ACCOUNT with AZURE_STORAGE_KEY or AZURE_STORAGE_SAS_TOKEN.`,
  );
}

/** The options of a store for `url`, with credentials from `env`. */
export function azureStoreOptions(url: string, env: NodeJS.ProcessEnv = process.env): AzureStoreOptions {
  const parsed = parseAzureUrl(url);
  const access = resolveAccess(parsed, env);
  const options: AzureStoreOptions = {
    endpoint: access.endpoint,
    credential: access.credential,
    container: parsed.container,
    prefix: parsed.prefix,
    url: parsed.display,
  };
  if (access.sas !== undefined) options.sas = access.sas;
  if (parsed.timeoutSeconds !== undefined) options.timeoutSeconds = parsed.timeoutSeconds;
  if (parsed.retries !== undefined) options.retries = parsed.retries;
  if (parsed.concurrency !== undefined) options.concurrency = parsed.concurrency;
  if (parsed.blockSize !== undefined) options.blockSize = parsed.blockSize;
  if (parsed.uploadBuffer !== undefined) options.uploadBuffer = parsed.uploadBuffer;
  return options;
}

/** A {@link StoreFactory} whose stores are typed as {@link AzureStore}. */
export interface AzureStoreFactory extends StoreFactory {
  open(url: string): Promise<AzureStore>;
}

/**
 * Opens Azure Blob Storage stores from `azure://container/prefix` and
 * `https://<account>.blob.core.windows.net/<container>/<prefix>` URLs; see {@link parseAzureUrl} and
 * {@link resolveAccess}. Opening sends no request: a missing container or refused credentials show on the first
 * call, as `NOT_FOUND` or `PERMISSION_DENIED`.
 */
export const factory: AzureStoreFactory = Object.freeze({
  schemes: Object.freeze(["azure", "https"]),
  async open(url: string): Promise<AzureStore> {
    return createAzureStore(azureStoreOptions(url));
  },
});
