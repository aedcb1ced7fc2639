// Which plugin the podnet executable is, from the name it was run under (argv[0]). Runtimes exec
// a plugin by its full path in CNI_PATH, named after the config's `type`, so the basename is
// the type the runtime asked for; a symbolic link keeps that name in argv[0] as well.
export const IPAM_PLUGIN_NAME = "podnet-ipam";

export function pluginForName(argv0: string): "bridge" | "ipam" {
  const base = argv0.slice(argv0.lastIndexOf("/") + 1);
  return base === IPAM_PLUGIN_NAME ? "ipam" : "bridge";
}
