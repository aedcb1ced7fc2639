import { test } from "node:test";
import assert from "node:assert/strict";
import type { Pod } from "../k8s/types.ts";
import { kubePodNetns, labClusterConfig, notReadyStatus, portMappings, runningStatus } from "./controllers.ts";

const pod = (ports: NonNullable<Pod["spec"]["containers"][number]["ports"]>): Pod => ({
  apiVersion: "v1",
  kind: "Pod",
  metadata: { name: "web-1", namespace: "shop", uid: "u1" },
  spec: { containers: [{ name: "c", ports }], nodeName: "node1" },
});

test("the lab's cluster config has a service CIDR and a LoadBalancer pool on the underlay", () => {
  const config = labClusterConfig();
  assert.equal(config.serviceCidr, "10.96.0.0/12");
  assert.deepEqual(config.loadBalancerCidrs, ["192.168.1.240/28"]);
  assert.equal(config.clusterCidr, "10.244.0.0/16");
  assert.equal(config.backend, "host-gw");
  const vxlan = labClusterConfig("vxlan", { directRouting: true });
  assert.deepEqual([vxlan.backend, vxlan.backendOptions], ["vxlan", { vxlan: { directRouting: true } }]);
});

test("hostPorts become CNI portMappings; pods without any pass none", () => {
  assert.deepEqual(portMappings(pod([{ containerPort: 8080 }])), {});
  assert.deepEqual(portMappings(pod([{ containerPort: 8080, hostPort: 80 }, { containerPort: 53, hostPort: 5353, protocol: "UDP", hostIP: "192.168.1.11" }])), {
    portMappings: [
      { hostPort: 80, containerPort: 8080, protocol: "tcp", hostIP: "" },
      { hostPort: 5353, containerPort: 53, protocol: "udp", hostIP: "192.168.1.11" },
    ],
  });
});

test("pod netns names cannot collide across namespaces (namespace names have no dots)", () => {
  assert.equal(kubePodNetns("lab", "a-b", "c"), "pnl-lab-a-b.c");
  assert.notEqual(kubePodNetns("lab", "a-b", "c"), kubePodNetns("lab", "a", "b-c"));
});

test("running status: Ready with IPs; transition times kept; NotReady when the server is gone", () => {
  const first = runningStatus(pod([]), "10.244.0.5", "192.168.1.11", "2026-01-01T00:00:00Z")!;
  assert.equal(first.phase, "Running");
  assert.deepEqual(first.podIPs, [{ ip: "10.244.0.5" }]);
  assert.ok(first.conditions?.some((c) => c.type === "Ready" && c.status === "True"));
  const again = runningStatus({ ...pod([]), status: first }, "10.244.0.5", "192.168.1.11", "2026-01-02T00:00:00Z")!;
  assert.equal(again.conditions?.find((c) => c.type === "Ready")?.lastTransitionTime, "2026-01-01T00:00:00Z");
  const down = notReadyStatus({ ...pod([]), status: first }, "2026-01-03T00:00:00Z")!;
  assert.equal(down.phase, "Running");
  assert.equal(down.conditions?.find((c) => c.type === "Ready")?.status, "False");
  assert.equal(down.conditions?.find((c) => c.type === "Initialized")?.status, "True");
});
