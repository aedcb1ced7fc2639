// The lab kubelet's readiness probes: a container's `readinessProbe.httpGet`, run as the kubelet runs it
// (pkg/kubelet/prober): a GET from the node to the pod's IP every periodSeconds, success for a status in
// [200, 400), and the pod's Ready condition following the results with their thresholds. The
// EndpointSlice controller then marks the pod's endpoints ready or not (conditions.ready), so a
// Service sends traffic only to pods whose probe passes: CoreDNS's readinessProbe on :8181/ready is the
// model, and `podnet dns` pods carry the same on their /ready.
//
// Only httpGet is run here; a pod whose probe uses another handler is never Ready, and says why.

import type { Pod, Probe } from "../k8s/types.ts";

export interface HttpGetProbe {
  kind: "httpGet";
  /** The container the probe belongs to. */
  container: string;
  scheme: "HTTP" | "HTTPS";
  /** Empty: the pod's IP. */
  host: string;
  port: number;
  path: string;
  headers: { name: string; value: string }[];
  initialDelayMs: number;
  periodMs: number;
  timeoutMs: number;
  successThreshold: number;
  failureThreshold: number;
}

export interface UnsupportedProbe {
  kind: "unsupported";
  container: string;
  reason: string;
}

export type ReadinessProbe = HttpGetProbe | UnsupportedProbe;

/**
 * The readiness probe of the pod's first container that has one (the lab runs one container per pod),
 * with Kubernetes' defaults for anything unset; undefined when no container has one. A named port is
 * looked up among the container's ports (FindPort, pkg/kubelet/prober/prober.go).
 */
export function readinessProbeOf(pod: Pod): ReadinessProbe | undefined {
  for (const container of pod.spec.containers ?? []) {
    const probe: Probe | undefined = container.readinessProbe;
    if (!probe) continue;
    const get = probe.httpGet;
    if (!get) {
      const handler = ["exec", "tcpSocket", "grpc"].find((h) => (probe as Record<string, unknown>)[h] !== undefined) ?? "none";
      return { kind: "unsupported", container: container.name, reason: `readinessProbe.${handler}: the lab's kubelet runs httpGet probes only` };
    }
    let port: number | undefined;
    if (typeof get.port === "number") port = get.port;
    else port = container.ports?.find((p) => p.name === get.port && (p.protocol ?? "TCP") === "TCP")?.containerPort;
    if (port === undefined) return { kind: "unsupported", container: container.name, reason: `readinessProbe.httpGet.port: no TCP port named ${JSON.stringify(get.port)} in container ${container.name}` };
    const seconds = (value: number | undefined, fallback: number): number => (value && value > 0 ? value : fallback);
    return {
      kind: "httpGet",
      container: container.name,
      scheme: get.scheme ?? "HTTP",
      host: get.host ?? "",
      port,
      path: get.path ? (get.path.startsWith("/") ? get.path : `/${get.path}`) : "/",
      headers: get.httpHeaders ?? [],
      initialDelayMs: (probe.initialDelaySeconds ?? 0) * 1000,
      periodMs: seconds(probe.periodSeconds, 10) * 1000,
      timeoutMs: seconds(probe.timeoutSeconds, 1) * 1000,
      successThreshold: seconds(probe.successThreshold, 1),
      failureThreshold: seconds(probe.failureThreshold, 3),
    };
  }
  return undefined;
}

/** The URL the probe GETs, for a pod at `podIp`. */
export function probeUrl(probe: HttpGetProbe, podIp: string): string {
  const host = probe.host || podIp;
  return `${probe.scheme.toLowerCase()}://${host.includes(":") ? `[${host}]` : host}:${probe.port}${probe.path}`;
}

/**
 * The command that runs one probe from the node: curl prints the status code, or fails on no answer
 * within the timeout. TLS is not verified (the kubelet's prober skips verification), and the user
 * agent is the kubelet's (`kube-probe/<version>`).
 */
export function probeCommand(probe: HttpGetProbe, podIp: string): string[] {
  const argv = ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", String(probe.timeoutMs / 1000), "-A", "kube-probe/1.33", "--noproxy", "*"];
  if (probe.scheme === "HTTPS") argv.push("-k");
  for (const h of probe.headers) argv.push("-H", `${h.name}: ${h.value}`);
  argv.push(probeUrl(probe, podIp));
  return argv;
}

/** Judges one run of probeCommand: success for HTTP status 200-399 (prober/http.go DoHTTPProbe). */
export function probeOutcome(result: { code: number; stdout: string; stderr: string }): { ok: boolean; detail: string } {
  const status = Number(result.stdout.trim());
  if (result.code !== 0 || !Number.isInteger(status) || status === 0) return { ok: false, detail: result.stderr.trim().split("\n").pop() || `curl exit ${result.code}` };
  if (status >= 200 && status < 400) return { ok: true, detail: `HTTP ${status}` };
  return { ok: false, detail: `HTTP probe failed with statuscode: ${status}` };
}

/**
 * One pod's probe results, as the kubelet's probe worker keeps them (pkg/kubelet/prober/worker.go,
 * doProbe): readiness starts as failure; a result that differs from the last starts a new run, and the
 * pod's readiness flips only once a run reaches the threshold for its kind.
 */
export class ProbeState {
  ready = false;
  detail = "readiness probe has not run yet";
  private last: boolean | undefined;
  private run = 0;
  /** When the next probe is due (ms since the epoch). */
  nextAt: number;
  running = false;

  constructor(private readonly probe: HttpGetProbe, startedAt: number) {
    this.nextAt = startedAt + probe.initialDelayMs;
  }

  /** Record one result; true when the pod's readiness changed. */
  observe(ok: boolean, detail: string, now: number): boolean {
    this.nextAt = now + this.probe.periodMs;
    if (this.last === ok) this.run++;
    else {
      this.last = ok;
      this.run = 1;
    }
    if (ok === this.ready) {
      if (!ok) this.detail = detail;
      return false;
    }
    if (this.run < (ok ? this.probe.successThreshold : this.probe.failureThreshold)) return false;
    this.ready = ok;
    this.detail = detail;
    return true;
  }
}
