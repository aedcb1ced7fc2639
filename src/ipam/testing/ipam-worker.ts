// A stand-in for a plugin process, for test/ipam-concurrency.test.ts: it opens the disk store
// afresh for every operation, as each CNI invocation would, and reports on stdout what it has
// completed, so the test can check that nothing reported is lost when the worker is killed.
//
//   ipam-worker allocate <conf-json> <worker-id> <count>   ADD <count> attachments, print "add <cid> <ips>"
//   ipam-worker churn <conf-json> <worker-id>               print "ready", then ADD forever and DEL every other one
import type { NetConf } from "../../cni/types.ts";
import { ipamAdd, ipamDel, openStoreFor } from "../ipam.ts";

function add(conf: NetConf, containerId: string): void {
  const result = ipamAdd(conf, { containerId, ifname: "eth0" }, [], openStoreFor(conf));
  process.stdout.write(`add ${containerId} ${(result.ips ?? []).map((ip) => ip.address).join(",")}\n`);
}

function del(conf: NetConf, containerId: string): void {
  // Said before starting: a kill from here on may leave the attachment with all, some or none of its addresses.
  process.stdout.write(`deleting ${containerId}\n`);
  ipamDel(conf, { containerId, ifname: "eth0" }, openStoreFor(conf));
  process.stdout.write(`del ${containerId}\n`);
}

const [mode, confJson, workerId, countText] = process.argv.slice(2);
if (!mode || !confJson || !workerId) {
  process.stderr.write("usage: ipam-worker allocate|churn <conf-json> <worker-id> [count]\n");
  process.exit(2);
}
const conf = JSON.parse(confJson) as NetConf;

if (mode === "allocate") {
  const count = Number(countText);
  for (let i = 0; i < count; i++) add(conf, `w${workerId}-${i}`);
} else if (mode === "churn") {
  process.stdout.write("ready\n");
  for (let i = 0; ; i++) {
    const containerId = `w${workerId}-${i}`;
    add(conf, containerId);
    if (i % 2 === 0) del(conf, containerId);
  }
} else {
  process.stderr.write(`unknown mode ${mode}\n`);
  process.exit(2);
}
