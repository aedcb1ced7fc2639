import { test } from "node:test";
import assert from "node:assert/strict";
import { renderTable } from "../kernel/nft/render.ts";
import { etcdGuardTable, guardedEndpoints } from "./etcd-guard.ts";

test("etcd URLs become guarded address:port pairs; host names are skipped and named", () => {
  const { endpoints, skipped } = guardedEndpoints(["https://192.168.1.10:2379", "https://10.0.0.5", "https://etcd.example:2379"]);
  assert.deepEqual(endpoints, [{ ip: "192.168.1.10", port: 2379 }, { ip: "10.0.0.5", port: 443 }]);
  assert.deepEqual(skipped, ["https://etcd.example:2379"]);
});

test("the guard drops pod traffic to each endpoint, forwarded or to the node itself", () => {
  const text = renderTable(etcdGuardTable("10.244.0.0/16", [{ ip: "192.168.1.10", port: 2379 }]));
  for (const hook of ["forward", "input"]) {
    assert.match(text, new RegExp(`add chain ip podnet-etcd-guard ${hook} \\{ type filter hook ${hook} priority filter; policy accept; \\}`));
    assert.match(text, new RegExp(`add rule ip podnet-etcd-guard ${hook} ip saddr 10\\.244\\.0\\.0/16 ip daddr 192\\.168\\.1\\.10 tcp dport 2379 counter drop`));
  }
});
