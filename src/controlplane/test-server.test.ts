import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { createSocket } from "node:dgram";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { get } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { Pod } from "../k8s/types.ts";
import { TEST_SERVER_SCRIPT, testServerArgs, testServerPorts } from "./test-server-ports.ts";

const pod = (ports?: { containerPort: number; protocol?: "TCP" | "UDP" | "SCTP" }[]): Pod => ({ apiVersion: "v1", kind: "Pod", metadata: { name: "web-abc-x1" }, spec: { containers: [{ name: "c", ...(ports ? { ports } : {}) }] } });

describe("test server ports", () => {
  it("serves every TCP and UDP containerPort, and 8080 when none is declared", () => {
    assert.deepEqual(testServerPorts(pod()), [{ protocol: "TCP", port: 8080 }]);
    assert.deepEqual(testServerPorts(pod([{ containerPort: 80 }, { containerPort: 53, protocol: "UDP" }, { containerPort: 53, protocol: "TCP" }, { containerPort: 9, protocol: "SCTP" }, { containerPort: 80 }])), [
      { protocol: "TCP", port: 80 }, { protocol: "UDP", port: 53 }, { protocol: "TCP", port: 53 },
    ]);
    assert.deepEqual(testServerArgs(pod(), "/r").slice(1), ["--name", "web-abc-x1", "--listen", "TCP:8080", "--ready-file", "/r"]);
  });
});

describe("test server on loopback", () => {
  let child: ChildProcess;
  let dir: string;
  let ports: { protocol: string; port: number }[];
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "podnet-test-server-"));
    const ready = join(dir, "ready");
    child = spawn(process.execPath, [TEST_SERVER_SCRIPT, "--name", "web-abc-x1", "--host", "127.0.0.1", "--listen", "TCP:0,UDP:0", "--ready-file", ready], { stdio: "ignore" });
    const deadline = Date.now() + 10_000;
    while (!existsSync(ready)) {
      if (Date.now() > deadline) throw new Error("test server did not become ready");
      await new Promise((r) => setTimeout(r, 20));
    }
    ports = JSON.parse(readFileSync(ready, "utf8")).ports;
  });
  after(() => {
    if (child.pid && child.exitCode === null) child.kill("SIGTERM");
    rmSync(dir, { recursive: true, force: true });
  });
  const http = (path: string) =>
    new Promise<{ status: number; body: string; localPort: number }>((resolve, reject) => {
      const port = ports.find((p) => p.protocol === "TCP")!.port;
      const request = get({ host: "127.0.0.1", port, path, agent: false }, (response) => {
        const localPort = request.socket?.localPort ?? 0;
        let body = "";
        response.on("data", (chunk) => (body += chunk));
        response.on("end", () => resolve({ status: response.statusCode ?? 0, body, localPort }));
      });
      request.on("error", reject);
    });
  const udp = (message: string) =>
    new Promise<{ answer: string; localPort: number }>((resolve, reject) => {
      const socket = createSocket("udp4");
      const timer = setTimeout(() => (socket.close(), reject(new Error("no UDP answer"))), 3000);
      socket.on("message", (m) => {
        clearTimeout(timer);
        const localPort = socket.address().port;
        socket.close();
        resolve({ answer: m.toString(), localPort });
      });
      socket.send(message, ports.find((p) => p.protocol === "UDP")!.port, "127.0.0.1");
    });

  it("answers /hostname with the pod name", async () => {
    const r = await http("/hostname");
    assert.equal(r.status, 200);
    assert.equal(r.body, "web-abc-x1");
  });
  it("answers /echo?msg=X with X and unknown paths with 404", async () => {
    assert.equal((await http("/echo?msg=hello%20there")).body, "hello there");
    assert.equal((await http("/nope")).status, 404);
  });
  it("answers /clientip with the client's address and port as seen", async () => {
    const r = await http("/clientip");
    assert.match(r.body, /^127\.0\.0\.1:\d+$/);
    assert.equal(Number(r.body.split(":")[1]), r.localPort);
  });
  it("answers UDP hostname, clientip and echo", async () => {
    assert.equal((await udp("hostname")).answer, "web-abc-x1");
    const c = await udp("clientip");
    assert.equal(c.answer, `127.0.0.1:${c.localPort}`);
    assert.equal((await udp("echo hi")).answer, "hi");
  });
  it("refuses bad arguments with a usage line", async () => {
    const bad = spawn(process.execPath, [TEST_SERVER_SCRIPT, "--name", "x", "--listen", "SCTP:1"], { stdio: ["ignore", "ignore", "pipe"] });
    let err = "";
    bad.stderr!.on("data", (c) => (err += c));
    const code = await new Promise((r) => bad.on("exit", r));
    assert.equal(code, 2);
    assert.match(err, /"SCTP:1" is not PROTOCOL:PORT/);
  });
});
