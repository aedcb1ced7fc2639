// The answer builder: one question in, the records the cluster zone holds for it out. Pure: it reads a
// ClusterView and never does I/O, so every rule below is unit-tested against the spec's examples.
//
// Records: Kubernetes DNS-Based Service Discovery, schema 1.1.0 (kubernetes/dns docs/specification.md).
// NXDOMAIN versus NODATA: CoreDNS's kubernetes plugin (plugin/kubernetes/handler.go ServeDNS,
// kubernetes.go findServices/findPods, parse.go parseRequest): a name that exists without the asked
// type is NOERROR with no answer; the apex, svc.<zone> and an existing namespace are NODATA; a
// missing namespace, service or endpoint is NXDOMAIN; both carry the zone's SOA in authority.

import type { Answer, SoaAnswer, SrvAnswer } from "dns-packet";
import type { ClusterView, EndpointRecord, PodsMode, ServiceRecord } from "./index.ts";
import { addressFromDashed, addressFromReverse, isReverseName, labelsOf, parseClusterName } from "./names.ts";

/** The schema version this server implements (spec section 1; the TXT record of section 2.2). */
export const DNS_SCHEMA_VERSION = "1.1.0";

export interface ZoneOptions {
  /** Cluster domain, lower case, no trailing dot: "cluster.local". */
  zone: string;
  ttl: number;
  pods: PodsMode;
}

export type Rcode = "NOERROR" | "NXDOMAIN" | "SERVFAIL";

export type ClusterAnswer =
  /** The name is the cluster's: answer as given. */
  | { kind: "answer"; rcode: Rcode; answers: Answer[]; authorities: Answer[]; additionals: Answer[] }
  /**
   * An ExternalName service: the CNAME is the answer, and the target's records of the asked type
   * follow it; the target lies outside the zone, so the caller resolves it upstream.
   */
  | { kind: "chase"; answers: Answer[]; target: string }
  /** Not the cluster's name: forward it. */
  | { kind: "forward" };

const MAX_CNAME_CHAIN = 8;

export class AnswerBuilder {
  private readonly zoneLabels: string[];

  constructor(private readonly options: ZoneOptions) {
    this.zoneLabels = labelsOf(options.zone);
  }

  get zone(): string {
    return this.options.zone;
  }

  /** Whether `name` is inside the cluster zone (whatever its records). */
  inZone(name: string): boolean {
    return parseClusterName(name, this.zoneLabels).kind !== "outside";
  }

  /**
   * Answer `qname`/`qtype` from `view`. Owner names in the answer are `qname` exactly as asked, so
   * clients that randomize case (DNS 0x20) get their own spelling back.
   */
  answer(view: ClusterView, qname: string, qtype: string): ClusterAnswer {
    return this.answerChain(view, qname, qtype, 0);
  }

