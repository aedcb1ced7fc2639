// Prometheus metrics and the health endpoint of the agent. One registry per agent, so tests can run several.

import { createServer, type Server } from "node:http";
import { rmSync } from "node:fs";
import { parseHostPort } from "../net/endpoint.ts";
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";

export class AgentMetrics {
  readonly registry = new Registry();
  readonly routesProgrammed = new Gauge({ name: "podnet_agent_routes_programmed", help: "Routes to peer pod subnets the agent holds in the kernel", registers: [this.registry] });
  readonly routeChanges = new Counter({ name: "podnet_agent_route_changes_total", help: "Route changes made, by operation", labelNames: ["op"], registers: [this.registry] });
  readonly routeConflicts = new Gauge({ name: "podnet_agent_route_conflicts", help: "Peer subnets left unrouted because a route made by someone else covers them", registers: [this.registry] });
  readonly unreachablePeers = new Gauge({
    name: "podnet_agent_unreachable_peers",
    help: "Peers the running backend cannot reach as configured (host-gw: node IP not on-link; use vxlan)",
    registers: [this.registry],
  });
  readonly kernelErrors = new Counter({ name: "podnet_agent_kernel_errors_total", help: "Kernel requests that failed (retried at the next resync)", registers: [this.registry] });
  readonly datastoreErrors = new Counter({ name: "podnet_agent_datastore_errors_total", help: "Datastore requests that failed", labelNames: ["op"], registers: [this.registry] });
  readonly datastoreConnected = new Gauge({ name: "podnet_agent_datastore_connected", help: "1 while the last datastore read succeeded", registers: [this.registry] });
  readonly ready = new Gauge({ name: "podnet_agent_ready", help: "1 once the node is registered, routed and its conflist written", registers: [this.registry] });
  readonly syncDuration = new Histogram({
    name: "podnet_agent_sync_duration_seconds",
    help: "Duration of one sync: reading the datastore, or reconciling the kernel",
    labelNames: ["phase"],
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [this.registry],
  });

  readonly reconcilers = new ReconcilerMetrics(this.registry);
  readonly podMtu = new Gauge({ name: "podnet_agent_pod_mtu", help: "MTU the backend reports for pods (written into the conflist)", registers: [this.registry] });

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: "podnet_agent_" });
  }
}

/** Per-reconciler metrics, labelled `reconciler` (routes, masquerade, …); fed by reconciler.ts. */
export class ReconcilerMetrics {
  private readonly syncs: Counter<"reconciler" | "result">;
  private readonly duration: Histogram<"reconciler">;
  private readonly healthy: Gauge<"reconciler">;
  private readonly ready: Gauge<"reconciler">;
  private readonly lastSuccess: Gauge<"reconciler">;
  private readonly failures: Gauge<"reconciler">;

  constructor(registry: Registry) {
    const registers = [registry];
    this.syncs = new Counter({ name: "podnet_agent_reconciler_syncs_total", help: "Sync attempts of each reconciler, by result (success, error)", labelNames: ["reconciler", "result"], registers });
    this.duration = new Histogram({
      name: "podnet_agent_reconciler_sync_duration_seconds",
      help: "Duration of one sync attempt of each reconciler",
      labelNames: ["reconciler"],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10],
      registers,
    });
    this.healthy = new Gauge({ name: "podnet_agent_reconciler_healthy", help: "1 while the reconciler's last sync succeeded", labelNames: ["reconciler"], registers });
    this.ready = new Gauge({ name: "podnet_agent_reconciler_ready", help: "1 once the reconciler succeeded, 0 while it reports the node cannot serve pods", labelNames: ["reconciler"], registers });
    this.lastSuccess = new Gauge({ name: "podnet_agent_reconciler_last_success_timestamp_seconds", help: "Unix time of the reconciler's last successful sync", labelNames: ["reconciler"], registers });
    this.failures = new Gauge({ name: "podnet_agent_reconciler_consecutive_failures", help: "Failed sync attempts since the reconciler's last success", labelNames: ["reconciler"], registers });
  }

  /** Make every series of a reconciler exist from the start (at 0), so a dashboard sees it before its first sync. */
  declare(reconciler: string): void {
    for (const result of ["success", "error"]) this.syncs.inc({ reconciler, result }, 0);
    this.healthy.set({ reconciler }, 0);
    this.ready.set({ reconciler }, 0);
    this.failures.set({ reconciler }, 0);
  }

  observe(reconciler: string, ok: boolean, seconds: number): void {
    this.syncs.inc({ reconciler, result: ok ? "success" : "error" });
    this.duration.observe({ reconciler }, seconds);
  }

  succeeded(reconciler: string, nowMs: number): void {
    this.healthy.set({ reconciler }, 1);
    this.failures.set({ reconciler }, 0);
    this.lastSuccess.set({ reconciler }, nowMs / 1000);
  }

  failed(reconciler: string, consecutive: number): void {
    this.healthy.set({ reconciler }, 0);
    this.failures.set({ reconciler }, consecutive);
  }

  setHealthy(reconciler: string, healthy: boolean): void {
    this.healthy.set({ reconciler }, healthy ? 1 : 0);
  }

  setReady(reconciler: string, ready: boolean): void {
    this.ready.set({ reconciler }, ready ? 1 : 0);
  }
}

export interface HealthReport {
  ready: boolean;
  [key: string]: unknown;
}

/**
 * Serve GET /healthz (200 when ready, else 503, with a JSON report) and GET /metrics.
 * `listen` is "HOST:PORT" or an absolute path for a unix socket.
 */
export async function serveHealthAndMetrics(listen: string, metrics: AgentMetrics, report: () => HealthReport): Promise<Server> {
  const server = createServer((req, res) => {
    const url = req.url ?? "/";
    if (req.method === "GET" && (url === "/healthz" || url === "/health" || url === "/status")) {
      const body = report();
      res.writeHead(body.ready || url === "/status" ? 200 : 503, { "content-type": "application/json" });
      res.end(`${JSON.stringify(body)}\n`);
      return;
    }
    if (req.method === "GET" && url === "/metrics") {
      metrics.registry.metrics().then(
        (text) => {
          res.writeHead(200, { "content-type": metrics.registry.contentType });
          res.end(text);
        },
        (err: unknown) => {
          res.writeHead(500);
          res.end(String(err));
        },
      );
      return;
    }
    res.writeHead(404);
    res.end("not found\n");
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    if (listen.startsWith("/")) {
      rmSync(listen, { force: true });
      server.listen(listen, () => resolve());
    } else {
      // A bare port (":9650" or "9650") listens on loopback, as the agent always has.
      const { host, port } = parseHostPort(listen, { defaultHost: "127.0.0.1" });
      server.listen(port, host, () => resolve());
    }
  });
  return server;
}
