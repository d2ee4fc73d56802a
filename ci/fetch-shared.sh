#!/usr/bin/env bash
# Puts the data the tests read from `../shared` beside the checkout (data/cifar10,
# data/imagenet-sample and reference/paper.toml) on a CI runner that lacks it: DIR receives the
# tarball at $RESNET_REPRO_SHARED_URL, checked against $RESNET_REPRO_SHARED_SHA256, unless it
# already holds a copy (a restored cache), and `../shared` becomes a link to DIR. A runner that
# has a real `../shared` keeps it.
#
# The ImageNet sample may not be redistributed publicly, so the tarball's address is a repository
# secret its maintainers set, not a public download. Make the
# tarball from a complete shared directory with `tar -C ../shared -czf shared.tar.gz data reference`.
#
# Usage: ci/fetch-shared.sh DIR
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:?usage: ci/fetch-shared.sh DIR}

if [[ -e ../shared && ! -L ../shared ]]; then
  echo "../shared is present: the tests use it"
  exit 0
fi
if [[ ! -f $dir/reference/paper.toml || ! -d $dir/data/imagenet-sample ]]; then
  url=${RESNET_REPRO_SHARED_URL:-}
  sum=${RESNET_REPRO_SHARED_SHA256:-}
  if [[ -z $url || -z $sum ]]; then
    echo "::error::no test data: set the repository secrets RESNET_REPRO_SHARED_URL and" \
      "RESNET_REPRO_SHARED_SHA256 (a .tar.gz holding data/cifar10, data/imagenet-sample and" \
      "reference/paper.toml, see ci/README.md), or run on a runner that has ../shared" >&2
    exit 2
  fi
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  curl --fail --location --retry 3 --silent --show-error -o "$tmp/shared.tar.gz" "$url"
  if ! echo "$sum  $tmp/shared.tar.gz" | sha256sum --check --status; then
    echo "::error::the test data at RESNET_REPRO_SHARED_URL does not match RESNET_REPRO_SHARED_SHA256" >&2
    exit 1
  fi
  rm -rf "$dir" && mkdir -p "$dir"
  tar -C "$dir" -xzf "$tmp/shared.tar.gz"
fi
# Every ImageNet file against the sample's own checksums: a cache can be stale or partial.
(cd "$dir/data/imagenet-sample" && sha256sum --check --quiet SHA256SUMS)
ln -sfn "$(cd "$dir" && pwd)" ../shared
echo "../shared -> $dir"
