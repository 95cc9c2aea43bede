import { UsageError } from "./errors.js";

/** The scheme every repository address on the command line starts with. */
export const URI_SCHEME = "cairn://";

/**
 * A parsed `cairn://` address: `cairn://<repo>`, `cairn://<repo>/<ref>` or `cairn://<repo>/<ref>/<path…>`.
 * Names are taken as written (no percent-decoding): branch and tag names cannot contain `/`, so the first
 * segment is the repository, the second the ref, and the rest the object path or prefix.
 */
export interface CairnUri {
  repo: string;
  /** Branch, tag, commit id or an expression such as `main~2`; absent in `cairn://<repo>`. */
  ref?: string;
  /** Object path or prefix after the ref, possibly empty or ending with `/`; absent when the URI has no `/` after the ref. */
  path?: string;
}

/** What a command expects in one argument, used to check the URI's shape and to word the error. */
export type UriShape =
  /** `cairn://<repo>` exactly. */
  | "repo"
  /** `cairn://<repo>/<ref>` exactly. */
  | "ref"
  /** `cairn://<repo>/<ref>` with an optional path or prefix after it. */
  | "ref-prefix"
  /** `cairn://<repo>/<ref>/<path>` with a non-empty path. */
  | "ref-path";

const EXPECTED: Record<UriShape, string> = {
  repo: "cairn://<repo>",
  ref: "cairn://<repo>/<ref>",
  "ref-prefix": "cairn://<repo>/<ref>/[<prefix>]",
  "ref-path": "cairn://<repo>/<ref>/<path>",
};

/** Splits a `cairn://` URI into repository, ref and path; syntax only, names are checked by the library. */
export function parseUri(text: string): CairnUri {
  if (typeof text !== "string" || !text.toLowerCase().startsWith(URI_SCHEME)) {
    throw new UsageError(
      `"${text}" is not a cairn:// URI; expected cairn://<repo>, cairn://<repo>/<ref> or cairn://<repo>/<ref>/<path>.`,
    );
  }
  const rest = text.slice(URI_SCHEME.length);
  const slash = rest.indexOf("/");
  const repo = slash < 0 ? rest : rest.slice(0, slash);
  if (repo === "") throw new UsageError(`"${text}" names no repository; expected cairn://<repo>/….`);
  if (slash < 0) return { repo };
  const afterRepo = rest.slice(slash + 1);
  const slash2 = afterRepo.indexOf("/");
  const ref = slash2 < 0 ? afterRepo : afterRepo.slice(0, slash2);
  if (ref === "") {
    if (afterRepo === "") return { repo };
    throw new UsageError(`"${text}" has an empty ref; expected cairn://<repo>/<ref>/….`);
  }
  if (slash2 < 0) return { repo, ref };
  return { repo, ref, path: afterRepo.slice(slash2 + 1) };
}

/** Parses `text` and checks it has the shape a command expects, with an error naming the expected form. */
export function expectUri(text: string, shape: UriShape, what = "argument"): CairnUri {
  const uri = parseUri(text);
  const wrong = (why: string): never => {
    throw new UsageError(`${what} "${text}" ${why}; expected ${EXPECTED[shape]}.`);
  };
  switch (shape) {
    case "repo":
      if (uri.ref !== undefined) wrong("names more than a repository");
      break;
    case "ref":
      if (uri.ref === undefined) wrong("names no ref");
      if (uri.path !== undefined && uri.path !== "") wrong("has a path after the ref");
      break;
    case "ref-prefix":
      if (uri.ref === undefined) wrong("names no ref");
      break;
    case "ref-path":
      if (uri.ref === undefined) wrong("names no ref");
      if (!uri.path) wrong("names no object path");
      break;
  }
  return uri;
}

/**
 * A ref given either bare (`main`, `v1`, `3f2a9c1~1`) or as a URI of the same repository
 * (`cairn://photos/main`); returns the ref.
 */
export function refArgument(text: string, repo: string, what: string): string {
  if (!text.toLowerCase().startsWith(URI_SCHEME)) {
    if (text === "" || text.includes("/")) {
      throw new UsageError(`${what} "${text}" is neither a ref nor a cairn://<repo>/<ref> URI.`);
    }
    return text;
  }
  const uri = expectUri(text, "ref", what);
  if (uri.repo !== repo) {
    throw new UsageError(
      `${what} "${text}" is in repository "${uri.repo}", not "${repo}"; both must be in the same repository.`,
    );
  }
  return uri.ref!;
}

/** Formats a URI back, e.g. for messages: `cairn://photos/main/a/b.png`. */
export function formatUri(repo: string, ref?: string, path?: string): string {
  let out = `${URI_SCHEME}${repo}`;
  if (ref !== undefined) out += `/${ref}`;
  if (path !== undefined) out += `/${path}`;
  return out;
}
