import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseEtcdConnection } from "../datastore/etcd-client-options.ts";
import { etcdOfAgentArgs } from "./services-startup.ts";

describe("the startup child's reading of the agent's etcd flags", () => {
  it("finds the etcd flags among the agent's others, as the agent's own parse does", () => {
    const args = ["--name", "n1", "--node-ip", "192.168.1.11", "--etcd", "http://10.0.0.1:2379,http://10.0.0.2:2379", "--etcd-insecure",
      "--etcd-prefix", "/other/", "--resync-interval-ms", "300", "--allow-pods-to-etcd"];
    assert.deepEqual(etcdOfAgentArgs(args), {
      connection: parseEtcdConnection({ etcd: "http://10.0.0.1:2379,http://10.0.0.2:2379", "etcd-insecure": true }),
      prefix: "/other/",
    });
    assert.equal(etcdOfAgentArgs(["--etcd=http://127.0.0.1:2379", "--etcd-insecure"])?.prefix, "/podnet/");
    assert.deepEqual(etcdOfAgentArgs(["--etcd=http://127.0.0.1:2379", "--etcd-insecure"])?.connection.endpoints, ["http://127.0.0.1:2379"]);
  });
  it("starts nothing for flags the agent would refuse, or for help", () => {
    assert.equal(etcdOfAgentArgs(["--node-ip", "192.168.1.11"]), undefined, "no --etcd");
    assert.equal(etcdOfAgentArgs(["--etcd", "http://127.0.0.1:2379"]), undefined, "plain http without --etcd-insecure");
    assert.equal(etcdOfAgentArgs(["--etcd"]), undefined, "--etcd without a value");
    assert.equal(etcdOfAgentArgs(["--etcd", "https://10.0.0.1:2379", "--help"]), undefined);
  });
});
