// Prometheus metrics of `podnet dns`, and its /health, /ready and /metrics endpoints.
// Per-query counts are kept in plain maps and handed to prom-client when scraped, so the hot path
// pays a map increment, not a label lookup.

import { createServer, type Server } from "node:http";
import { collectDefaultMetrics, Counter, Gauge, Registry, type MetricObjectWithValues, type MetricValueWithName } from "prom-client";

const LATENCY_BUCKETS = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 2.5];

/**
 * A Prometheus histogram counted by hand: an observation is a bucket search and two increments,
 * where prom-client's Histogram hashes a label object each time (a visible share of a query's cost
 * at tens of thousands per second). Exposed through the registry like any prom-client metric.
 */
export class LatencyHistogram {
  readonly name = "podnet_dns_request_duration_seconds";
  readonly help = "Time from a query's arrival to its answer being sent, by where the answer came from";
  readonly type = "histogram";
  readonly aggregator = "sum";
  private readonly series = new Map<string, { buckets: Float64Array; sum: number; count: number }>();

  observe(source: string, seconds: number): void {
    let s = this.series.get(source);
    if (!s) this.series.set(source, (s = { buckets: new Float64Array(LATENCY_BUCKETS.length), sum: 0, count: 0 }));
    let i = 0;
    while (i < LATENCY_BUCKETS.length && seconds > (LATENCY_BUCKETS[i] as number)) i++;
    if (i < LATENCY_BUCKETS.length) s.buckets[i] = (s.buckets[i] as number) + 1;
    s.sum += seconds;
    s.count++;
  }

  async get(): Promise<Omit<MetricObjectWithValues<MetricValueWithName<string>>, "collect">> {
    const values: MetricValueWithName<string>[] = [];
    for (const [source, s] of this.series) {
      let cumulative = 0;
      LATENCY_BUCKETS.forEach((le, i) => {
        cumulative += s.buckets[i] as number;
        values.push({ metricName: `${this.name}_bucket`, labels: { source, le }, value: cumulative });
      });
      values.push({ metricName: `${this.name}_bucket`, labels: { source, le: "+Inf" }, value: s.count });
      values.push({ metricName: `${this.name}_sum`, labels: { source }, value: s.sum });
      values.push({ metricName: `${this.name}_count`, labels: { source }, value: s.count });
    }
    return { name: this.name, help: this.help, type: "histogram" as unknown as MetricObjectWithValues<MetricValueWithName<string>>["type"], aggregator: "sum", values };
  }
}

export class DnsMetrics {
  readonly registry = new Registry();
  private readonly queryCounts = new Map<string, number>();
  /** Query counts reported by worker threads (each sends its running totals). */
  private readonly workerCounts = new Map<number, Map<string, number>>();
  private readonly queries: Counter;
  readonly latency = new LatencyHistogram();
  readonly cacheHits: Counter;
  readonly cacheMisses: Counter;
  readonly forwardErrors: Counter;
  readonly autopath: Counter;
  readonly malformed: Counter;
  readonly ready: Gauge;
  readonly services: Gauge;

  constructor() {
    const registers = [this.registry];
    const counts = this.queryCounts;
    const workers = this.workerCounts;
    this.queries = new Counter({
      name: "podnet_dns_queries_total",
      help: "Queries answered, by query type, response code and protocol",
      labelNames: ["type", "rcode", "proto"],
      registers,
      collect() {
        const totals = new Map(counts);
        for (const worker of workers.values()) for (const [key, value] of worker) totals.set(key, (totals.get(key) ?? 0) + value);
        for (const [key, value] of totals) {
          const [type, rcode, proto] = key.split("|") as [string, string, string];
          // Counter has no set(): reset and re-add the running total at each scrape.
          this.remove({ type, rcode, proto });
          this.inc({ type, rcode, proto }, value);
        }
      },
    });
    this.registry.registerMetric(this.latency as never);
    this.cacheHits = new Counter({ name: "podnet_dns_forward_cache_hits_total", help: "Forwarded names answered from the cache", registers });
    this.cacheMisses = new Counter({ name: "podnet_dns_forward_cache_misses_total", help: "Forwarded names that had to ask an upstream", registers });
    this.forwardErrors = new Counter({ name: "podnet_dns_forward_errors_total", help: "Upstream exchanges that failed (timeout, SERVFAIL, REFUSED, loop)", labelNames: ["upstream"], registers });
    this.autopath = new Counter({ name: "podnet_dns_autopath_total", help: "Search-path walks answered on the server, by outcome", labelNames: ["outcome"], registers });
    this.malformed = new Counter({ name: "podnet_dns_malformed_total", help: "Packets that could not be parsed (answered FORMERR or dropped)", labelNames: ["action"], registers });
    this.ready = new Gauge({ name: "podnet_dns_ready", help: "1 once the first full list of cluster objects is loaded", registers });
    this.services = new Gauge({ name: "podnet_dns_services", help: "Services in the index", registers });
    collectDefaultMetrics({ register: this.registry, prefix: "podnet_dns_" });
  }

  countQuery(type: string, rcode: string, proto: "udp" | "tcp"): void {
    const key = `${type}|${rcode}|${proto}`;
    this.queryCounts.set(key, (this.queryCounts.get(key) ?? 0) + 1);
  }

  /** This thread's running totals, for a worker to report. */
  queryCountEntries(): [string, number][] {
    return [...this.queryCounts];
  }

  mergeWorker(worker: number, entries: [string, number][]): void {
    this.workerCounts.set(worker, new Map(entries));
  }

  queryTotal(): number {
    let n = 0;
    for (const v of this.queryCounts.values()) n += v;
    return n;
  }
}

export interface DnsHealth {
  ready: boolean;
  [key: string]: unknown;
}

/** GET /health (200 while the process serves), /ready (200 after the first sync, else 503), /metrics. */
export async function serveHttp(host: string, port: number, metrics: DnsMetrics, report: () => DnsHealth): Promise<Server> {
  const server = createServer((req, res) => {
    const url = (req.url ?? "/").split("?")[0];
    if (req.method !== "GET") {
      res.writeHead(405).end();
      return;
    }
    if (url === "/health" || url === "/healthz") {
      res.writeHead(200, { "content-type": "application/json" }).end(`${JSON.stringify({ ok: true, ...report() })}\n`);
      return;
    }
    if (url === "/ready" || url === "/readyz") {
      const body = report();
      res.writeHead(body.ready ? 200 : 503, { "content-type": "application/json" }).end(`${JSON.stringify(body)}\n`);
      return;
    }
    if (url === "/metrics") {
      metrics.registry.metrics().then(
        (text) => res.writeHead(200, { "content-type": metrics.registry.contentType }).end(text),
        (err: unknown) => res.writeHead(500).end(String(err)),
      );
      return;
    }
    res.writeHead(404).end();
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve());
  });
  return server;
}
