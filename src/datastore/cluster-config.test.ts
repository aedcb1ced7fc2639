import { test } from "node:test";
import assert from "node:assert/strict";
import { parseClusterConfig, resolveClusterConfig } from "./cluster-config.ts";

const base = { clusterCidr: "10.244.0.0/16", subnetLength: 24, backend: "host-gw", nodeLeaseTtlSeconds: 20 };

test("a config stored before the service fields existed still loads, with their defaults", () => {
  const old = JSON.stringify({ clusterCidr: "10.244.0.0/16", subnetLength: 24, backend: "host-gw" });
  assert.deepEqual(parseClusterConfig(old), {
    ...base,
    backendOptions: {},
    serviceCidr: "10.96.0.0/12",
    nodePortRange: { first: 30000, last: 32767 },
    loadBalancerCidrs: [],
  });
});

test("an old config whose clusterCidr lies inside the default serviceCidr still loads", () => {
  assert.equal(parseClusterConfig(JSON.stringify({ ...base, clusterCidr: "10.99.0.0/16" })).clusterCidr, "10.99.0.0/16");
});

test("given service and backend fields are kept", () => {
  const config = resolveClusterConfig({
    ...base,
    backendOptions: { vxlan: { vni: 7, port: 8472 } },
    serviceCidr: "10.100.0.0/16",
    nodePortRange: { first: 31000, last: 31000 },
    loadBalancerCidrs: ["192.168.100.0/24"],
  });
  assert.deepEqual(config.backendOptions, { vxlan: { vni: 7, port: 8472 } });
  assert.equal(config.serviceCidr, "10.100.0.0/16");
  assert.deepEqual(config.nodePortRange, { first: 31000, last: 31000 });
  assert.deepEqual(config.loadBalancerCidrs, ["192.168.100.0/24"]);
});

test("each bad field is refused with its name", () => {
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ backendOptions: [] }, /backendOptions must be an object keyed by backend name/],
    [{ backendOptions: { vxlan: 5 } }, /backendOptions\.vxlan must be a JSON object/],
    [{ backendOptions: { vxlan: null } }, /backendOptions\.vxlan must be a JSON object/],
    [{ serviceCidr: "10.96.0.1/12" }, /serviceCidr: invalid CIDR "10\.96\.0\.1\/12": host bits are set/],
    [{ serviceCidr: 12 }, /serviceCidr must be a string/],
    [{ nodePortRange: "30000-32767" }, /nodePortRange must be an object/],
    [{ nodePortRange: { first: 0, last: 10 } }, /nodePortRange\.first must be an integer port from 1 to 65535, not 0/],
    [{ nodePortRange: { first: 30000, last: 70000 } }, /nodePortRange\.last must be an integer port/],
    [{ nodePortRange: { first: 30000.5, last: 31000 } }, /nodePortRange\.first must be an integer/],
    [{ nodePortRange: { first: 32000, last: 31000 } }, /nodePortRange\.first \(32000\) is above nodePortRange\.last \(31000\)/],
    [{ loadBalancerCidrs: "192.168.0.0/24" }, /loadBalancerCidrs must be a list of CIDRs/],
    [{ loadBalancerCidrs: ["192.168.0.0/24", "nope"] }, /loadBalancerCidrs\[1\]: invalid CIDR "nope"/],
    [{ loadBalancerCidrs: ["10.96.1.0/24"] }, /loadBalancerCidrs\[0\] 10\.96\.1\.0\/24 overlaps serviceCidr/],
    [{ clusterCidr: "10.244.0.0/33" }, /clusterCidr: invalid CIDR "10\.244\.0\.0\/33"/],
    [{ subnetLength: 8 }, /subnetLength: subnet length \/8 does not fit/],
    [{ backend: "" }, /backend must be a non-empty string/],
    [{ nodeLeaseTtlSeconds: 1 }, /nodeLeaseTtlSeconds must be an integer of at least 2/],
  ];
  for (const [change, message] of cases) {
    assert.throws(() => resolveClusterConfig({ ...base, ...change }), message, JSON.stringify(change));
  }
  assert.throws(() => parseClusterConfig("{"), /cluster config: not JSON/);
  assert.throws(() => parseClusterConfig("[]"), /cluster config: must be a JSON object/);
});
