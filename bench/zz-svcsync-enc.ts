import { withDefaults } from "/work/wt/svcsync/src/k8s/defaults.ts";
import type { EndpointSlice, Service } from "/work/wt/svcsync/src/k8s/types.ts";
import { encodeTransaction } from "/work/wt/svcsync/src/kernel/nft/netlink-encode.ts";
import { planFullSyncOf } from "/work/wt/svcsync/src/agent/services-child.ts";
const COUNT = 10000;
const services: Service[] = [], slices: EndpointSlice[] = [];
for (let i = 0; i < COUNT; i++) {
  services.push(withDefaults({ apiVersion: "v1", kind: "Service", metadata: { name: `s${i}`, namespace: "default" }, spec: { clusterIP: `10.${100 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`, selector: { app: `s${i}` }, ports: [{ port: 80, targetPort: 8080 }] } }));
  slices.push({ apiVersion: "discovery.k8s.io/v1", kind: "EndpointSlice", metadata: { name: `s${i}-x`, namespace: "default", labels: { "kubernetes.io/service-name": `s${i}` } }, addressType: "IPv4", ports: [{ name: "", protocol: "TCP", port: 8080 }],
    endpoints: [0, 1, 2, 3, 4].map((k) => { const n = i * 5 + k; return { addresses: [`10.${200 + (n >> 16)}.${(n >> 8) & 255}.${n & 255}`], nodeName: "bench-node", conditions: { ready: true, serving: true, terminating: false } }; }) });
}
const node = { nodeName: "bench-node", nodeIps: ["192.168.77.11"], podCidr: "10.244.0.0/24", clusterCidr: "10.244.0.0/16" };
for (let round = 0; round < 1; round++) {
  let t = performance.now();
  const tx = planFullSyncOf({ node, services, slices });
  const c = performance.now() - t;
  t = performance.now();
  const e = encodeTransaction(tx, () => undefined);
  console.log(`compile+plan ${c.toFixed(0)} ms, encode ${(performance.now() - t).toFixed(0)} ms, ${e.ops.length} messages, ${(e.batch.byteLength / 1048576).toFixed(1)} MiB`);
}
