#!/bin/sh
# Prints the declaration of server-key-manager for the `plugins` block of SPIRE's server.conf:
# plugin_cmd and plugin_checksum filled in from a built binary, plugin_data from plugin.hcl.
#
# Usage: sh spire-declaration.sh [BINARY]   (default: target/release/server-key-manager)
#
# Run it on the very binary SPIRE will start (after every build, and after copying it to
# its final place), since SPIRE refuses a binary whose SHA-256 differs from plugin_checksum.
set -eu

dir=$(cd "$(dirname "$0")" && pwd)
binary=${1:-$dir/target/release/server-key-manager}
if [ ! -f "$binary" ]; then
    echo "spire-declaration.sh: $binary does not exist; build it with: cargo build --release" >&2
    exit 1
fi
binary=$(cd "$(dirname "$binary")" && pwd)/$(basename "$binary")
if command -v sha256sum >/dev/null 2>&1; then
    checksum=$(sha256sum "$binary" | cut -d ' ' -f 1)
else
    checksum=$(shasum -a 256 "$binary" | cut -d ' ' -f 1)
fi

printf 'plugins {\n    KeyManager "server-key-manager" {\n'
printf '        plugin_cmd = "%s"\n' "$binary"
printf '        plugin_checksum = "%s"\n' "$checksum"
grep -v '^#' "$dir/plugin.hcl" | sed 's/^/        /'
printf '    }\n}\n'
