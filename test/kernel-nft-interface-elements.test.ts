// Removing one interface's set elements over nf_tables netlink (src/kernel/nft/interface-elements.ts)
// against the real kernel, in a namespace this test creates: a bridge-family table shaped like the
// plugin's anti-spoofing table, with interface names that are prefixes of each other.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { runNft } from "../src/kernel/nft.ts";
import { listChainNames, removeInterfaceElements } from "../src/kernel/nft/interface-elements.ts";
import { Netns } from "./helpers/netns.ts";

const TABLE = "ifelemtest";
const SETS = ["ports", "allowed4", "allowed6"];

describe("removeInterfaceElements", () => {
  let ns: Netns;
  before(() => {
    ns = Netns.create("ie");
  });
  after(() => ns.delete());

  const load = (): void => {
    runNft(
      `add table bridge ${TABLE}\n` +
        `flush table bridge ${TABLE}\n` +
        `add set bridge ${TABLE} ports { type ifname; }\n` +
        `add set bridge ${TABLE} allowed4 { type ifname . ipv4_addr; }\n` +
        `add set bridge ${TABLE} allowed6 { type ifname . ipv6_addr; }\n` +
        `add element bridge ${TABLE} ports { "pnab", "pnabc", "pnx" }\n` +
        `add element bridge ${TABLE} allowed4 { "pnab" . 10.0.0.1, "pnabc" . 10.0.0.2, "pnabc" . 10.0.0.3, "pnx" . 10.0.0.4 }\n` +
        `add element bridge ${TABLE} allowed6 { "pnab" . fd00::1, "pnabc" . fd00::2 }\n`,
      ns.path,
    );
  };
  /** The set's elements, sorted (a hash set lists them in no fixed order). */
  const elements = (set: string): string => {
    const listed = ns.exec("nft", "list", "set", "bridge", TABLE, set);
    const inside = listed.match(/elements = \{([^}]*)\}/)?.[1] ?? "";
    return inside.split(",").map((e) => e.trim()).filter((e) => e !== "").sort().join(", ");
  };

  it("deletes exactly the keys that start with the chosen name, and nothing the second time", () => {
    load();
    assert.equal(removeInterfaceElements("bridge", TABLE, SETS, (name) => name === "pnab", ns.path), 3);
    assert.equal(elements("ports"), `"pnabc", "pnx"`);
    assert.equal(elements("allowed4"), `"pnabc" . 10.0.0.2, "pnabc" . 10.0.0.3, "pnx" . 10.0.0.4`);
    assert.equal(elements("allowed6"), `"pnabc" . fd00::2`);
    assert.equal(removeInterfaceElements("bridge", TABLE, SETS, (name) => name === "pnab", ns.path), 0);
    assert.equal(removeInterfaceElements("bridge", TABLE, SETS, (name) => name !== "pnx", ns.path), 4);
    assert.equal(elements("ports"), `"pnx"`);
    assert.equal(elements("allowed4"), `"pnx" . 10.0.0.4`);
    assert.equal(elements("allowed6"), "");
  });

  it("treats a missing table or set as holding nothing", () => {
    load();
    assert.equal(removeInterfaceElements("bridge", "nosuchtable", SETS, () => true, ns.path), 0);
    assert.equal(removeInterfaceElements("bridge", TABLE, ["nosuchset", "ports"], (name) => name === "pnx", ns.path), 1);
    assert.equal(elements("ports"), `"pnab", "pnabc"`);
  });

  it("lists a table's chains, and none of a missing table", () => {
    runNft(`add chain bridge ${TABLE} pod_pnab\nadd table bridge ${TABLE}other\nadd chain bridge ${TABLE}other elsewhere\n`, ns.path);
    assert.deepEqual(listChainNames("bridge", TABLE, ns.path), ["pod_pnab"]);
    assert.deepEqual(listChainNames("bridge", "nosuchtable", ns.path), []);
  });
});
