// A minimal plugin built on runPlugin with the real process io, for skel.test.ts to run
// as a child process under Node and under Bun. ADD answers a fixed result; DEL fails
// with a plain Error so the test can watch the internal-error path end to end.
import { runPlugin } from "../skel.ts";

process.exit(
  await runPlugin(
    {
      add: (ctx) => ({
        cniVersion: "1.1.0",
        interfaces: [{ name: ctx.env.ifname, sandbox: ctx.env.netns }],
        ips: [{ address: "10.22.0.5/24", gateway: "10.22.0.1", interface: 0 }],
      }),
      del: () => {
        throw new Error("fixture DEL always fails");
      },
      check: () => undefined,
      status: () => undefined,
      gc: () => undefined,
    },
    "podnet fixture plugin",
  ),
);
