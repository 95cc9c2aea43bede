import { ConflictError, NotFoundError } from "@cairn/core";
import { CommanderError } from "commander";
import { describe, expect, it } from "vitest";
import { describeError, EXIT, printError, UsageError } from "../src/errors.js";

const print = (e: unknown, json = false) => {
  let out = "";
  printError(describeError(e), (s) => (out += s), json);
  return out;
};

describe("the top-level error mapping", () => {
  it("maps core codes to their statuses and one line", () => {
    expect(describeError(new NotFoundError('Ref "x" not found.'))).toEqual({
      status: EXIT.NOT_FOUND,
      code: "NOT_FOUND",
      message: 'Ref "x" not found.',
    });
    expect(print(new ConflictError("Two paths\nconflict.", { paths: ["a", "b"] }))).toBe(
      "cairn: Two paths conflict.\nconflicting paths (2):\n  a\n  b\n",
    );
  });

  it("maps usage errors of commander and of cairn to status 2, and help to 0", () => {
    const unknown = new CommanderError(
      1,
      "commander.unknownOption",
      "error: unknown option '--x'\n(Did you mean --json?)",
    );
    expect(describeError(unknown)).toMatchObject({
      status: EXIT.USAGE,
      message: "unknown option '--x' (Did you mean --json?)",
    });
    expect(describeError(new CommanderError(0, "commander.helpDisplayed", "(outputHelp)")).status).toBe(0);
    expect(describeError(new UsageError("bad URI")).status).toBe(EXIT.USAGE);
  });

  it("maps local file errors by their errno code, naming the file", () => {
    const e = Object.assign(new Error("EACCES: permission denied, open '/x'"), {
      code: "EACCES",
      syscall: "open",
      path: "/x",
    });
    expect(describeError(e)).toMatchObject({
      status: EXIT.PERMISSION_DENIED,
      message: "/x: permission denied",
    });
    const full = Object.assign(new Error("ENOSPC"), { code: "ENOSPC", syscall: "write" });
    expect(describeError(full).status).toBe(EXIT.LOCAL_IO);
  });

  it("prints the stack of an unexpected error and asks for a bug report", () => {
    const out = print(new TypeError("x is undefined"));
    expect(describeError(new TypeError("boom")).status).toBe(EXIT.INTERNAL);
    expect(out).toMatch(/^cairn: unexpected error: x is undefined\nTypeError: x is undefined\n\s+at /);
    expect(out).toContain("this is a bug in cairn");
  });

  it("prints one JSON document with --json", () => {
    const doc = JSON.parse(print(new ConflictError("c", { paths: ["p"] }), true));
    expect(doc).toEqual({ error: { code: "CONFLICT", status: EXIT.CONFLICT, message: "c", paths: ["p"] } });
  });
});
