// A separate process of the repository suite's concurrency test: uploads files to one branch and commits
// every few uploads, retrying a commit that lost a race, as a user's script would.
import { Cairn, type EngineFactory, hasCode, type StoreFactory } from "@cairn/core";

interface Job {
  engineModule: string;
  storeModule: string;
  engineUrl: string;
  repository: string;
  branch: string;
  prefix: string;
  files: number;
  commitEvery: number;
}

const job = JSON.parse(process.argv[2]!) as Job;
const engineFactory = ((await import(job.engineModule)) as { factory: EngineFactory }).factory;
const storeFactory = ((await import(job.storeModule)) as { factory: StoreFactory }).factory;
const engine = await engineFactory.open(job.engineUrl);
const cairn = new Cairn({ engine, openStore: (url) => storeFactory.open(url) });
const repo = await cairn.repository(job.repository);
let commits = 0;
let conflicts = 0;

const commit = async (message: string) => {
  for (let attempt = 0; attempt < 20; attempt++) {
    try {
      await repo.commit(job.branch, { message });
      commits++;
      return;
    } catch (e) {
      if (hasCode(e, "PRECONDITION_FAILED")) return; // the other process committed our writes already
      if (!hasCode(e, "CONFLICT")) throw e;
      conflicts++;
    }
  }
};

for (let i = 0; i < job.files; i++) {
  const path = `${job.prefix}${String(i).padStart(3, "0")}`;
  await repo.upload(job.branch, path, Buffer.from(path));
  if ((i + 1) % job.commitEvery === 0) await commit(`${job.prefix} up to ${i}`);
}
await cairn.close();
await engine.close();
process.stdout.write(JSON.stringify({ commits, conflicts }));
