#!/usr/bin/env bash
# The suite-wide leak check: after the whole test suite ran with
# SB_TEST_ARTIFACTS set, no token or session ID that the tests saw may
# appear in any application log, audit file or error page they produced.
set -euo pipefail
dir="${1:?usage: check-leaks.sh ARTIFACTS_DIR}"
secrets="$dir/secrets.txt"
if [ ! -s "$secrets" ]; then
  echo "leak check: no secrets were recorded; the check saw nothing" >&2
  exit 1
fi
unique="$dir/secrets.unique"
sort -u "$secrets" > "$unique"
mapfile -t files < <(find "$dir" -type f \( -name 'app-log-*.jsonl' -o -name 'error-pages-*.txt' -o -name 'audit.log*' \) | sort)
if [ "${#files[@]}" -eq 0 ]; then
  echo "leak check: no logs, audit files or error pages were produced" >&2
  exit 1
fi
if grep -F -q -f "$unique" "${files[@]}"; then
  echo "leak check: a token or session ID was found in:" >&2
  grep -F -l -f "$unique" "${files[@]}" >&2
  exit 1
fi
echo "leak check: $(wc -l < "$unique") tokens and session IDs, ${#files[@]} files (logs, audit trails, error pages): none found"
