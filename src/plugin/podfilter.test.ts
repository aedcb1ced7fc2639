import { test } from "node:test";
import assert from "node:assert/strict";
import { parseNetConf } from "../cni/config.ts";
import { CniError } from "../cni/types.ts";
import { parsePortMappings } from "./podfilter.ts";

function refused(value: unknown, field: RegExp): void {
  assert.throws(() => parsePortMappings(value), (err: unknown) => err instanceof CniError && err.code === 7 && field.test(err.message));
}

test("containerd's capitalised portMappings reach the plugin as lower-camel, with protocol and hostIP defaults", () => {
  const conf = parseNetConf(JSON.stringify({
    cniVersion: "1.0.0", name: "n", type: "podnet",
    runtimeConfig: { portMappings: [{ HostPort: 8080, ContainerPort: 80, Protocol: "TCP", HostIP: "" }, { HostPort: 53, ContainerPort: 5353, Protocol: "udp", HostIP: "192.168.1.10" }] },
  }));
  assert.deepEqual(parsePortMappings(conf.runtimeConfig?.portMappings), [
    { hostPort: 8080, containerPort: 80, protocol: "tcp", hostIP: "" },
    { hostPort: 53, containerPort: 5353, protocol: "udp", hostIP: "192.168.1.10" },
  ]);
});

test("0.0.0.0 and :: mean every address; no mappings is none", () => {
  assert.deepEqual(parsePortMappings([{ hostPort: 1, containerPort: 2, hostIP: "0.0.0.0" }]), [{ hostPort: 1, containerPort: 2, protocol: "tcp", hostIP: "" }]);
  assert.deepEqual(parsePortMappings(undefined), []);
  assert.deepEqual(parsePortMappings([]), []);
});

test("bad mappings are refused naming the field", () => {
  refused("8080", /must be a list/);
  refused([{ hostPort: 0, containerPort: 80 }], /hostPort/);
  refused([{ hostPort: 80, containerPort: 70000 }], /containerPort/);
  refused([{ hostPort: 80.5, containerPort: 80 }], /hostPort/);
  refused([{ hostPort: 80, containerPort: 80, protocol: "icmp" }], /protocol/);
  refused([{ hostPort: 80, containerPort: 80, hostIP: "node1" }], /hostIP/);
  refused([{ hostPort: 80, containerPort: 80 }, { hostPort: 80, containerPort: 81, protocol: "TCP" }], /mapped twice/);
  refused([null], /must be an object/);
});
