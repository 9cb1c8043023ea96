#!/usr/bin/env bash
# Prints one version's section of a Keep a Changelog file: the lines under `## [<version>]` up to
# the next `## ` heading, without the heading itself, the link references at the end of the file
# or surrounding blank lines. The release workflows use it as the GitHub Release's notes.
# Exits 1 when the file has no such section or the section is empty: no release without notes.
#
#   deploy/release/changelog-section.sh services/imagelist/CHANGELOG.md 1.2.3
set -euo pipefail

if [ "$#" -ne 2 ]; then
  echo "usage: $0 CHANGELOG.md VERSION" >&2
  exit 2
fi
file=$1
version=$2

section=$(awk -v heading="## [$version]" '
  /^## / {
    if (inside) exit
    if (substr($0, 1, length(heading)) == heading) { inside = 1; next }
  }
  inside && /^\[[^]]+\]: / { next }
  inside { print }
' "$file" | sed -e '/./,$!d' | sed -e ':a' -e '/^\n*$/{$d;N;ba' -e '}')

if [ -z "$section" ]; then
  echo "$file has no section (or an empty one) for version $version: add '## [$version] - YYYY-MM-DD' with its changes" >&2
  exit 1
fi
printf '%s\n' "$section"
