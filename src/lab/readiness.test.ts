import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { withDefaults } from "../k8s/defaults.ts";
import type { Pod, Probe } from "../k8s/types.ts";
import { kubeDnsManifest } from "./pod-dns.ts";
import { parseManifests } from "../k8s/manifest.ts";
import { ProbeState, probeCommand, probeOutcome, probeUrl, readinessProbeOf, type HttpGetProbe } from "./readiness.ts";

function pod(probe: Probe | undefined): Pod {
  return withDefaults({
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name: "p", namespace: "default" },
    spec: { containers: [{ name: "c", ports: [{ name: "metrics", containerPort: 9153 }, { name: "dns", containerPort: 53, protocol: "UDP" }], ...(probe ? { readinessProbe: probe } : {}) }] },
  });
}

describe("readinessProbeOf", () => {
  it("takes Kubernetes' defaults and resolves a named TCP port", () => {
    const probe = readinessProbeOf(pod({ httpGet: { port: "metrics", path: "ready" } }));
    assert.deepEqual(probe, { kind: "httpGet", container: "c", scheme: "HTTP", host: "", port: 9153, path: "/ready", headers: [], initialDelayMs: 0, periodMs: 10_000, timeoutMs: 1000, successThreshold: 1, failureThreshold: 3 });
  });
  it("is undefined without a probe; says why for a port it cannot find or a handler it does not run", () => {
    assert.equal(readinessProbeOf(pod(undefined)), undefined);
    // "dns" is a UDP port: an HTTP GET cannot go there.
    assert.match((readinessProbeOf(pod({ httpGet: { port: "dns" } })) as { reason: string }).reason, /no TCP port named "dns"/);
    assert.deepEqual(readinessProbeOf(pod({ tcpSocket: { port: 53 } })), { kind: "unsupported", container: "c", reason: "readinessProbe.tcpSocket: the lab's kubelet runs httpGet probes only" });
  });
  it("kube-dns pods carry CoreDNS's readiness probe on /ready, through their metrics port", () => {
    const pods = parseManifests(kubeDnsManifest(["n1", "n2"]), "kube-dns").map((d) => d.object).filter((o): o is Pod => o.kind === "Pod");
    assert.equal(pods.length, 2);
    for (const p of pods) {
      const probe = readinessProbeOf(withDefaults(p)) as HttpGetProbe;
      assert.equal(probe.kind, "httpGet");
      assert.equal(probeUrl(probe, "10.244.1.5"), "http://10.244.1.5:9153/ready");
    }
  });
});

describe("probe command and outcome", () => {
  const probe = readinessProbeOf(pod({ httpGet: { port: 8443, scheme: "HTTPS", path: "/healthz", httpHeaders: [{ name: "X-A", value: "1" }] }, timeoutSeconds: 2 })) as HttpGetProbe;
  it("GETs from the node with the kubelet's timeout, no TLS verification, the given headers", () => {
    assert.deepEqual(probeCommand(probe, "fd00::5"), ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "2", "-A", "kube-probe/1.33", "--noproxy", "*", "-k", "-H", "X-A: 1", "https://[fd00::5]:8443/healthz"]);
  });
  it("passes 200-399 only", () => {
    assert.deepEqual(probeOutcome({ code: 0, stdout: "200", stderr: "" }), { ok: true, detail: "HTTP 200" });
    assert.equal(probeOutcome({ code: 0, stdout: "302", stderr: "" }).ok, true);
    assert.deepEqual(probeOutcome({ code: 0, stdout: "503", stderr: "" }), { ok: false, detail: "HTTP probe failed with statuscode: 503" });
    assert.deepEqual(probeOutcome({ code: 7, stdout: "000", stderr: "curl: (7) Failed to connect to 10.0.0.1 port 9153: Connection refused" }), { ok: false, detail: "curl: (7) Failed to connect to 10.0.0.1 port 9153: Connection refused" });
    assert.equal(probeOutcome({ code: 28, stdout: "000", stderr: "" }).detail, "curl exit 28");
  });
});

describe("ProbeState (the kubelet's probe worker)", () => {
  const base = readinessProbeOf(pod({ httpGet: { port: 9153 }, successThreshold: 2, failureThreshold: 3, periodSeconds: 5, initialDelaySeconds: 4 })) as HttpGetProbe;
  it("starts not ready, first due after the initial delay, then every period", () => {
    const s = new ProbeState(base, 1000);
    assert.equal(s.ready, false);
    assert.equal(s.nextAt, 5000);
    s.observe(true, "HTTP 200", 6000);
    assert.equal(s.nextAt, 11_000);
  });
  it("turns ready after successThreshold successes in a row, not ready after failureThreshold failures in a row", () => {
    const s = new ProbeState(base, 0);
    assert.equal(s.observe(true, "HTTP 200", 1), false, "one success of two");
    assert.equal(s.observe(false, "HTTP 503", 2), false);
    assert.equal(s.observe(true, "HTTP 200", 3), false, "the run started again");
    assert.equal(s.observe(true, "HTTP 200", 4), true);
    assert.equal(s.ready, true);
    assert.equal(s.observe(false, "timeout", 5), false);
    assert.equal(s.observe(false, "timeout", 6), false);
    assert.equal(s.ready, true);
    assert.equal(s.observe(false, "HTTP probe failed with statuscode: 503", 7), true);
    assert.equal(s.ready, false);
    assert.equal(s.detail, "HTTP probe failed with statuscode: 503");
  });
});
