// The server every lab pod runs, whatever its image names: the subset of Kubernetes' e2e
// `agnhost netexec` that service tests rely on (test/images/agnhost/netexec in k8s.io/kubernetes).
//   HTTP GET /hostname   → the pod name
//   HTTP GET /clientip   → "IP:port" of the client as this pod sees it (shows whether SNAT happened)
//   HTTP GET /echo?msg=X → X
//   HTTP GET /           → "NOW: <time>"
//   UDP "hostname"       → the pod name; "clientip" → "IP:port"; "echo X" → X
// Plain Node, no dependencies, so the lab can start it in a pod's namespace with `node`.
//
// Usage: node test-server.mjs --name POD [--listen TCP:8080,UDP:53] [--ready-file FILE]
// Every TCP port serves HTTP; the default is TCP:8080 (netexec's default). Port 0 picks a free
// port. Once everything listens, the ready file gets {"pid":…,"ports":[{"protocol":"TCP","port":…}]}
// (the pod is Ready from then on).

import { createServer } from "node:http";
import { createSocket } from "node:dgram";
import { writeFileSync, renameSync } from "node:fs";

function parseArgs(argv) {
  const options = { name: "", listen: "TCP:8080", readyFile: "", host: "0.0.0.0" };
  for (let i = 0; i < argv.length; i += 2) {
    const [flag, value] = [argv[i], argv[i + 1]];
    if (value === undefined) throw new Error(`${flag} needs a value`);
    if (flag === "--name") options.name = value;
    else if (flag === "--listen") options.listen = value;
    else if (flag === "--ready-file") options.readyFile = value;
    else if (flag === "--host") options.host = value;
    else throw new Error(`unknown option ${flag}`);
  }
  if (!options.name) throw new Error("--name is required");
  const ports = options.listen.split(",").filter((s) => s !== "").map((spec) => {
    const match = /^(TCP|UDP):(\d{1,5})$/i.exec(spec.trim());
    if (!match || Number(match[2]) > 65535) throw new Error(`--listen: "${spec}" is not PROTOCOL:PORT with PROTOCOL TCP or UDP`);
    return { protocol: match[1].toUpperCase(), port: Number(match[2]) };
  });
  if (ports.length === 0) throw new Error("--listen names no port");
  return { ...options, ports };
}

function httpHandler(name) {
  return (request, response) => {
    const url = new URL(request.url ?? "/", "http://pod");
    const reply = (status, body) => {
      response.writeHead(status, { "content-type": "text/plain; charset=utf-8", "content-length": Buffer.byteLength(body) });
      response.end(body);
    };
    switch (url.pathname) {
      case "/hostname":
        return reply(200, name);
      case "/clientip":
        return reply(200, `${request.socket.remoteAddress}:${request.socket.remotePort}`);
      case "/echo":
        return reply(200, url.searchParams.get("msg") ?? "");
      case "/healthz":
        return reply(200, "ok");
      case "/":
        return reply(200, `NOW: ${new Date().toISOString()}`);
      default:
        return reply(404, "404 page not found\n");
    }
  };
}

function udpAnswer(name, text, peer) {
  const command = text.trim();
  if (command === "hostname") return name;
  if (command === "clientip") return `${peer.address}:${peer.port}`;
  if (command.startsWith("echo ")) return command.slice(5);
  return `unknown command: ${command}`;
}

async function listen(options) {
  const closers = [];
  const bound = [];
  for (const { protocol, port } of options.ports) {
    if (protocol === "TCP") {
      const server = createServer(httpHandler(options.name));
      server.keepAliveTimeout = 1000;
      await new Promise((resolve, reject) => {
        server.once("error", reject);
        server.listen(port, options.host, resolve);
      });
      closers.push(() => new Promise((resolve) => { server.close(() => resolve()); server.closeAllConnections?.(); }));
      bound.push({ protocol, port: server.address().port });
    } else {
      const socket = createSocket({ type: "udp4" });
      socket.on("message", (message, peer) => {
        socket.send(udpAnswer(options.name, message.toString("utf8"), peer), peer.port, peer.address);
      });
      await new Promise((resolve, reject) => {
        socket.once("error", reject);
        socket.bind(port, options.host, resolve);
      });
      closers.push(() => new Promise((resolve) => socket.close(() => resolve())));
      bound.push({ protocol, port: socket.address().port });
    }
  }
  return { bound, close: () => Promise.all(closers.map((c) => c())) };
}

let options;
try {
  options = parseArgs(process.argv.slice(2));
} catch (error) {
  process.stderr.write(`test-server: ${error.message}\nusage: node test-server.mjs --name POD [--listen TCP:8080,UDP:53] [--ready-file FILE]\n`);
  process.exit(2);
}
try {
  const server = await listen(options);
  if (options.readyFile) {
    // Written whole, then renamed, so a reader never sees half a file.
    writeFileSync(`${options.readyFile}.tmp`, JSON.stringify({ pid: process.pid, ports: server.bound }) + "\n");
    renameSync(`${options.readyFile}.tmp`, options.readyFile);
  }
  process.stdout.write(`test-server ${options.name} listening on ${server.bound.map((b) => `${b.protocol}:${b.port}`).join(",")}\n`);
  const stop = () => server.close().then(() => process.exit(0));
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
} catch (error) {
  process.stderr.write(`test-server ${options.name}: ${error.message}\n`);
  process.exit(1);
}