  private answerChain(view: ClusterView, qname: string, qtype: string, depth: number): ClusterAnswer {
    const parsed = parseClusterName(qname, this.zoneLabels);
    if (parsed.kind === "outside") return this.reverseOrForward(view, qname, qtype);
    // Before the first full list, an absent name may just not be known yet: a wrong NXDOMAIN would
    // be cached by clients, SERVFAIL makes them retry (CoreDNS answers SERVFAIL until synced too).
    if (!view.synced) return this.negative(view, "SERVFAIL");
    switch (parsed.kind) {
      case "apex":
        if (qtype === "SOA") return this.positive([this.soa(view, qname)]);
        if (qtype === "NS") return this.positive([{ type: "NS", name: qname, ttl: this.options.ttl, data: `ns.dns.${this.zone}` }]);
        return this.nodata(view);
      case "svc-root":
      case "pod-root":
        return this.nodata(view);
      case "dns-version":
        // The name exists; other types are NODATA (CoreDNS answers NXDOMAIN there, which denies a
        // name that exists; the spec's "existing name without the type" rule wins).
        return qtype === "TXT" ? this.positive([{ type: "TXT", name: qname, ttl: this.options.ttl, data: DNS_SCHEMA_VERSION }]) : this.nodata(view);
      case "invalid":
        return this.nxdomain(view);
      case "namespace":
        return view.hasNamespace(parsed.namespace) ? this.nodata(view) : this.nxdomain(view);
      case "pod":
        return this.podAnswer(view, qname, qtype, parsed.namespace, parsed.pod);
      default:
        break;
    }
    if (!view.hasNamespace(parsed.namespace)) return this.nxdomain(view);
    const service = view.service(parsed.namespace, parsed.service);
    if (!service) return this.nxdomain(view);
    const shape = service.shape;
    if (parsed.kind === "service") {
      if (shape.type === "externalName") return this.externalName(view, qname, qtype, shape.externalName, depth);
      if (shape.type === "headless" && service.endpoints.length === 0) return this.nxdomain(view); // spec 2.4.1
      return this.serviceAnswer(view, qname, qtype, service);
    }
    // Endpoint and port names never exist under an ExternalName service (findServices skips them).
    if (shape.type === "externalName") return this.nxdomain(view);
    const target = this.serviceName(service);
    if (parsed.kind === "endpoint") {
      // CoreDNS answers endpoint names for regular services too (findServices: r.endpoint != "").
      const endpoints = service.endpoints.filter((ep) => ep.hostname === parsed.endpoint);
      if (endpoints.length === 0) return this.nxdomain(view);
      if (qtype === "A" || qtype === "AAAA") return this.addressAnswer(view, qname, qtype, endpoints.map((ep) => ep.ip));
      if (qtype === "SRV") {
        const srvs: SrvAnswer[] = [];
        for (const ep of endpoints) for (const p of ep.ports) srvs.push(this.srv(qname, p.port, `${ep.hostname}.${target}`, 1));
        return this.positive(weighted(srvs), this.addresses(endpoints.map((ep) => [`${ep.hostname}.${target}`, ep.ip])));
      }
      return this.nodata(view);
    }
    // parsed.kind === "port": only named ports have SRV records (spec 2.3.2, 2.4.2).
    const matches = (p: { name: string; protocol: string }): boolean => p.name !== "" && p.name === parsed.port && p.protocol === parsed.protocol;
    if (shape.type === "clusterIP") {
      const ports = service.ports.filter(matches);
      if (ports.length === 0) return this.nxdomain(view);
      if (qtype === "SRV") {
        const srvs = ports.map((p) => this.srv(qname, p.port, target, ports.length));
        return this.positive(srvs, this.addresses(shape.clusterIPs.map((ip) => [target, ip])));
      }
      if (qtype === "A" || qtype === "AAAA") return this.addressAnswer(view, qname, qtype, shape.clusterIPs);
      return this.nodata(view);
    }
    const pairs: [EndpointRecord, number][] = [];
    for (const ep of service.endpoints) for (const p of ep.ports) if (matches(p)) pairs.push([ep, p.port]);
    if (pairs.length === 0) return this.nxdomain(view);
    if (qtype === "SRV") {
      const srvs = pairs.map(([ep, port]) => this.srv(qname, port, `${ep.hostname}.${target}`, pairs.length));
      return this.positive(srvs, this.addresses(pairs.map(([ep]) => [`${ep.hostname}.${target}`, ep.ip])));
    }
    if (qtype === "A" || qtype === "AAAA") return this.addressAnswer(view, qname, qtype, pairs.map(([ep]) => ep.ip));
    return this.nodata(view);
  }

  private serviceAnswer(view: ClusterView, qname: string, qtype: string, service: ServiceRecord): ClusterAnswer {
    const shape = service.shape;
    const target = this.serviceName(service);
    if (qtype === "A" || qtype === "AAAA") {
      const ips = shape.type === "clusterIP" ? shape.clusterIPs : service.endpoints.map((ep) => ep.ip);
      return this.addressAnswer(view, qname, qtype, ips);
    }
    if (qtype === "SRV") {
      // CoreDNS answers SRV at the service name itself with every port, named or not.
      if (shape.type === "clusterIP") {
        const srvs = service.ports.map((p) => this.srv(qname, p.port, target, service.ports.length));
        return srvs.length === 0 ? this.nodata(view) : this.positive(srvs, this.addresses(shape.clusterIPs.map((ip) => [target, ip])));
      }
      const srvs: SrvAnswer[] = [];
      for (const ep of service.endpoints) for (const p of ep.ports) srvs.push(this.srv(qname, p.port, `${ep.hostname}.${target}`, 1));
      return srvs.length === 0 ? this.nodata(view) : this.positive(weighted(srvs), this.addresses(service.endpoints.map((ep) => [`${ep.hostname}.${target}`, ep.ip])));
    }
    return this.nodata(view);
  }

  private externalName(view: ClusterView, qname: string, qtype: string, externalName: string, depth: number): ClusterAnswer {
    const cname: Answer = { type: "CNAME", name: qname, ttl: this.options.ttl, data: externalName };
    if (qtype === "CNAME") return this.positive([cname]);
    if (parseClusterName(externalName, this.zoneLabels).kind === "outside") return { kind: "chase", answers: [cname], target: externalName };
    if (depth >= MAX_CNAME_CHAIN) return this.positive([cname]);
    // An ExternalName pointing back into the cluster zone is followed here, without a round trip.
    const next = this.answerChain(view, externalName, qtype, depth + 1);
    if (next.kind === "chase") return { kind: "chase", answers: [cname, ...next.answers], target: next.target };
    if (next.kind !== "answer") return this.positive([cname]);
    return { ...next, answers: [cname, ...next.answers] };
  }

