// The lab's probe server: one per pod (and one on the external host), run with plain node inside the
// pod's namespace. It answers every TCP connection with one JSON line naming itself and the peer
// address it saw, so the client can tell both "reached the right pod" and "no NAT on the way".
// Usage: node probe-server.mjs NAME PORT READY_FILE
import { createServer } from "node:net";
import { writeFileSync } from "node:fs";

const [name, portText, readyFile] = process.argv.slice(2);
const port = Number(portText);
if (!name || !Number.isInteger(port) || !readyFile) {
  process.stderr.write("usage: probe-server.mjs NAME PORT READY_FILE\n");
  process.exit(2);
}

const server = createServer((socket) => {
  socket.on("error", () => {});
  socket.end(JSON.stringify({ self: name, peer: socket.remoteAddress ?? "" }) + "\n");
});
server.on("error", (error) => {
  process.stderr.write(`probe ${name}: ${error.message}\n`);
  process.exit(1);
});
server.listen(port, "0.0.0.0", () => {
  writeFileSync(readyFile, `${process.pid}\n`);
  process.stdout.write(`probe ${name} listening on ${port}\n`);
});
process.on("SIGTERM", () => server.close(() => process.exit(0)));
