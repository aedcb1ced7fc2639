// The lab's probe client: run once per source pod inside its namespace. Reads a JSON list of targets
// on stdin, connects to all of them at once, and prints what each server answered (or the error) as JSON.
// Input:  {"timeoutMs": 2000, "targets": [{"label": "node2-pod1", "host": "10.244.2.2", "port": 7007}]}
// Output: [{"label": "node2-pod1", "self": "node2-pod1", "peer": "10.244.1.2", "ms": 1.2}, {"label": …, "error": "…"}]
import { connect } from "node:net";

function probe(target, timeoutMs) {
  const started = performance.now();
  return new Promise((resolve) => {
    let answer = "";
    let settled = false;
    const finish = (fields) => {
      if (settled) return;
      settled = true;
      socket.destroy();
      resolve({ label: target.label, ms: Math.round((performance.now() - started) * 10) / 10, ...fields });
    };
    const socket = connect({ host: target.host, port: target.port });
    socket.setTimeout(timeoutMs, () => finish({ error: `timed out after ${timeoutMs} ms` }));
    socket.on("data", (chunk) => {
      answer += chunk.toString("utf8");
    });
    socket.on("end", () => {
      try {
        const parsed = JSON.parse(answer);
        finish({ self: String(parsed.self), peer: String(parsed.peer) });
      } catch {
        finish({ error: `unreadable answer ${JSON.stringify(answer.slice(0, 100))}` });
      }
    });
    socket.on("error", (error) => finish({ error: error.code ?? error.message }));
  });
}

let input = "";
process.stdin.on("data", (chunk) => {
  input += chunk;
});
process.stdin.on("end", async () => {
  const request = JSON.parse(input);
  const results = await Promise.all(request.targets.map((t) => probe(t, request.timeoutMs ?? 2000)));
  process.stdout.write(JSON.stringify(results) + "\n");
});
