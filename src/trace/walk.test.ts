// The walk's pure parts: which trace events are the probe's first packet, and how a service hop is read
// from the nft hops (the lines are as nft 1.0.6 printed them for the agent's podnet-svc table in a lab).
import { test } from "node:test";
import assert from "node:assert/strict";
import { parseNftTraceLine, type NftTraceEvent } from "../kernel/nft-trace.ts";
import { firstPacketEvents, nftHopsFor, serviceHopFrom } from "./walk.ts";

const events = (lines: string[]): NftTraceEvent[] => lines.map((l) => parseNftTraceLine(l)!).filter(Boolean);
const base = { netns: "pnl-x-node1", where: "node1", explain: [] as string[] };
const STICKY = "service-C9FB9F1A-default/web-sticky/tcp/80";
const EP = "endpoint-7B5CF7FB-default/web-sticky/tcp/80__10.244.0.5/8080";
const SET = "affinity-0F170BC3-default/web-sticky/tcp/80__10.244.0.5/8080";
const PKT = `iif "cni0" ether saddr 7a:f9:be:5e:ec:01 ether daddr 02:0e:2d:ef:e9:7d ip saddr 10.244.1.2 ip daddr 10.96.0.2 ip dscp cs0 ip ecn not-ect ip ttl 64 ip id 1 ip length 60 tcp sport 47001 tcp dport 80 tcp flags == syn`;

test("a TCP probe's later packets (same port, same chains again) are cut off after the first", () => {
  const all = events([
    `trace id aa inet pntrace_x pre packet: ${PKT}`,
    "trace id aa inet pntrace_x pre rule tcp sport 47001 meta nftrace set 1 (verdict continue)",
    "trace id aa inet pntrace_x pre policy accept",
    "trace id aa ip podnet-svc nat-prerouting rule jump services (verdict jump services)",
    `trace id bb inet pntrace_x pre packet: ${PKT.replace("syn", "ack")}`,
    "trace id bb inet pntrace_x pre policy accept",
  ]);
  const first = firstPacketEvents(all);
  assert.equal(first.length, 4);
  assert.ok(first.every((e) => e.traceId === "aa"));
});

test("service hop: the affinity rule that matched names the set and the client's element; an earlier masquerade jump is not the endpoint chain", () => {
  const hops = nftHopsFor("pnl-x-node1", events([
    `trace id aa ip podnet-svc services packet: ${PKT}`,
    `trace id aa ip podnet-svc services rule ip daddr . meta l4proto . th dport vmap @service-ips # handle 8 (verdict goto ${STICKY})`,
    `trace id aa ip podnet-svc ${STICKY} rule ip saddr != 10.244.0.0/16 jump mark-for-masquerade # handle 74 (verdict jump mark-for-masquerade)`,
    `trace id aa ip podnet-svc ${STICKY} rule ip saddr @${SET} goto ${EP} # handle 75 (verdict goto ${EP})`,
    `trace id aa ip podnet-svc ${EP} rule meta l4proto tcp dnat to 10.244.0.5:8080 # handle 71 (verdict accept)`,
  ]), undefined, base);
  const service = serviceHopFrom(hops, base, "pnl-x-node1")!;
  assert.equal(service.element, "10.96.0.2 . tcp . 80");
  assert.equal(service.endpointChain, EP);
  assert.deepEqual(service.endpoint, { address: "10.244.0.5", port: 8080 });
  assert.deepEqual(service.affinity, { set: SET, element: "10.244.1.2", decided: true });
  assert.match(service.summary, /chosen by session affinity: element 10\.244\.1\.2 of @affinity-0F170BC3/);
});

test("service hop: a cascade goto chose, so no affinity is claimed from the trace", () => {
  const hops = nftHopsFor("pnl-x-node1", events([
    `trace id aa ip podnet-svc services packet: ${PKT}`,
    `trace id aa ip podnet-svc services rule ip daddr . meta l4proto . th dport vmap @service-ips # handle 8 (verdict goto ${STICKY})`,
    `trace id aa ip podnet-svc ${STICKY} rule goto ${EP} # handle 78 (verdict goto ${EP})`,
    `trace id aa ip podnet-svc ${EP} rule meta l4proto tcp dnat to 10.244.0.5:8080 # handle 71 (verdict accept)`,
  ]), undefined, base);
  const service = serviceHopFrom(hops, base, "pnl-x-node1")!;
  assert.equal(service.endpointChain, EP);
  assert.equal(service.affinity, undefined);
});

