import { test } from "node:test";
import assert from "node:assert/strict";
import { UsageError, parseLabArgs } from "./cli.ts";

test("no arguments means the default lab: 3 nodes, 2 pods each, up then check", () => {
  const args = parseLabArgs([]);
  assert.equal(args.command, "default");
  assert.equal(args.nodes, 3);
  assert.equal(args.podsPerNode, 2);
  assert.equal(args.network, "podnet");
  assert.equal(args.target.id, "lab");
});

test("options are read wherever they stand", () => {
  const args = parseLabArgs(["--nodes", "5", "up", "--pods-per-node", "3", "--id", "t1", "--network", "reference", "--ready-timeout", "2.5"]);
  assert.equal(args.command, "up");
  assert.equal(args.nodes, 5);
  assert.equal(args.podsPerNode, 3);
  assert.equal(args.target.id, "t1");
  assert.equal(args.network, "reference");
  assert.equal(args.readyTimeoutMs, 2500);
});

test("exec and run take a name and the command after --, options included", () => {
  const exec = parseLabArgs(["exec", "node1-pod1", "--id", "x", "--", "ip", "--brief", "addr"]);
  assert.equal(exec.name, "node1-pod1");
  assert.deepEqual(exec.commandLine, ["ip", "--brief", "addr"]);
  assert.equal(exec.target.id, "x");
  assert.deepEqual(parseLabArgs(["run", "p", "sleep", "9"]).commandLine, ["sleep", "9"]);
});

test("mistakes are usage errors", () => {
  for (const argv of [["bogus"], ["up", "--nodes"], ["up", "--nodes", "x"], ["--id", "UPPER"], ["exec"], ["exec", "p"], ["up", "extra"], ["--network", "flannel"], ["--frob"]]) {
    assert.throws(() => parseLabArgs(argv), UsageError, argv.join(" "));
  }
});

test("apply, delete and get take kubectl's flags", () => {
  const apply = parseLabArgs(["apply", "-f", "-", "--id", "t1"]);
  assert.equal(apply.command, "apply");
  assert.equal(apply.filename, "-");
  const get = parseLabArgs(["get", "pods", "-A", "-o", "wide"]);
  assert.deepEqual(get.resource, { kind: "pods", names: [] });
  assert.equal(get.allNamespaces, true);
  assert.equal(get.output, "wide");
  const del = parseLabArgs(["delete", "svc", "web-svc", "-n", "shop"]);
  assert.deepEqual(del.resource, { kind: "svc", names: ["web-svc"] });
  assert.equal(del.namespace, "shop");
  const exec = parseLabArgs(["exec", "client", "-n", "shop", "--", "curl", "-s", "http://10.96.0.1/"]);
  assert.equal(exec.namespace, "shop");
  assert.deepEqual(exec.commandLine, ["curl", "-s", "http://10.96.0.1/"]);
  assert.equal(parseLabArgs(["up", "--app", "none"]).app, undefined);
  assert.match(parseLabArgs(["up"]).app ?? "", /examples\/web\.yaml$/);
});

test("apply, delete and get refuse what kubectl refuses", () => {
  assert.throws(() => parseLabArgs(["apply"]), /needs -f FILE/);
  assert.throws(() => parseLabArgs(["get"]), /needs a kind/);
  assert.throws(() => parseLabArgs(["delete", "pod"]), /needs a name/);
  assert.throws(() => parseLabArgs(["delete", "pod", "x", "-f", "a.yaml"]), /not both/);
  assert.throws(() => parseLabArgs(["get", "pods", "-o", "xml"]), /-o must be wide, json or yaml/);
});

test("--topology, --backend and --direct-routing", () => {
  const args = parseLabArgs(["up", "--topology", "routed", "--backend", "vxlan", "--direct-routing"]);
  assert.equal(args.topology, "routed");
  assert.equal(args.backend, "vxlan");
  assert.equal(args.directRouting, true);
  const defaults = parseLabArgs(["up"]);
  assert.deepEqual([defaults.topology, defaults.backend, defaults.directRouting], ["flat", "host-gw", false]);
  assert.throws(() => parseLabArgs(["up", "--topology", "star"]), /--topology must be flat or routed, got "star"/);
  assert.throws(() => parseLabArgs(["up", "--backend", "flannel"]), /--backend must be host-gw or vxlan/);
  assert.throws(() => parseLabArgs(["up", "--direct-routing"]), /--direct-routing is an option of the vxlan backend/);
  assert.throws(() => parseLabArgs(["up", "--network", "reference", "--topology", "routed"]), UsageError);
});
