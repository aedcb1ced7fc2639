// Layout and rendering are pure given a model: elkjs places a larger lab than the root tests build, and no
// two labels may overlap, nor may a label leave its box.
import { test } from "node:test";
import assert from "node:assert/strict";
import { layoutLabGraph, pathElements, renderSvg, type LabGraphModel, type PlacedBox } from "./graph.ts";
import type { TraceResult } from "./model.ts";

function model(nodes: number, pods: number): LabGraphModel {
  const boxes: LabGraphModel["boxes"] = [
    { id: "switch", kind: "switch", lines: ["underlay switch pnl-x-br", "192.168.1.0/24"] },
    { id: "external", kind: "host", lines: ["external", "192.168.1.200"] },
  ];
  const edges: LabGraphModel["edges"] = [{ id: "e-ext", from: "switch", to: "external" }];
  for (let n = 1; n <= nodes; n++) {
    boxes.push({ id: `node${n}`, kind: "node", lines: [`node${n}`, `eth0 192.168.1.${10 + n}`, `pods 10.244.${n}.0/24`] });
    boxes.push({ id: `node${n}/cni0`, kind: "bridge", parent: `node${n}`, lines: ["bridge cni0", `10.244.${n}.1/24`] });
    edges.push({ id: `e-node${n}`, from: "switch", to: `node${n}` });
    for (let p = 1; p <= pods; p++) {
      boxes.push({ id: `node${n}-pod${p}`, kind: "pod", parent: `node${n}`, lines: [`node${n}-pod${p}`, `eth0 10.244.${n}.${p + 1}`] });
      edges.push({ id: `e-node${n}-pod${p}`, from: `node${n}/cni0`, to: `node${n}-pod${p}` });
    }
  }
  return { title: "test", boxes, edges };
}

const overlaps = (a: PlacedBox["label"], b: PlacedBox["label"]): boolean => a.x < b.x + b.width && b.x < a.x + a.width && a.y < b.y + b.height && b.y < a.y + a.height;

test("5 nodes × 4 pods: every box placed, labels inside their boxes and apart from each other", async () => {
  const m = model(5, 4);
  const g = await layoutLabGraph(m);
  assert.equal(g.boxes.length, m.boxes.length);
  assert.equal(g.edges.length, m.edges.length);
  for (const e of g.edges) assert.ok(e.points.length >= 2, `edge ${e.id} has a route`);
  for (const b of g.boxes) {
    assert.ok(b.label.x >= b.x && b.label.x + b.label.width <= b.x + b.width + 0.5, `${b.id}: label fits across`);
    assert.ok(b.label.y + b.label.height <= b.y + b.height + 0.5, `${b.id}: label fits down`);
  }
  for (let i = 0; i < g.boxes.length; i++) {
    for (let j = i + 1; j < g.boxes.length; j++) {
      assert.ok(!overlaps(g.boxes[i]!.label, g.boxes[j]!.label), `labels of ${g.boxes[i]!.id} and ${g.boxes[j]!.id} overlap`);
    }
  }
  const svg = renderSvg(m, g);
  assert.equal((svg.match(/<text class="label"/g) ?? []).length, m.boxes.reduce((n, b) => n + b.lines.length, 0));
  assert.match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
});

test("names with markup characters are escaped", async () => {
  const m: LabGraphModel = { title: "a<b & c>", boxes: [{ id: "x", kind: "host", lines: ["<script>"] }], edges: [] };
  const svg = renderSvg(m, await layoutLabGraph(m));
  assert.ok(svg.includes("&lt;script&gt;") && svg.includes("a&lt;b &amp; c&gt;"));
  assert.ok(!svg.includes("<script>"));
});

test("services are boxes with an edge to each endpoint pod (dashed while not ready); a trace to one lights it and the chosen pod only", async () => {
  const m = model(2, 2);
  m.boxes.push({ id: "service:default/web-svc", kind: "service", lines: ["service default/web-svc", "ClusterIP 10.96.0.20", "80/tcp"] });
  m.edges.push(
    { id: "s-web-1", from: "service:default/web-svc", to: "node1-pod1" },
    { id: "s-web-2", from: "service:default/web-svc", to: "node2-pod2", dashed: true },
  );
  const g = await layoutLabGraph(m);
  for (let i = 0; i < g.boxes.length; i++) {
    for (let j = i + 1; j < g.boxes.length; j++) assert.ok(!overlaps(g.boxes[i]!.label, g.boxes[j]!.label), `labels of ${g.boxes[i]!.id} and ${g.boxes[j]!.id} overlap`);
  }
  const trace = {
    proto: "tcp",
    delivered: true,
    src: { spec: "node2-pod1", kind: "pod", name: "node2-pod1", ip: "10.244.2.2" },
    dst: { spec: "web-svc", kind: "service", name: "default/web-svc", ip: "10.96.0.20", port: 80 },
    hops: [
      { kind: "route", where: "node2-pod1", netns: "x", summary: "" },
      { kind: "service", where: "node2", netns: "y", summary: "", table: "podnet-svc", map: "service-ips", element: "10.96.0.20 . tcp . 80", serviceChain: "s" },
      { kind: "arrive", where: "node1-pod1", netns: "z", summary: "" },
    ],
  } as unknown as TraceResult;
  const path = pathElements(m, trace);
  assert.ok(path.boxes.has("service:default/web-svc"), "the service is on the path");
  assert.ok(path.edges.has("s-web-1"), "the edge to the endpoint that answered is lit");
  assert.ok(!path.edges.has("s-web-2"), "the other endpoint's is not");
  const svg = renderSvg(m, g, trace);
  assert.match(svg, /data-id="s-web-2"[^>]*stroke-dasharray/);
  assert.doesNotMatch(svg, /data-id="s-web-1"[^>]*stroke-dasharray/);
});
