// Layout and rendering are pure given a model: elkjs places a larger lab than the root tests build, and no
// two labels may overlap, nor may a label leave its box.
import { test } from "node:test";
import assert from "node:assert/strict";
import { layoutLabGraph, renderSvg, type LabGraphModel, type PlacedBox } from "./graph.ts";

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
