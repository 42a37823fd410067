#!/usr/bin/env bash
# Installs the Ray wheel from PyPI into a virtualenv cached outside the
# repository, for tests that run a real Ray head (the dashboard job API) and
# for the local environment. A second run only checks that it is there.
# Prints RAY_BIN=<dir with the `ray` command>.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"
cache="${KUBERAY_RS_CACHE:-$HOME/.cache/kuberay-rs}"
venv="$cache/ray-$RAY_VERSION"

die() { echo "install-ray: error: $*" >&2; exit 1; }

if [ ! -x "$venv/bin/ray" ]; then
  command -v python3 >/dev/null 2>&1 || die "no python3 on PATH; install Python 3.10-3.12 and run again."
  echo "install-ray: installing ray[default]==$RAY_VERSION into $venv (first time only)" >&2
  rm -rf "$venv.tmp"
  python3 -m venv "$venv.tmp" || die "python3 -m venv failed; install the venv module (Debian: python3-venv)."
  if ! "$venv.tmp/bin/pip" install --quiet --disable-pip-version-check "ray[default]==$RAY_VERSION" >"$cache/ray-install.log" 2>&1; then
    tail -n 20 "$cache/ray-install.log" >&2
    die "pip could not install ray[default]==$RAY_VERSION from PyPI (full log: $cache/ray-install.log)."
  fi
  rm -rf "$venv"
  mv "$venv.tmp" "$venv"
  # The venv's scripts name their interpreter by absolute path; rewrite it.
  sed -i "1s|$venv.tmp|$venv|" "$venv"/bin/* 2>/dev/null || true
fi
echo "RAY_BIN=$venv/bin"
