#!/usr/bin/env bash
# Regenerates the README's configuration reference from the binary's flags.
set -euo pipefail
cd "$(dirname "$0")/.."
table=$(go run ./cmd/hotswap flags-doc)
python3 - "$table" <<'PY'
import sys
table = sys.argv[1] + "\n"
s = open("README.md").read()
b, e = "<!-- flags:begin -->\n", "<!-- flags:end -->"
i, j = s.index(b), s.index(e)
open("README.md", "w").write(s[: i + len(b)] + table + s[j:])
PY
