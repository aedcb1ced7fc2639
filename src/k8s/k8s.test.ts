import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { withDefaults } from "./defaults.ts";
import { formatFieldError, InvalidObjectError } from "./field-errors.ts";
import { ManifestError, parseManifests } from "./manifest.ts";
import { labelSelectorMatches, serviceSelects } from "./selector.ts";
import type { Deployment, KubeObject, Service } from "./types.ts";
import { validateObject } from "./validation.ts";

const config = { serviceCidr: "10.96.0.0/12", nodePortRange: { first: 30000, last: 32767 }, loadBalancerCidrs: ["192.168.1.240/28"] };

function svc(spec: Partial<Service["spec"]>, name = "web-svc"): Service {
  return withDefaults({ apiVersion: "v1", kind: "Service", metadata: { name }, spec: { selector: { app: "web" }, ports: [{ port: 80 }], ...spec } });
}
const messages = (object: KubeObject) => validateObject(object, config).map(formatFieldError);

describe("manifest parsing", () => {
  it("reads several YAML documents, skips empty ones and unwraps a List", () => {
    const text = `apiVersion: v1\nkind: Namespace\nmetadata: {name: team}\n---\n---\napiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Service, metadata: {name: a}, spec: {ports: [{port: 80}]}}\n- {apiVersion: apps/v1, kind: Deployment, metadata: {name: d}, spec: {selector: {matchLabels: {a: b}}, template: {spec: {containers: []}}}}\n`;
    const docs = parseManifests(text);
    assert.deepEqual(docs.map((d) => [d.document, d.object.kind, d.object.metadata.name]), [
      [1, "Namespace", "team"],
      [3, "Service", "a"],
      [3, "Deployment", "d"],
    ]);
  });
  it("reads JSON", () => {
    const docs = parseManifests(JSON.stringify({ apiVersion: "v1", kind: "Pod", metadata: { name: "p" }, spec: { containers: [{ name: "c" }] } }));
    assert.equal(docs[0]!.object.kind, "Pod");
  });
  it("names the document of a syntax error or an unknown kind", () => {
    assert.throws(() => parseManifests("kind: Namespace\napiVersion: v1\nmetadata: {name: a}\n---\nfoo: [", "f.yaml"), (e: unknown) => e instanceof ManifestError && e.message.startsWith("f.yaml: document 2:"));
    assert.throws(() => parseManifests("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n"), /document 1: no matches for kind "ConfigMap" in version "v1"/);
    assert.throws(() => parseManifests("apiVersion: v1\nkind: Service\nmetadata: {name: a}\n---\napiVersion: apps/v1\nkind: Service\nmetadata: {name: b}"), /document 2: no matches for kind "Service" in version "apps\/v1"/);
    assert.throws(() => parseManifests("- a\n- b\n"), /must be a mapping, got a list/);
    assert.throws(() => parseManifests("apiVersion: v1\nmetadata: {name: a}"), /Object 'Kind' is missing/);
  });
});

describe("defaulting", () => {
  it("defaults a Service as SetDefaults_Service does", () => {
    const s = svc({ type: "NodePort", ports: [{ port: 80 }, { port: 53, protocol: "UDP", targetPort: "dns", name: "dns" }] });
    assert.equal(s.metadata.namespace, "default");
    assert.equal(s.spec.sessionAffinity, "None");
    assert.equal(s.spec.externalTrafficPolicy, "Cluster");
    assert.equal(s.spec.internalTrafficPolicy, "Cluster");
    assert.deepEqual(s.spec.ports![0], { port: 80, protocol: "TCP", targetPort: 80 });
    assert.equal(s.spec.ports![1]!.targetPort, "dns");
    assert.equal(svc({}).spec.type, "ClusterIP");
    assert.equal(svc({}).spec.externalTrafficPolicy, undefined, "ClusterIP services get no externalTrafficPolicy");
    assert.equal(svc({ sessionAffinity: "ClientIP" }).spec.sessionAffinityConfig?.clientIP?.timeoutSeconds, 10800);
  });
  it("defaults Deployment replicas and does not mutate its input", () => {
    const input: Deployment = { apiVersion: "apps/v1", kind: "Deployment", metadata: { name: "d", namespace: "x" }, spec: { selector: {}, template: { spec: { containers: [{ name: "c", ports: [{ containerPort: 1 }] }] } } } };
    const out = withDefaults(input);
    assert.equal(out.spec.replicas, 1);
    assert.equal(out.spec.template.spec.containers[0]!.ports![0]!.protocol, "TCP");
    assert.equal(input.spec.replicas, undefined);
    assert.equal(out.metadata.namespace, "x");
  });
});

