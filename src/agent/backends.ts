// Every backend this agent can build, by the name the cluster config uses. A new backend (vxlan) is one
// more factory here; the routes reconciler does the rest (building, switching, teardown, MTU).

import type { BackendFactory } from "./backend.ts";
import { hostGwFactory } from "./host-gw-backend.ts";
import { vxlanFactory } from "./vxlan-backend.ts";

export const BACKEND_FACTORIES: readonly BackendFactory[] = [hostGwFactory, vxlanFactory];
