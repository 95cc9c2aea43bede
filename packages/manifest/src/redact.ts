/** Value written in place of a secret. */
export const REDACTED = "removed";

// Keys compared lowercased with `-`, `_`, `.` and spaces removed.
const SECRET_KEYS: ReadonlySet<string> = new Set([
  "password",
  "passwd",
  "pwd",
  "pass",
  "passphrase",
  "secret",
  "token",
  "auth",
  "authorization",
  "credentials",
  "credential",
  "apikey",
  "accesskey",
  "accesskeyid",
  "secretkey",
  "secretaccesskey",
  "sessiontoken",
  "accountkey",
  "sastoken",
  "sas",
  "sig",
  "connectionstring",
  "privatekey",
  "clientsecret",
  "cookie",
]);
const SECRET_SUFFIXES = [
  "password",
  "secret",
  "token",
  "apikey",
  "accesskey",
  "accountkey",
  "privatekey",
  "passphrase",
];

/** True when a settings key names a credential (see README for the list). */
export const isSecretKey = (key: string): boolean => {
  const k = key.toLowerCase().replace(/[-_. ]/g, "");
  return SECRET_KEYS.has(k) || SECRET_SUFFIXES.some((suffix) => k.endsWith(suffix));
};

/** Hides the password of a URL (`mysql://u:p@h` → `mysql://u:removed@h`) and secret query parameters. */
const redactUrl = (value: string): string => {
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(value)) return value;
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return value;
  }
  let changed = false;
  if (url.password !== "") {
    url.password = REDACTED;
    changed = true;
  }
  for (const key of [...url.searchParams.keys()]) {
    if (isSecretKey(key)) {
      url.searchParams.set(key, REDACTED);
      changed = true;
    }
  }
  return changed ? url.toString() : value;
};

/**
 * A deep copy of `settings` in which every credential-looking field holds `"removed"`, and every URL
 * string has its password and secret query parameters replaced by `"removed"`. The input is not changed.
 */
export function redactSecrets<T>(settings: T): T {
  const walk = (value: unknown): unknown => {
    if (typeof value === "string") return redactUrl(value);
    if (Array.isArray(value)) return value.map(walk);
    if (typeof value === "object" && value !== null && !(value instanceof Date)) {
      const out: Record<string, unknown> = {};
      for (const [key, inner] of Object.entries(value)) {
        out[key] =
          isSecretKey(key) && inner !== null && inner !== undefined && inner !== "" ? REDACTED : walk(inner);
      }
      return out;
    }
    return value;
  };
  return walk(settings) as T;
}
