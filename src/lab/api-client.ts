// The client side of the lab's API (api.ts answers): one JSON request per HTTP POST over the unix socket
// in the lab's state dir. Kept apart from the handlers so that readers of a lab (podnet trace, lab graph)
// can ask the controllers without loading the control plane's planners.

import { request as httpRequest } from "node:http";
import { join } from "node:path";

export type OutputFormat = "table" | "wide" | "json" | "yaml";

export type ApiRequest =
  | { verb: "apply"; text: string; source: string }
  | { verb: "delete"; text?: string; source?: string; kind?: string; names?: string[]; namespace?: string }
  | { verb: "get"; kind: string; names?: string[]; namespace?: string; allNamespaces?: boolean; output: OutputFormat };

export interface ApiResponse {
  exitCode: number;
  stdout: string;
  stderr: string;
}

export function apiSocketPath(labDir: string): string {
  return join(labDir, "api.sock");
}

/** Send one request to the lab's API socket. */
export function callApi(socketPath: string, request: ApiRequest, timeoutMs = 60_000): Promise<ApiResponse> {
  return new Promise((resolve, reject) => {
    const body = JSON.stringify(request);
    const req = httpRequest({ socketPath, path: "/", method: "POST", headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) }, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        try {
          resolve(JSON.parse(Buffer.concat(chunks).toString("utf8")) as ApiResponse);
        } catch (error) {
          reject(new Error(`bad answer from the lab API: ${(error as Error).message}`));
        }
      });
      res.on("error", reject);
    });
    req.on("timeout", () => req.destroy(new Error(`the lab API did not answer in ${timeoutMs / 1000} s`)));
    req.on("error", (error: NodeJS.ErrnoException) => {
      if (error.code === "ENOENT" || error.code === "ECONNREFUSED") reject(new Error(`the lab's controllers are not running (no API at ${socketPath})`));
      else reject(error);
    });
    req.end(body);
  });
}
