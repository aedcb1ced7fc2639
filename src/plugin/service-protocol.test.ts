import assert from "node:assert/strict";
import { test } from "node:test";
import { parseReply, parseRequest } from "./service-protocol.ts";

test("only a complete reply line counts; anything cut short means do the work locally", () => {
  assert.deepEqual(parseReply('{"exitCode":0,"stdout":"{}\\n","stderr":""}\n'), { exitCode: 0, stdout: "{}\n", stderr: "" });
  assert.deepEqual(parseReply('{"local":true,"reason":"other netns"}\n'), { local: true, reason: "other netns" });
  assert.equal(parseReply('{"exitCode":0,"stdout":"{}\\n","stderr":""}'), undefined, "no newline: the service died while writing");
  assert.equal(parseReply('{"exitCode":0,"std'), undefined);
  assert.equal(parseReply(""), undefined);
  assert.equal(parseReply('{"exitCode":1.5,"stdout":"","stderr":""}\n'), undefined);
  assert.equal(parseReply('{"exitCode":0,"stdout":5,"stderr":""}\n'), undefined);
  assert.equal(parseReply("null\n"), undefined);
});

test("a request keeps only the CNI variables and names the field at fault", () => {
  const request = parseRequest(JSON.stringify({ env: { CNI_COMMAND: "ADD", HOME: "/root" }, stdin: "{}", netns: "4:1" }));
  assert.deepEqual(request.env, { CNI_COMMAND: "ADD" });
  assert.throws(() => parseRequest(JSON.stringify({ env: {}, stdin: 1, netns: "4:1" })), /"stdin"/);
  assert.throws(() => parseRequest(JSON.stringify({ env: { CNI_NETNS: 3 }, stdin: "", netns: "4:1" })), /"env.CNI_NETNS"/);
  assert.throws(() => parseRequest(JSON.stringify({ stdin: "", netns: "4:1" })), /"env"/);
  assert.throws(() => parseRequest("[]x"), SyntaxError);
});
