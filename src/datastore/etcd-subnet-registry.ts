// The SubnetRegistry on etcd: node records, subnet claims, liveness keys and acks, each guarded
// write one transaction. No policy here (see subnet-policy.ts).
//
//   nodes/<name>             JSON NodeRecord
//   subnets/<a.b.c.d-len>    owner node name: a key exists at most once, so two nodes never share a subnet
//   alive/<name>             lease id; attached to the node's lease, so it vanishes when the lease expires
//   acks/<leaving>/<acker>   time the acker withdrew its routes to the leaving node

import type { Etcd3 } from "etcd3";
import type { NodeRecord } from "./datastore.ts";
import type { StoredNode, SubnetRegistry } from "./subnet-registry.ts";

/** The liveness handle on etcd: the id of a granted lease. */
export type EtcdLeaseId = string;

export class EtcdSubnetRegistry implements SubnetRegistry<EtcdLeaseId> {
  constructor(
    private readonly client: Etcd3,
    private readonly prefix: string,
    /** Told the revision of every write, so the datastore's reads never look older than its own writes. */
    private readonly wrote: (result: { header: { revision: string | number } }) => void,
  ) {}

  private key(...parts: string[]): string {
    return this.prefix + parts.join("/");
  }

  async getNode(name: string): Promise<StoredNode | undefined> {
    const kv = (await this.client.get(this.key("nodes", name)).exec()).kvs[0];
    return kv ? { record: parseNodeRecord(kv.value.toString()), revision: Number(kv.mod_revision) } : undefined;
  }

  async claimedSubnets(): Promise<Set<string>> {
    const dir = this.key("subnets") + "/";
    const keys = await this.client.getAll().prefix(dir).keys();
    return new Set(keys.map((k) => subnetFromKey(k.slice(dir.length))));
  }

  async createNode(record: NodeRecord, leaseId: EtcdLeaseId): Promise<boolean> {
    const nodeKey = this.key("nodes", record.name);
    const claimKey = this.key("subnets", subnetKey(record.podSubnet));
    const result = await this.client
      .if(nodeKey, "Create", "==", 0)
      .and(claimKey, "Create", "==", 0)
      .then(
        this.client.put(claimKey).value(record.name),
        this.client.put(nodeKey).value(JSON.stringify(record)),
        this.client.put(this.key("alive", record.name)).value(leaseId).lease(leaseId),
      )
      .commit();
    this.wrote(result);
    return result.succeeded;
  }

  async reviveNode(record: NodeRecord, expectedRevision: number, leaseId: EtcdLeaseId): Promise<boolean> {
    const nodeKey = this.key("nodes", record.name);
    const result = await this.client
      .if(nodeKey, "Mod", "==", expectedRevision)
      .and(this.key("subnets", subnetKey(record.podSubnet)), "Value", "==", record.name)
      .then(
        this.client.put(nodeKey).value(JSON.stringify(record)),
        this.client.put(this.key("alive", record.name)).value(leaseId).lease(leaseId),
        this.client.delete().prefix(this.key("acks", record.name) + "/"),
      )
      .commit();
    this.wrote(result);
    return result.succeeded;
  }

  async updateNode(record: NodeRecord, expectedRevision: number): Promise<boolean> {
    const nodeKey = this.key("nodes", record.name);
    const result = await this.client.if(nodeKey, "Mod", "==", expectedRevision).then(this.client.put(nodeKey).value(JSON.stringify(record))).commit();
    this.wrote(result);
    return result.succeeded;
  }

  async addAck(leaving: string, acker: string): Promise<void> {
    this.wrote(
      await this.client
        .if(this.key("nodes", leaving), "Create", ">", 0)
        .then(this.client.put(this.key("acks", leaving, acker)).value(new Date().toISOString()))
        .commit(),
    );
  }

  async deleteNode(record: NodeRecord, expectedRevision: number): Promise<boolean> {
    const nodeKey = this.key("nodes", record.name);
    const claimKey = this.key("subnets", subnetKey(record.podSubnet));
    const result = await this.client
      .if(nodeKey, "Mod", "==", expectedRevision)
      .and(claimKey, "Value", "==", record.name)
      .then(
        this.client.delete().key(nodeKey),
        this.client.delete().key(claimKey),
        this.client.delete().key(this.key("alive", record.name)),
        this.client.delete().prefix(this.key("acks", record.name) + "/"),
      )
      .commit();
    this.wrote(result);
    return result.succeeded;
  }
}

/** Subnets as key segments: "10.244.1.0/24" → "10.244.1.0-24" (a slash would split the key). */
export function subnetKey(subnet: string): string {
  return subnet.replace("/", "-");
}

function subnetFromKey(key: string): string {
  return key.replace("-", "/");
}

export function parseNodeRecord(text: string): NodeRecord {
  const raw = JSON.parse(text) as Partial<NodeRecord>;
  if (typeof raw.name !== "string" || typeof raw.nodeIp !== "string" || typeof raw.podSubnet !== "string") {
    throw new Error(`malformed node record: ${text}`);
  }
  const record: NodeRecord = {
    name: raw.name,
    nodeIp: raw.nodeIp,
    podSubnet: raw.podSubnet,
    backendData: raw.backendData ?? {},
    phase: raw.phase === "leaving" ? "leaving" : "active",
  };
  if (raw.leavingReason) record.leavingReason = raw.leavingReason;
  if (raw.leavingSince) record.leavingSince = raw.leavingSince;
  return record;
}
