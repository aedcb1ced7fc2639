import assert from "node:assert/strict";
import { test } from "node:test";
import { encodeReply, encodeRequest, parseReply, parseRequest } from "./service-protocol.ts";

const bytes = (text: string): Uint8Array => new TextEncoder().encode(text);

test("only a complete reply counts; anything cut short means do the work locally", () => {
  const whole = encodeReply({ exitCode: 0, stdout: "{\"ips\":[]}\n", stderr: "warn é\n" });
  assert.deepEqual(parseReply(whole), { exitCode: 0, stdout: "{\"ips\":[]}\n", stderr: "warn é\n" });
  for (let cut = 0; cut < whole.length; cut++) assert.equal(parseReply(whole.subarray(0, cut)), undefined, `cut at ${cut}`);
  assert.equal(parseReply(bytes("exit 0 2 0\n{}x")), undefined, "bytes after the announced lengths");
  assert.deepEqual(parseReply(encodeReply({ local: true, reason: "other\nnetns" })), { local: true, reason: "other netns" });
  assert.equal(parseReply(bytes("exit 1.5 0 0\n")), undefined);
  assert.equal(parseReply(bytes("exit x 0 0\n")), undefined);
  assert.equal(parseReply(bytes("")), undefined);
});

test("a request round-trips, is incomplete until its last stdin byte, and keeps only the CNI variables", () => {
  const sent = { env: { CNI_COMMAND: "ADD", CNI_ARGS: "A=b=c;D=e" }, stdin: '{"name":"né"}', netns: "4:4026531840" };
  const whole = encodeRequest(sent);
  assert.deepEqual(parseRequest(whole), sent);
  for (let cut = 0; cut < whole.length; cut++) assert.equal(parseRequest(whole.subarray(0, cut)), undefined, `cut at ${cut}`);
  assert.deepEqual(parseRequest(encodeRequest({ ...sent, env: { CNI_COMMAND: "DEL", HOME: "/root" } }))?.env, { CNI_COMMAND: "DEL" });
});

test("a malformed request names the field at fault", () => {
  assert.throws(() => parseRequest(bytes("hello\n")), /does not start with "podnet-cni 1"/);
  assert.throws(() => parseRequest(bytes("podnet-cni 1\nnetns x\n")), /"netns"/);
  assert.throws(() => parseRequest(bytes("podnet-cni 1\nstdin 0\n")), /"netns" is missing/);
  assert.throws(() => parseRequest(bytes("podnet-cni 1\nnetns 1:2\nenv novalue\n")), /"env"/);
  assert.throws(() => parseRequest(bytes("podnet-cni 1\nnetns 1:2\nstdin -1\n")), /"stdin"/);
  assert.throws(() => parseRequest(bytes("podnet-cni 1\nnetns 1:2\nstdin 99999999999\n")), /"stdin"/);
  assert.throws(() => parseRequest(bytes("podnet-cni 1\nnetns 1:2\nstdin 1\nab")), /after its stdin/);
  assert.throws(() => parseRequest(bytes("podnet-cni 1\nnetns 1:2\nwhat 1\n")), /unknown field "what"/);
});
