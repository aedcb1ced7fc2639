import assert from "node:assert/strict";
import { test } from "node:test";
import { pluginForName } from "./dispatch.ts";

test("the executable answers as the IPAM plugin only under the name podnet-ipam", () => {
  assert.equal(pluginForName("/opt/cni/bin/podnet-ipam"), "ipam");
  assert.equal(pluginForName("podnet-ipam"), "ipam");
  assert.equal(pluginForName("/opt/cni/bin/podnet"), "bridge");
  assert.equal(pluginForName("podnet"), "bridge");
  assert.equal(pluginForName("/opt/cni/bin/podnet-ipam.old"), "bridge");
  assert.equal(pluginForName("/podnet-ipam/podnet"), "bridge");
  assert.equal(pluginForName(""), "bridge");
});
