import { describe, it } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { desiredRoutes, planRouteChanges, type OwnedRoute, type RouteChange } from "./route-plan.ts";
import type { NodeView } from "../datastore/datastore.ts";

function node(name: string, nodeIp: string, podSubnet: string, phase: NodeView["phase"] = "active"): NodeView {
  return { name, nodeIp, podSubnet, phase, backendData: {}, alive: true, revision: 1, acks: [] };
}

/** A kernel model: add fails if the destination exists, replace swaps the destination's route, delete needs an exact match. */
function applyToModel(actual: OwnedRoute[], changes: RouteChange[]): OwnedRoute[] {
  let table = [...actual];
  for (const change of changes) {
    const { dst, gw } = change.route;
    if (change.op === "add") {
      assert.ok(!table.some((r) => r.dst === dst), `add of existing ${dst}`);
      table.push({ dst, gw });
    } else if (change.op === "replace") {
      const index = table.findIndex((r) => r.dst === dst);
      assert.ok(index >= 0, `replace of missing ${dst}`);
      table.splice(index, 1, { dst, gw });
    } else {
      const index = table.findIndex((r) => r.dst === dst && r.gw === gw);
      assert.ok(index >= 0, `delete of missing ${dst} via ${gw}`);
      table.splice(index, 1);
    }
  }
  return table;
}

const sorted = (routes: OwnedRoute[]) => [...routes].sort((a, b) => (a.dst + a.gw < b.dst + b.gw ? -1 : 1));

describe("desiredRoutes", () => {
  it("routes to every other active node's subnet via its node IP", () => {
    const nodes = [
      node("a", "192.168.1.11", "10.244.0.0/24"),
      node("b", "192.168.1.12", "10.244.1.0/24"),
      node("c", "192.168.1.13", "10.244.2.0/24", "leaving"),
      node("d", "192.168.1.14", "10.244.3.0/24"),
    ];
    assert.deepEqual(desiredRoutes(nodes, "a"), [
      { dst: "10.244.1.0/24", gw: "192.168.1.12" },
      { dst: "10.244.3.0/24", gw: "192.168.1.14" },
    ]);
  });
});

describe("planRouteChanges", () => {
  it("adds missing routes, replaces a changed gateway and deletes departed nodes' routes", () => {
    const desired = [
      { dst: "10.244.1.0/24", gw: "192.168.1.12" },
      { dst: "10.244.2.0/24", gw: "192.168.1.23" },
    ];
    const actual = [
      { dst: "10.244.2.0/24", gw: "192.168.1.13" },
      { dst: "10.244.9.0/24", gw: "192.168.1.19" },
    ];
    assert.deepEqual(planRouteChanges(desired, actual), [
      { op: "delete", route: { dst: "10.244.9.0/24", gw: "192.168.1.19" } },
      { op: "replace", route: { dst: "10.244.2.0/24", gw: "192.168.1.23" } },
      { op: "add", route: { dst: "10.244.1.0/24", gw: "192.168.1.12" } },
    ]);
  });

  it("plans nothing when the kernel already matches", () => {
    const routes = [{ dst: "10.244.1.0/24", gw: "192.168.1.12" }];
    assert.deepEqual(planRouteChanges(routes, routes), []);
  });

  const subnet = fc.integer({ min: 0, max: 7 }).map((i) => `10.244.${i}.0/24`);
  const gw = fc.integer({ min: 11, max: 14 }).map((i) => `192.168.1.${i}`);
  const route = fc.record({ dst: subnet, gw }).map((r) => ({ dst: r.dst, gw: r.gw }));

  it("applied to any kernel state, the plan yields exactly the desired routes (property)", () => {
    fc.assert(
      fc.property(fc.uniqueArray(route, { selector: (r) => r.dst }), fc.array(route, { maxLength: 12 }), (desired, actualRaw) => {
        // The kernel cannot hold two identical routes.
        const actual = actualRaw.filter((r, i) => actualRaw.findIndex((o) => o.dst === r.dst && o.gw === r.gw) === i);
        const result = applyToModel(actual, planRouteChanges(desired, actual));
        assert.deepEqual(sorted(result), sorted(desired));
        assert.deepEqual(planRouteChanges(desired, result), [], "a second pass changes nothing");
      }),
    );
  });
});