describe("validation", () => {
  it("accepts a plain service, deployment, pod and namespace", () => {
    assert.deepEqual(messages(svc({})), []);
    assert.deepEqual(messages(withDefaults({ apiVersion: "v1", kind: "Namespace", metadata: { name: "team-a" } })), []);
    assert.deepEqual(messages(withDefaults({ apiVersion: "v1", kind: "Pod", metadata: { name: "web.1" }, spec: { containers: [{ name: "c", ports: [{ containerPort: 8080, name: "http" }] }] } })), []);
  });
  it("reports port ranges with Kubernetes' field paths and wording", () => {
    assert.deepEqual(messages(svc({ ports: [{ port: 0, targetPort: 8080 }] })), ["spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive"]);
    // targetPort defaults to port, so a bad port is reported twice, as the API server does.
    assert.equal(messages(svc({ ports: [{ port: 65536 }] })).length, 2);
    assert.deepEqual(messages(svc({ ports: [{ port: 80, targetPort: 70000 }] })), ["spec.ports[0].targetPort: Invalid value: 70000: must be between 1 and 65535, inclusive"]);
  });
  it("defaults and checks a readinessProbe as the API server does (SetDefaults_Probe, validateProbe)", () => {
    const pod = (probe: unknown) => withDefaults({ apiVersion: "v1", kind: "Pod", metadata: { name: "p" }, spec: { containers: [{ name: "c", ports: [{ name: "metrics", containerPort: 9153 }], readinessProbe: probe as never }] } });
    const ok = pod({ httpGet: { port: "metrics" } });
    assert.deepEqual(ok.spec.containers[0]!.readinessProbe, { httpGet: { port: "metrics", path: "/", scheme: "HTTP" }, timeoutSeconds: 1, periodSeconds: 10, successThreshold: 1, failureThreshold: 3 });
    assert.deepEqual(messages(ok), []);
    assert.deepEqual(messages(pod({ httpGet: { port: 70000, path: "/ready" } })), ["spec.containers[0].readinessProbe.httpGet.port: Invalid value: 70000: must be between 1 and 65535, inclusive"]);
    assert.deepEqual(messages(pod({ httpGet: { path: "/ready" } })), ["spec.containers[0].readinessProbe.httpGet.port: Required value"]);
    assert.deepEqual(messages(pod({ httpGet: { port: 8181, scheme: "FTP" } })), ['spec.containers[0].readinessProbe.httpGet.scheme: Unsupported value: "FTP": supported values: "HTTP", "HTTPS"']);
    assert.deepEqual(messages(pod({ periodSeconds: 2 })), ["spec.containers[0].readinessProbe: Required value: must specify a handler type"]);
    assert.deepEqual(messages(pod({ httpGet: { port: 1 }, tcpSocket: { port: 1 } })), ["spec.containers[0].readinessProbe.tcpSocket: Forbidden: may not specify more than 1 handler type"]);
    assert.deepEqual(messages(pod({ httpGet: { port: 1 }, failureThreshold: -1 })), ["spec.containers[0].readinessProbe.failureThreshold: Invalid value: -1: must be greater than or equal to 0"]);
  });
  it("checks names: DNS-1035 for services, DNS-1123 label for namespaces, subdomain for pods", () => {
    assert.match(messages(svc({}, "1web"))[0]!, /^metadata.name: Invalid value: "1web": a DNS-1035 label/);
    assert.match(messages(svc({}, "Web"))[0]!, /^metadata.name: Invalid value: "Web"/);
    assert.match(messages(svc({}, "a".repeat(64)))[0]!, /must be no more than 63 characters/);
    assert.match(messages(withDefaults({ apiVersion: "v1", kind: "Namespace", metadata: { name: "a.b" } }))[0]!, /^metadata.name: Invalid value: "a.b": a lowercase RFC 1123 label/);
    assert.match(messages(withDefaults({ apiVersion: "v1", kind: "Pod", metadata: { name: "p_1" }, spec: { containers: [{ name: "c" }] } }))[0]!, /RFC 1123 subdomain/);
    assert.deepEqual(messages(withDefaults({ apiVersion: "v1", kind: "Pod", metadata: { name: "p" }, spec: { containers: [] } })), ["spec.containers: Required value"]);
  });
  it("checks nodePort range, duplicates and type", () => {
    assert.deepEqual(messages(svc({ type: "NodePort", ports: [{ port: 80, nodePort: 80 }] })), [
      "spec.ports[0].nodePort: Invalid value: 80: provided port is not in the valid range. The range of valid ports is 30000-32767",
    ]);
    assert.deepEqual(messages(svc({ ports: [{ port: 80, nodePort: 30080 }] })), ["spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"]);
    assert.deepEqual(messages(svc({ type: "NodePort", ports: [{ name: "a", port: 80, nodePort: 30080 }, { name: "b", port: 81, nodePort: 30080 }] })), ["spec.ports[1].nodePort: Duplicate value: 30080"]);
    assert.deepEqual(messages(svc({ type: "Foo" as "ClusterIP" })), ['spec.type: Unsupported value: "Foo": supported values: "ClusterIP", "ExternalName", "LoadBalancer", "NodePort"']);
  });
  it("checks port names: required with several ports, unique", () => {
    assert.deepEqual(messages(svc({ ports: [{ port: 80 }, { port: 81 }] })), ["spec.ports[0].name: Required value", "spec.ports[1].name: Required value"]);
    assert.deepEqual(messages(svc({ ports: [{ name: "http", port: 80 }, { name: "http", port: 81 }] })), ['spec.ports[1].name: Duplicate value: "http"']);
    assert.deepEqual(messages(svc({ ports: [{ name: "a", port: 80 }, { name: "b", port: 80 }] })), ['spec.ports[1]: Duplicate value: {"port":80,"protocol":"TCP"}']);
    assert.deepEqual(messages(svc({ ports: [{ port: 80, targetPort: "Not_A_Name" }] })).length, 1);
  });
  it("checks the clusterIP against the service CIDR", () => {
    assert.deepEqual(messages(svc({ clusterIP: "10.0.0.1" })), [
      'spec.clusterIPs: Invalid value: ["10.0.0.1"]: failed to allocate IP 10.0.0.1: the provided IP (10.0.0.1) is not in the valid range. The range of valid IPs is 10.96.0.0/12',
    ]);
    assert.deepEqual(messages(svc({ clusterIP: "10.96.3.4" })), []);
    assert.deepEqual(messages(svc({ clusterIP: "None", ports: [] })), []);
    assert.match(messages(svc({ clusterIP: "banana" }))[0]!, /^spec.clusterIPs\[0\]: Invalid value: "banana": must be a valid IP address/);
  });
  it("checks ExternalName rules", () => {
    assert.deepEqual(messages(svc({ type: "ExternalName", ports: [] })), ["spec.externalName: Required value"]);
    assert.deepEqual(messages(svc({ type: "ExternalName", externalName: "db.example.com", ports: [] })), []);
    assert.deepEqual(messages(svc({ type: "ExternalName", externalName: "db.example.com", clusterIP: "10.96.0.5" })), ["spec.clusterIPs: Forbidden: may not be set for ExternalName services"]);
    assert.match(messages(svc({ type: "ExternalName", externalName: "Bad_Name" }))[0]!, /^spec.externalName: Invalid value/);
  });
  it("checks selectors and policies", () => {
    assert.match(messages(svc({ selector: { "bad key!": "x" } }))[0]!, /^spec.selector: Invalid value: "bad key!"/);
    assert.match(messages(svc({ selector: { app: "-x" } }))[0]!, /^spec.selector: Invalid value: "-x": a valid label/);
    assert.deepEqual(messages(svc({ externalTrafficPolicy: "Local" })), ['spec.externalTrafficPolicy: Invalid value: "Local": may only be set for externally-accessible services']);
    assert.deepEqual(messages(svc({ loadBalancerSourceRanges: ["10.0.0.0/8"] })), ["spec.loadBalancerSourceRanges: Forbidden: may only be used when `type` is 'LoadBalancer'"]);
    assert.deepEqual(messages(svc({ type: "LoadBalancer", loadBalancerSourceRanges: ["x"] })), ['spec.loadBalancerSourceRanges[0]: Invalid value: "x": must be a list of IP ranges. For example, 10.240.0.0/24,10.250.0.0/24 ']);
    assert.match(messages(svc({ type: "LoadBalancer", loadBalancerIP: "1.2.3.4" }))[0]!, /^spec.loadBalancerIP: Invalid value: "1.2.3.4": not in the cluster's load-balancer pool/);
    assert.deepEqual(messages(svc({ sessionAffinity: "ClientIP", sessionAffinityConfig: { clientIP: { timeoutSeconds: 0 } } })), ["spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid value: 0: must be greater than 0 and less than 86400"]);
  });
  it("requires a Deployment's selector to match its template labels", () => {
    const d = (selector: Deployment["spec"]["selector"], labels: Record<string, string>): Deployment =>
      withDefaults({ apiVersion: "apps/v1", kind: "Deployment", metadata: { name: "web" }, spec: { selector, template: { metadata: { labels }, spec: { containers: [{ name: "c" }] } } } });
    assert.deepEqual(messages(d({ matchLabels: { app: "web" } }, { app: "web", x: "y" })), []);
    assert.deepEqual(messages(d({ matchLabels: { app: "web" } }, { app: "api" })), ['spec.template.metadata.labels: Invalid value: {"app":"api"}: `selector` does not match template `labels`']);
    assert.deepEqual(messages(d({}, { app: "web" })), ["spec.selector: Invalid value: {}: empty selector is invalid for deployment"]);
    assert.deepEqual(messages(d({ matchExpressions: [{ key: "app", operator: "In" }] }, {})), [
      "spec.selector.matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'",
      "spec.template.metadata.labels: Invalid value: {}: `selector` does not match template `labels`",
    ]);
  });
  it("formats the API server's rejection", () => {
    const errors = validateObject(svc({ ports: [{ port: 0, targetPort: 1 }] }), config);
    assert.equal(new InvalidObjectError("Service", "web-svc", errors).message, 'The Service "web-svc" is invalid: spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive');
    const two = validateObject(svc({ ports: [{ port: 0 }, { port: 70000 }] }), config);
    assert.match(new InvalidObjectError("Service", "web-svc", two).message, /^The Service "web-svc" is invalid: \[spec.ports\[0\].name: Required value, /);
  });
});

describe("label selectors", () => {
  it("matches map selectors and expressions", () => {
    assert.equal(serviceSelects({ app: "web" }, { app: "web", x: "1" }), true);
    assert.equal(serviceSelects({ app: "web" }, { app: "api" }), false);
    assert.equal(serviceSelects({}, { app: "web" }), false, "a service without a selector selects nothing");
    assert.equal(serviceSelects(undefined, { app: "web" }), false);
    const sel = { matchLabels: { app: "web" }, matchExpressions: [{ key: "tier", operator: "In" as const, values: ["a", "b"] }, { key: "canary", operator: "DoesNotExist" as const }] };
    assert.equal(labelSelectorMatches(sel, { app: "web", tier: "b" }), true);
    assert.equal(labelSelectorMatches(sel, { app: "web", tier: "c" }), false);
    assert.equal(labelSelectorMatches(sel, { app: "web", tier: "a", canary: "" }), false);
    assert.equal(labelSelectorMatches({ matchExpressions: [{ key: "x", operator: "NotIn", values: ["1"] }] }, {}), true);
    assert.equal(labelSelectorMatches({ matchExpressions: [{ key: "x", operator: "Exists" }] }, {}), false);
  });
  it("a selector always matches labels that contain it (property)", () => {
    const labels = fc.dictionary(fc.constantFrom("a", "b", "c", "d"), fc.constantFrom("1", "2"));
    fc.assert(
      fc.property(labels, labels, (selector, extra) => {
        const merged = { ...extra, ...selector };
        return labelSelectorMatches({ matchLabels: selector }, merged);
      }),
    );
  });
});
