// The lab's API: what `podnet lab apply/delete/get` ask the controllers process for, over a unix
// socket in the lab's state dir, and the handlers that answer (reading the ObjectStore, planning with
// src/controlplane, committing one batch per request). Output is made server-side as kubectl prints it,
// so the CLI only relays stdout, stderr and the exit code.

import { stringify } from "yaml";
import { ALLOCATION_POOLS, ApplyRejectedError, ApiError, describeResult, planApply, planDelete, type ClusterState, type DeleteTarget } from "../controlplane/apply.ts";
import { noResourcesMessage, printNodes, printObjects, printTable, type NodeRow } from "../controlplane/printer.ts";
import type { Datastore } from "../datastore/datastore.ts";
import { ConflictError, type ObjectStore } from "../datastore/objects.ts";
import { InvalidObjectError } from "../k8s/field-errors.ts";
import { resolveKind, singularResourceName, UnknownKindError } from "../k8s/kinds.ts";
import { ManifestError, parseManifests } from "../k8s/manifest.ts";
import { isNamespaced, OBJECT_KINDS, type KubeObject } from "../k8s/types.ts";
import type { ApiRequest, ApiResponse } from "./api-client.ts";

export { apiSocketPath, callApi, type ApiRequest, type ApiResponse, type OutputFormat } from "./api-client.ts";

export interface ApiDeps {
  datastore: Pick<Datastore, "snapshot">;
  store: ObjectStore;
}

const MAX_ATTEMPTS = 5;

async function clusterState(deps: ApiDeps): Promise<ClusterState> {
  const lists = await Promise.all(OBJECT_KINDS.map((kind) => deps.store.list(kind)));
  const claims = new Map(await Promise.all(ALLOCATION_POOLS.map(async (pool) => [pool, await deps.store.claims(pool)] as const)));
  const { config } = await deps.datastore.snapshot({ fresh: true });
  return { objects: lists.flatMap((l) => l.items as KubeObject[]), claims, config };
}

function failure(error: unknown): ApiResponse {
  if (error instanceof ApplyRejectedError || error instanceof ManifestError || error instanceof InvalidObjectError || error instanceof UnknownKindError) {
    return { exitCode: 1, stdout: "", stderr: `error: ${error.message}\n` };
  }
  if (error instanceof ApiError) return { exitCode: 1, stdout: "", stderr: `Error from server (${error.reason}): ${error.message}\n` };
  return { exitCode: 1, stdout: "", stderr: `error: ${(error as Error).message}\n` };
}

/** Plan against a fresh read and commit; a ConflictError means another writer raced us: read and plan again. */
async function planAndCommit<P extends { writes: readonly unknown[] }>(deps: ApiDeps, plan: (state: ClusterState) => P): Promise<P> {
  for (let attempt = 1; ; attempt++) {
    const planned = plan(await clusterState(deps));
    if (planned.writes.length === 0) return planned;
    try {
      await deps.store.commit(planned.writes as Parameters<ObjectStore["commit"]>[0]);
      return planned;
    } catch (error) {
      if (!(error instanceof ConflictError) || attempt >= MAX_ATTEMPTS) throw error;
    }
  }
}

export async function applyRequest(request: Extract<ApiRequest, { verb: "apply" }>, deps: ApiDeps): Promise<ApiResponse> {
  try {
    const documents = parseManifests(request.text, request.source).map((d) => d.object);
    if (documents.length === 0) return { exitCode: 1, stdout: "", stderr: `error: no objects passed to apply\n` };
    const { results } = await planAndCommit(deps, (state) => planApply(documents, state));
    return { exitCode: 0, stdout: results.map((r) => describeResult(r) + "\n").join(""), stderr: "" };
  } catch (error) {
    return failure(error);
  }
}

export async function deleteRequest(request: Extract<ApiRequest, { verb: "delete" }>, deps: ApiDeps): Promise<ApiResponse> {
  try {
    let targets: DeleteTarget[];
    if (request.text !== undefined) {
      targets = parseManifests(request.text, request.source ?? "manifest").map(({ object }) => ({
        kind: object.kind,
        ...(isNamespaced(object.kind) ? { namespace: object.metadata.namespace ?? request.namespace ?? "default" } : {}),
        name: object.metadata.name,
      }));
    } else {
      if (!request.kind || !request.names || request.names.length === 0) return { exitCode: 2, stdout: "", stderr: "error: delete needs -f FILE or KIND NAME\n" };
      const kind = resolveKind(request.kind);
      targets = request.names.map((name) => ({ kind, ...(isNamespaced(kind) ? { namespace: request.namespace ?? "default" } : {}), name }));
    }
    const { results, notFound } = await planAndCommit(deps, (state) => planDelete(targets, state));
    return {
      exitCode: notFound.length > 0 ? 1 : 0,
      stdout: results.map((r) => `${singularResourceName(r.kind)} "${r.name}" deleted\n`).join(""),
      stderr: notFound.map((line) => `Error from server (NotFound): ${line}\n`).join(""),
    };
  } catch (error) {
    return failure(error);
  }
}

export async function getRequest(request: Extract<ApiRequest, { verb: "get" }>, deps: ApiDeps): Promise<ApiResponse> {
  try {
    const wide = request.output === "wide";
    const namespace = request.allNamespaces ? undefined : (request.namespace ?? "default");
    if (["nodes", "node", "no"].includes(request.kind.toLowerCase())) {
      const snapshot = await deps.datastore.snapshot({ fresh: true });
      const rows: NodeRow[] = snapshot.nodes
        .filter((n) => !request.names?.length || request.names.includes(n.name))
        .map((n) => ({ name: n.name, ready: n.alive && n.phase === "active", internalIp: n.nodeIp, podCidr: n.podSubnet }));
      if (request.output === "json" || request.output === "yaml") {
        const list = { apiVersion: "v1", kind: "List", items: rows };
        return { exitCode: 0, stdout: request.output === "json" ? JSON.stringify(list, null, 4) + "\n" : stringify(list), stderr: "" };
      }
      return rows.length > 0 ? { exitCode: 0, stdout: withNewline(printNodes(rows, { wide })), stderr: "" } : { exitCode: 0, stdout: "", stderr: noResourcesMessage(undefined) + "\n" };
    }
    const kind = resolveKind(request.kind);
    let objects = (await deps.store.list(kind, isNamespaced(kind) ? namespace : undefined)).items as KubeObject[];
    if (request.names && request.names.length > 0) {
      const missing = request.names.filter((name) => !objects.some((o) => o.metadata.name === name));
      objects = objects.filter((o) => request.names!.includes(o.metadata.name));
      if (missing.length > 0) {
        const resource = singularResourceName(kind).split(".")[0]!;
        const plural = resource.endsWith("s") ? resource : `${resource}s`;
        return { exitCode: 1, stdout: printFor(objects), stderr: missing.map((n) => `Error from server (NotFound): ${plural} "${n}" not found\n`).join("") };
      }
    }
    return { exitCode: 0, stdout: printFor(objects), stderr: objects.length === 0 && request.output !== "json" && request.output !== "yaml" ? noResourcesMessage(isNamespaced(kind) ? namespace : undefined) + "\n" : "" };

    function printFor(list: KubeObject[]): string {
      if (request.output === "json" || request.output === "yaml") return printObjects(list, request.output, { asList: !request.names || request.names.length !== 1 });
      return withNewline(printTable(kind, list, { wide, allNamespaces: request.allNamespaces ?? false }));
    }
  } catch (error) {
    return failure(error);
  }
}

function withNewline(text: string): string {
  return text === "" || text.endsWith("\n") ? text : `${text}\n`;
}
