import { formatDuration, InvalidArgumentError, parseDuration, type RetentionPolicy } from "@cairn/core";
import type { Command } from "commander";

/** The `--keep-*` options of `backups prune` and `backup-meta run`, as commander parses them. */
export interface KeepOptions {
  keepLast?: string;
  keepHourly?: string;
  keepDaily?: string;
  keepWeekly?: string;
  keepMonthly?: string;
  keepYearly?: string;
  keepWithin?: string;
}

const RULES = [
  ["keepLast", "last", "--keep-last", "keep the n newest NOUNs"],
  ["keepHourly", "hourly", "--keep-hourly", "keep the newest NOUN of each of the last n hours that have one"],
  ["keepDaily", "daily", "--keep-daily", "keep the newest NOUN of each of the last n days that have one"],
  [
    "keepWeekly",
    "weekly",
    "--keep-weekly",
    "keep the newest NOUN of each of the last n ISO weeks that have one",
  ],
  [
    "keepMonthly",
    "monthly",
    "--keep-monthly",
    "keep the newest NOUN of each of the last n months that have one",
  ],
  ["keepYearly", "yearly", "--keep-yearly", "keep the newest NOUN of each of the last n years that have one"],
] as const;

/** Adds the `--keep-*` options (restic's spelling) to `command`; `noun` is what they keep. */
export function addKeepOptions(command: Command, noun: "snapshot" | "dump"): Command {
  for (const [, , flag, help] of RULES) command.option(`${flag} <n>`, help.replace("NOUN", noun));
  return command.option(
    "--keep-within <duration>",
    `keep every ${noun} younger than this, counted back from the newest (30d, 2w, 1y, 1d12h)`,
  );
}

/**
 * The `--keep-*` options as a policy, or `undefined` when none was given. Counts are whole numbers, or
 * `unlimited` (restic's -1). An all-zero policy is returned as it is; core refuses it with its own message.
 */
export function keepPolicy(opts: KeepOptions, noun: "snapshot" | "dump"): RetentionPolicy | undefined {
  const policy: RetentionPolicy = {};
  let given = false;
  for (const [field, rule, flag] of RULES) {
    const text = opts[field];
    if (text === undefined) continue;
    given = true;
    if (text === "unlimited" || text === "-1") policy[rule] = Number.POSITIVE_INFINITY;
    else if (/^\d+$/.test(text) && Number.isSafeInteger(Number(text))) policy[rule] = Number(text);
    else
      throw new InvalidArgumentError(
        `${flag} must be a whole number of ${noun}s (or "unlimited"), not "${text}".`,
      );
  }
  if (opts.keepWithin !== undefined) {
    given = true;
    policy.within = parseDuration(opts.keepWithin, "--keep-within");
  }
  return given ? policy : undefined;
}

/** `within 2d, daily 14, weekly 9, monthly unlimited`. */
export function describePolicy(policy: RetentionPolicy): string {
  return Object.entries(policy)
    .filter(([, v]) => v !== undefined && v !== 0)
    .map(([rule, v]) =>
      rule === "within"
        ? `within ${formatDuration(v as number)}`
        : `${rule} ${v === Number.POSITIVE_INFINITY ? "unlimited" : v}`,
    )
    .join(", ");
}

/** `--parallel`: how many objects a command moves at once. */
export function parallelism(text: string): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || n < 1 || n > 256) {
    throw new InvalidArgumentError(`--parallel must be a whole number from 1 to 256, got "${text}".`);
  }
  return n;
}