test("service hop for a LoadBalancer IP: external chain → (mark) → service chain, whose own rule DNATs; a NodePort's element has no address", () => {
  const EXT = "external-017B8E39-default/web-svc/tcp/http";
  const SVC = "service-017B8E39-default/web-svc/tcp/http";
  const LB = PKT.replace("ip daddr 10.96.0.2", "ip daddr 192.168.1.241");
  const lbHops = nftHopsFor("pnl-x-node2", events([
    `trace id aa ip podnet-svc services packet: ${LB}`,
    `trace id aa ip podnet-svc services rule ip daddr . meta l4proto . th dport vmap @service-ips # handle 8 (verdict goto ${EXT})`,
    `trace id aa ip podnet-svc ${EXT} rule jump mark-for-masquerade # handle 61 (verdict jump mark-for-masquerade)`,
    "trace id aa ip podnet-svc mark-for-masquerade rule meta mark set meta mark | 0x00004000 # handle 41 (verdict continue)",
    "trace id aa ip podnet-svc mark-for-masquerade verdict continue",
    `trace id aa ip podnet-svc ${EXT} rule goto ${SVC} # handle 62 (verdict goto ${SVC})`,
    `trace id aa ip podnet-svc ${SVC} rule ip saddr != 10.244.0.0/16 jump mark-for-masquerade # handle 54 (verdict jump mark-for-masquerade)`,
    "trace id aa ip podnet-svc mark-for-masquerade rule meta mark set meta mark | 0x00004000 # handle 41 (verdict continue)",
    "trace id aa ip podnet-svc mark-for-masquerade verdict continue",
    `trace id aa ip podnet-svc ${SVC} rule meta l4proto tcp dnat to 10.244.1.5:8080 # handle 60 (verdict accept)`,
  ]), undefined, base);
  const lb = serviceHopFrom(lbHops, base, "pnl-x-node2")!;
  assert.equal(lb.element, "192.168.1.241 . tcp . 80");
  assert.equal(lb.serviceChain, EXT);
  assert.equal(lb.endpointChain, SVC);
  assert.deepEqual(lb.endpoint, { address: "10.244.1.5", port: 8080 });
  assert.match(lb.summary, new RegExp(`${EXT} → ${SVC} → DNAT 10\\.244\\.1\\.5:8080`));

  const npHops = nftHopsFor("pnl-x-node2", events([
    `trace id bb ip podnet-svc services packet: ${PKT.replace("dport 80", "dport 31234")}`,
    `trace id bb ip podnet-svc services rule fib daddr type local meta l4proto . th dport vmap @service-nodeports # handle 9 (verdict goto ${EXT})`,
    `trace id bb ip podnet-svc ${EXT} rule goto ${SVC} # handle 62 (verdict goto ${SVC})`,
    `trace id bb ip podnet-svc ${SVC} rule meta l4proto tcp dnat to 10.244.1.6:8080 # handle 60 (verdict accept)`,
  ]), undefined, base);
  const np = serviceHopFrom(npHops, base, "pnl-x-node2")!;
  assert.equal(np.map, "service-nodeports");
  assert.equal(np.element, "tcp . 31234");
  assert.deepEqual(np.endpoint, { address: "10.244.1.6", port: 8080 });
});

test("service hop through an endpoint map: the rule names the map and the draw, the endpoint comes from conntrack", () => {
  const WEB = "service-4A1B2C3D-default/web/tcp/80";
  const hops = nftHopsFor("pnl-x-node1", events([
    `trace id aa ip podnet-svc services packet: ${PKT}`,
    `trace id aa ip podnet-svc services rule ip daddr . meta l4proto . th dport vmap @service-ips # handle 8 (verdict goto ${WEB})`,
    `trace id aa ip podnet-svc ${WEB} rule meta l4proto tcp dnat ip to numgen random mod 3 offset 2048 map @endpoints-tcp-1f # handle 90 (verdict accept)`,
  ]), undefined, base);
  const dnatHop = hops.find((h) => h.chain === WEB)!;
  assert.deepEqual(dnatHop.dnatMap, { map: "endpoints-tcp-1f", mod: 3, offset: 2048 });
  assert.equal(dnatHop.dnatTo, undefined, "the rule shows no address");
  assert.match(serviceHopFrom(hops, base, "pnl-x-node1")!.summary, /no endpoint chosen/);
  // What the walk reads from the probe's conntrack entry after the probe (resolveMapDnat).
  dnatHop.dnatTo = { address: "10.244.2.7", port: 8080 };
  const service = serviceHopFrom(hops, base, "pnl-x-node1")!;
  assert.deepEqual(service.endpoint, { address: "10.244.2.7", port: 8080 });
  assert.equal(service.serviceChain, WEB);
});
