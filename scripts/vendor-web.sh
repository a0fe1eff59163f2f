#!/usr/bin/env bash
# Fetch the dashboard's front-end files once from the npm registry (`npm pack`, no node at run time)
# into app/web/static/vendor/, with their licences and a manifest of versions and tarball checksums.
# Run it only to change a version; the files are committed.
set -euo pipefail
cd "$(dirname "$0")/.."
vendor=app/web/static/vendor
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# name@version  destination  files to keep (relative to the package)
packages=(
  "htmx.org@2.0.4 htmx dist/htmx.min.js"
  "htmx-ext-sse@2.2.2 htmx-ext-sse sse.js"
  "uplot@1.6.31 uplot dist/uPlot.iife.min.js dist/uPlot.min.css"
  "swagger-ui-dist@5.18.2 swagger-ui swagger-ui-bundle.js swagger-ui.css favicon-32x32.png"
  "redoc@2.4.0 redoc bundles/redoc.standalone.js"
)

rm -rf "$vendor" && mkdir -p "$vendor"
echo '{' > "$vendor/manifest.json"
first=1
for entry in "${packages[@]}"; do
  read -r spec dest files <<<"$entry"
  tarball=$(cd "$work" && npm pack --silent "$spec")
  mkdir -p "$work/$dest" "$vendor/$dest"
  tar xzf "$work/$tarball" -C "$work/$dest"
  for file in $files; do cp "$work/$dest/package/$file" "$vendor/$dest/"; done
  cp "$work/$dest/package/LICENSE" "$vendor/$dest/LICENSE"
  [ -f "$work/$dest/package/NOTICE" ] && cp "$work/$dest/package/NOTICE" "$vendor/$dest/NOTICE"
  sha=$(sha256sum "$work/$tarball" | cut -d' ' -f1)
  # package.json's licence, or the LICENSE file's first line when the package does not declare one
  licence=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1])).get('license') or open(sys.argv[2]).readline().strip())" \
    "$work/$dest/package/package.json" "$work/$dest/package/LICENSE")
  [ $first = 1 ] || echo ',' >> "$vendor/manifest.json"
  first=0
  printf '  "%s": {"package": "%s", "version": "%s", "license": "%s", "tarball_sha256": "%s", "files": [%s]}' \
    "$dest" "${spec%@*}" "${spec##*@}" "$licence" "$sha" \
    "$(for f in $files; do printf '"%s",' "$(basename "$f")"; done | sed 's/,$//')" >> "$vendor/manifest.json"
done
printf '\n}\n' >> "$vendor/manifest.json"
# Redoc's footer shows a logo from its CDN (hidden when it fails to load): point it at an empty data: URL
# so an offline page asks nothing of the network. The tarball checksum above is of the package as published.
sed -i 's#https://cdn.redoc.ly/redoc/logo-mini.svg#data:,#' "$vendor/redoc/redoc.standalone.js"
echo "vendored into $vendor:" && cat "$vendor/manifest.json"
