// The lab's record of everything it created, kept in <state root>/<id>/state.json.
// Each thing is recorded *before* it is created and the file is replaced atomically on every change,
// so `lab down` can undo a `lab up` that crashed at any point. Writes are synchronous on purpose:
// concurrent pod set-ups in one process then can never interleave two half-written files.

import type { EtcNetnsRecord } from "./pod-dns.ts";
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { SupervisedProcess } from "../supervise/process.ts";

export const DEFAULT_STATE_ROOT = "/run/podnet-lab";
const STATE_FILE = "state.json";

export type NetworkMode = "podnet" | "reference";

export interface ProcessRecord extends SupervisedProcess {
  /** What it is: "etcd", "agent node1", "probe node1-pod1", "run node1-pod1 #2". */
  role: string;
  netns: string;
}

export interface NodeRecord {
  name: string;
  netns: string;
  ip: string;
  cniConfDir: string;
  ipamDataDir: string;
  /** The agent's health and /status socket (`--listen`), when it has one. */
  statusSocket?: string;
  /** The socket of the node's resident CNI service (`podnet serve`), when the lab runs one. */
  cniServiceSocket?: string;
}

export interface PodRecord {
  name: string;
  /** The Kubernetes namespace of a pod the lab's kubelet runs from a Pod object; absent for the lab's probe pods. */
  namespace?: string;
  /** The Pod object's uid, for a kubelet pod. */
  uid?: string;
  node: string;
  netns: string;
  containerId: string;
  /** The cached ADD result (what libcni keeps), handed back as prevResult on DEL. */
  result?: Record<string, unknown>;
  /** The pod's IPv4 address without prefix length. */
  ip?: string;
}

export interface LabStateData {
  version: 1;
  id: string;
  createdAt: string;
  nodes: number;
  podsPerNode: number;
  network: NetworkMode;
  /** The underlay's shape; absent in labs made before topologies existed, which are flat. */
  topology?: "flat" | "routed";
  /** The backend the agents were started with (podnet network), and its options. */
  backend?: string;
  backendOptions?: Record<string, unknown>;
  /** "up" once `lab up` finished; anything else means it is in progress or crashed. */
  phase: "creating" | "up";
  namespaces: string[];
  processes: ProcessRecord[];
  nodeRecords: NodeRecord[];
  pods: PodRecord[];
  /** Per-pod resolv.conf files under /etc/netns (kubelet's state only), recorded before they are written. */
  etcNetns?: EtcNetnsRecord;
}

export function labDir(stateRoot: string, id: string): string {
  return join(stateRoot, id);
}

export class LabState {
  readonly dir: string;
  readonly data: LabStateData;

  private constructor(dir: string, data: LabStateData) {
    this.dir = dir;
    this.data = data;
  }

  static create(dir: string, init: Omit<LabStateData, "version" | "createdAt" | "phase" | "namespaces" | "processes" | "nodeRecords" | "pods">): LabState {
    mkdirSync(dir, { recursive: true });
    const state = new LabState(dir, {
      version: 1,
      createdAt: new Date().toISOString(),
      phase: "creating",
      namespaces: [],
      processes: [],
      nodeRecords: [],
      pods: [],
      ...init,
    });
    state.save();
    return state;
  }

  /** The lab recorded in dir, or undefined when there is none. */
  static load(dir: string): LabState | undefined {
    const path = join(dir, STATE_FILE);
    if (!existsSync(path)) return undefined;
    const parsed: unknown = JSON.parse(readFileSync(path, "utf8"));
    if (!isStateData(parsed)) throw new Error(`${path} is not a podnet lab state file`);
    return new LabState(dir, parsed);
  }

  get path(): string {
    return join(this.dir, STATE_FILE);
  }

  save(): void {
    const tmp = `${this.path}.tmp`;
    writeFileSync(tmp, JSON.stringify(this.data, null, 2) + "\n");
    renameSync(tmp, this.path);
  }

  recordNamespace(name: string): void {
    if (!this.data.namespaces.includes(name)) this.data.namespaces.push(name);
    this.save();
  }

  forgetNamespace(name: string): void {
    this.data.namespaces = this.data.namespaces.filter((n) => n !== name);
    this.save();
  }

  recordProcess(record: ProcessRecord): ProcessRecord {
    this.data.processes.push(record);
    this.save();
    return record;
  }

  recordNode(node: NodeRecord): void {
    this.data.nodeRecords.push(node);
    this.save();
  }

  recordPod(pod: PodRecord): PodRecord {
    this.data.pods.push(pod);
    this.save();
    return pod;
  }

  removePod(name: string, namespace?: string): void {
    this.data.pods = this.data.pods.filter((p) => !(p.name === name && p.namespace === namespace));
    this.save();
  }

  /** A pod by name; with `namespace`, only a kubelet pod of that Kubernetes namespace. */
  pod(name: string, namespace?: string): PodRecord | undefined {
    return this.data.pods.find((p) => p.name === name && p.namespace === namespace);
  }

  forgetProcess(record: ProcessRecord): void {
    this.data.processes = this.data.processes.filter((p) => p !== record && !(p.pid !== undefined && p.pid === record.pid && p.role === record.role));
    this.save();
  }

  node(name: string): NodeRecord | undefined {
    return this.data.nodeRecords.find((n) => n.name === name);
  }
}

function isStateData(value: unknown): value is LabStateData {
  if (typeof value !== "object" || value === null) return false;
  const v = value as Record<string, unknown>;
  return (
    v.version === 1 &&
    typeof v.id === "string" &&
    Array.isArray(v.namespaces) &&
    Array.isArray(v.processes) &&
    Array.isArray(v.nodeRecords) &&
    Array.isArray(v.pods)
  );
}
