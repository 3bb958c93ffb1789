#!/usr/bin/env bash
# Every satlab-server flag (as `satlab-server --helpon=main` lists them) is
# documented in docs/configuration.md with its SATLAB_* variable and default.
# Usage: tests/lang/docs_check.sh PATH_TO_satlab-server
set -euo pipefail
server=${1:?usage: $0 PATH_TO_satlab-server}
doc=$(cd "$(dirname "$0")/../.." && pwd)/docs/configuration.md
help=$("$server" --helpon=main 2>&1 || true)
mapfile -t flags < <(grep -oE '^    --[a-z0-9_]+' <<<"$help" | sed 's/^ *--//')
((${#flags[@]} > 0)) || { echo "docs_check: no flags in '$server --helpon=main' output:"; echo "$help"; exit 1; }
passed=0 failed=0
for f in "${flags[@]}"; do
  env="SATLAB_${f^^}"
  # The default as --help prints it: `--name (...); default: VALUE;`
  default=$(tr '\n' ' ' <<<"$help" | sed -E 's/ +/ /g' | grep -oE -- "--$f \(.*" | sed -E 's/\); default: ("?)([^";]*)\1;.*/\n\2/' | sed -n 2p || true)
  row=$(grep -F -- "\`--$f\`" "$doc" || true)
  if [[ -z $row ]]; then
    echo "FAIL  --$f is not documented in docs/configuration.md"; failed=$((failed + 1))
  elif ! grep -qF -- "$env" <<<"$row"; then
    echo "FAIL  --$f: row does not name $env"; failed=$((failed + 1))
  elif [[ -n $default ]] && ! grep -qF -- "\`$default\`" <<<"$row"; then
    echo "FAIL  --$f: row does not give the default \`$default\`"; failed=$((failed + 1))
  else
    echo "ok    --$f ($env, default ${default:-?})"; passed=$((passed + 1))
  fi
done
echo "$passed passed, $failed failed"
((failed == 0))
