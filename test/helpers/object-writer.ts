// A tiny process that commits ObjectStore writes for a test whose etcd lives in another network
// namespace (the test process cannot reach it): run inside that namespace, it reads one JSON array
// of ObjectWrites per line on stdin and answers each with one line: {"revision":N} or {"error":"…"}.
import { createInterface } from "node:readline";
import { EtcdDatastore } from "../../src/datastore/etcd-datastore.ts";
import type { ObjectWrite } from "../../src/datastore/objects.ts";

const [endpoints, prefix = "/podnet/"] = process.argv.slice(2);
if (!endpoints) throw new Error("usage: object-writer ETCD_URLS [PREFIX]");
const datastore = new EtcdDatastore({ endpoints: endpoints.split(","), prefix });
const lines = createInterface({ input: process.stdin });
let queue = Promise.resolve();
lines.on("line", (line) => {
  queue = queue.then(async () => {
    try {
      const writes = JSON.parse(line) as ObjectWrite[];
      process.stdout.write(`${JSON.stringify({ revision: await datastore.objects.commit(writes) })}\n`);
    } catch (err) {
      process.stdout.write(`${JSON.stringify({ error: (err as Error).message })}\n`);
    }
  });
});
lines.on("close", () => void queue.then(() => process.exit(0)));