  private podAnswer(view: ClusterView, qname: string, qtype: string, namespace: string, label: string): ClusterAnswer {
    // Pod records are off unless asked for; "insecure" answers any address, "verified" only a pod
    // that exists in that namespace (CoreDNS `pods` option).
    if (this.options.pods === "disabled") return this.nxdomain(view);
    if (!view.hasNamespace(namespace)) return this.nxdomain(view);
    const ip = addressFromDashed(label);
    if (ip === undefined) return this.nxdomain(view);
    if (this.options.pods === "verified" && !view.podInNamespace(ip, namespace)) return this.nxdomain(view);
    if (qtype === "A" || qtype === "AAAA") return this.addressAnswer(view, qname, qtype, [ip]);
    return this.nodata(view);
  }

  private reverseOrForward(view: ClusterView, qname: string, qtype: string): ClusterAnswer {
    if (!isReverseName(qname)) return { kind: "forward" };
    const ip = addressFromReverse(qname);
    const owners = ip === undefined ? [] : view.reverse(ip);
    // Addresses the cluster does not know fall through to the upstreams, as the default Corefile's
    // `fallthrough in-addr.arpa ip6.arpa`.
    if (owners.length === 0) return { kind: "forward" };
    if (qtype !== "PTR") return { kind: "answer", rcode: "NOERROR", answers: [], authorities: [], additionals: [] };
    return this.positive(owners.map((owner) => ({ type: "PTR", name: qname, ttl: this.options.ttl, data: owner })));
  }

  private addressAnswer(view: ClusterView, qname: string, qtype: "A" | "AAAA", ips: readonly string[]): ClusterAnswer {
    const wantV6 = qtype === "AAAA";
    const answers: Answer[] = [];
    const seen = new Set<string>();
    for (const ip of ips) {
      if (ip.includes(":") !== wantV6 || seen.has(ip)) continue;
      seen.add(ip);
      answers.push({ type: qtype, name: qname, ttl: this.options.ttl, data: ip });
    }
    // A name that has addresses of the other family only exists: NODATA, not NXDOMAIN.
    return answers.length === 0 ? this.nodata(view) : this.positive(answers);
  }

  private addresses(pairs: readonly [string, string][]): Answer[] {
    const out: Answer[] = [];
    const seen = new Set<string>();
    for (const [name, ip] of pairs) {
      const key = `${name}|${ip}`;
      if (seen.has(key)) continue;
      seen.add(key);
      out.push({ type: ip.includes(":") ? "AAAA" : "A", name, ttl: this.options.ttl, data: ip });
    }
    return out;
  }

  private srv(qname: string, port: number, target: string, count: number): SrvAnswer {
    return { type: "SRV", name: qname, ttl: this.options.ttl, data: { priority: 0, weight: Math.max(1, Math.floor(100 / count)), port, target } };
  }

  private serviceName(service: ServiceRecord): string {
    return `${service.name}.${service.namespace}.svc.${this.zone}`;
  }

  soa(view: ClusterView, name = this.zone): SoaAnswer {
    // Field values as CoreDNS's kubernetes plugin (plugin/kubernetes/kubernetes.go Serial, and
    // plugin/backend_lookup.go SOA): minimum is the record TTL, so negative answers cache that long.
    return {
      type: "SOA",
      name,
      ttl: this.options.ttl,
      data: {
        mname: `ns.dns.${this.zone}`,
        rname: `hostmaster.${this.zone}`,
        serial: view.serial >>> 0,
        refresh: 7200,
        retry: 1800,
        expire: 86400,
        minimum: this.options.ttl,
      },
    };
  }

  private positive(answers: Answer[], additionals: Answer[] = []): ClusterAnswer {
    return { kind: "answer", rcode: "NOERROR", answers, authorities: [], additionals };
  }

  private nodata(view: ClusterView): ClusterAnswer {
    return this.negative(view, "NOERROR");
  }

  private nxdomain(view: ClusterView): ClusterAnswer {
    return this.negative(view, "NXDOMAIN");
  }

  private negative(view: ClusterView, rcode: Rcode): ClusterAnswer {
    const authorities = rcode === "SERVFAIL" ? [] : [this.soa(view)];
    return { kind: "answer", rcode, answers: [], authorities, additionals: [] };
  }
}

/** Spread 100 of weight over records that share priority 0 (RFC 2782: weights among equal priority). */
function weighted(srvs: SrvAnswer[]): SrvAnswer[] {
  const weight = Math.max(1, Math.floor(100 / Math.max(1, srvs.length)));
  for (const srv of srvs) srv.data.weight = weight;
  return srvs;
}
