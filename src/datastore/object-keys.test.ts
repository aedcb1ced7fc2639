import { test } from "node:test";
import assert from "node:assert/strict";
import { checkObject, generatedName, kindOfPath, objectPath } from "./object-keys.ts";
import type { KubeObject } from "../k8s/types.ts";

test("keys: namespaced kinds under their namespace (default if none), Namespaces directly under the kind", () => {
  assert.equal(objectPath("Service", "team", "web"), "objects/Service/team/web");
  assert.equal(objectPath("Pod", undefined, "p"), "objects/Pod/default/p");
  assert.equal(objectPath("Namespace", undefined, "team"), "objects/Namespace/team");
  assert.equal(kindOfPath("objects/EndpointSlice/default/x"), "EndpointSlice");
  assert.equal(kindOfPath("objects/Secret/default/x"), undefined);
  assert.equal(kindOfPath("nodes/n1"), undefined);
});

test("names follow the API server's rules per kind", () => {
  const object = (kind: string, apiVersion: string, name: string, namespace?: string) =>
    ({ apiVersion, kind, metadata: { name, ...(namespace !== undefined ? { namespace } : {}) } }) as unknown as KubeObject;
  assert.deepEqual(checkObject(object("Pod", "v1", "a.b-c"), 0, false), { kind: "Pod", namespace: "default", name: "a.b-c" });
  assert.throws(() => checkObject(object("Service", "v1", "1web"), 0, false), /metadata\.name: "1web" must be a DNS-1035 label/);
  assert.throws(() => checkObject(object("Namespace", "v1", "a.b"), 2, false), /writes\[2\]\.object\.metadata\.name: "a.b" must be a DNS-1123 label/);
  assert.throws(() => checkObject(object("Namespace", "v1", "a", "b"), 0, false), /metadata\.namespace: a Namespace is cluster-scoped/);
  assert.throws(() => checkObject(object("Deployment", "v1", "d"), 0, false), /apiVersion: a Deployment is apps\/v1, not "v1"/);
  assert.throws(() => checkObject(object("Pod", "v1", "x".repeat(254)), 0, false), /DNS-1123 subdomain/);
});

test("generateName gets five characters from the API server's alphabet", () => {
  let i = 0;
  const name = generatedName("web-", () => (i++ % 27) / 27);
  assert.equal(name, "web-bcdfg");
  const { name: generated } = checkObject({ apiVersion: "v1", kind: "Pod", metadata: { name: "", generateName: "web-" }, spec: { containers: [] } }, 0, true);
  assert.match(generated, /^web-[bcdfghjklmnpqrstvwxz2456789]{5}$/);
});
