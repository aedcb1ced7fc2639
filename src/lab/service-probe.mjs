// The lab's service probe: run once per client inside its namespace. Reads a JSON list of requests on
// stdin and makes each one `count` times, every time on a new TCP connection (so a proxy picks an
// endpoint per request), all requests at once; prints the answers (or errors, with how long a failed
// connection took) as JSON.
// Input:  {"timeoutMs": 2000, "requests": [{"label": "web-svc:80", "host": "10.96.0.1", "port": 80, "path": "/hostname", "count": 8}]}
// Output: [{"label": "web-svc:80", "answers": ["web-…", …], "errors": [{"code": "ECONNREFUSED", "ms": 0.4}]}]
import { request as httpRequest } from "node:http";

function get(host, port, path, timeoutMs) {
  const started = performance.now();
  return new Promise((resolve) => {
    let settled = false;
    const finish = (value) => {
      if (settled) return;
      settled = true;
      resolve({ ...value, ms: Math.round((performance.now() - started) * 10) / 10 });
    };
    const req = httpRequest({ host, port, path, agent: false, timeout: timeoutMs, headers: { connection: "close" } }, (res) => {
      let body = "";
      res.on("data", (chunk) => {
        body += chunk.toString("utf8");
      });
      res.on("end", () => (res.statusCode === 200 ? finish({ answer: body.trim() }) : finish({ code: `HTTP ${res.statusCode}` })));
      res.on("error", (error) => finish({ code: error.code ?? error.message }));
    });
    req.on("timeout", () => {
      finish({ code: "ETIMEDOUT" });
      req.destroy();
    });
    req.on("error", (error) => finish({ code: error.code ?? error.message }));
    req.end();
  });
}

async function run(request, timeoutMs) {
  const answers = [];
  const errors = [];
  // One after another: a session-affinity entry must exist before the next connection looks for it.
  for (let i = 0; i < request.count; i++) {
    const outcome = await get(request.host, request.port, request.path, timeoutMs);
    if (outcome.answer !== undefined) answers.push(outcome.answer);
    else {
      errors.push({ code: outcome.code, ms: outcome.ms });
      // A timeout will not be different next time; do not spend the whole check waiting.
      if (outcome.code === "ETIMEDOUT") break;
    }
  }
  return { label: request.label, answers, errors };
}

let input = "";
process.stdin.on("data", (chunk) => {
  input += chunk;
});
process.stdin.on("end", async () => {
  const parsed = JSON.parse(input);
  const results = await Promise.all(parsed.requests.map((r) => run(r, parsed.timeoutMs ?? 2000)));
  process.stdout.write(JSON.stringify(results) + "\n");
});
