#!/usr/bin/env bash
# build.cli_static: the satlab CLI carries gRPC, protobuf and Abseil inside
# (client/cli/CMakeLists.txt says why) and loads no shared copy of them, so
# there is one copy of each library in the process; and it still runs.
set -euo pipefail
cli=$1
needed=$(readelf -d "$cli" | awk '/\(NEEDED\)/ { gsub(/[][]/, "", $NF); print $NF }')
echo "NEEDED: $(echo $needed)"
grep -qx 'libc.so.6' <<<"$needed" || { echo "readelf found no libc.so.6 in $cli" >&2; exit 1; }
if shared=$(grep -E '^lib(grpc|gpr|absl|protobuf|upb|re2|cares|ssl|crypto|z|address_sorting)[._]' <<<"$needed"); then
  echo "$cli loads shared copies of what it links statically: $shared" >&2
  exit 1
fi
"$cli" --help >/dev/null
echo "ok"
