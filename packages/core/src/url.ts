/** The scheme of `url` in lower case without the colon, or `undefined` when it has none. */
export function urlScheme(url: string): string | undefined {
  const m = /^([a-zA-Z][a-zA-Z0-9+.-]*):/.exec(url);
  return m ? m[1]!.toLowerCase() : undefined;
}

const SECRET_PARAMS =
  /^(password|pass|secret|secretkey|secret_key|key|accountkey|sig|token|sas|credential)$/i;

/** `url` with its password and secret-looking query parameters replaced by `***`, safe for messages and logs. */
export function redactUrl(url: string): string {
  let out = url.replace(/^([a-zA-Z][a-zA-Z0-9+.-]*:\/\/[^/@:]*):[^/@]*@/, "$1:***@");
  const q = out.indexOf("?");
  if (q >= 0) {
    const params = out
      .slice(q + 1)
      .split("&")
      .map((kv) => {
        const [k] = kv.split("=", 1);
        return k && SECRET_PARAMS.test(k) && kv.includes("=") ? `${k}=***` : kv;
      });
    out = `${out.slice(0, q)}?${params.join("&")}`;
  }
  return out;
}
