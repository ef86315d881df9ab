#!/bin/sh
# `make image`: builds the Dockerfile with Docker where a Docker engine runs, else with podman.
# The base is NODE_IMAGE (default: the official Node image of the Node the project runs on);
# where its registry cannot be reached, a stand-in base is made once (make/image-base.sh) and
# used instead, and this says so.
#
#   image.sh IMAGE NODE_IMAGE STANDIN_BASE WORK_DIR
set -eu
image=$1
base=$2
standin=$3
work=$4

if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
  engine=docker
  build_flags=
elif command -v podman >/dev/null 2>&1; then
  engine=podman
  # runc: crun refuses this kind of host's hybrid cgroups. Host network: the build's npm ci
  # and apt-get reach their registries as this machine does.
  build_flags='--runtime runc --network host'
else
  echo "make image: neither a Docker engine nor podman here (make image-tools installs podman)" >&2
  exit 1
fi

if ! "$engine" image inspect "$base" >/dev/null 2>&1 && ! "$engine" pull -q "$base" >/dev/null 2>&1; then
  if [ "$engine" != podman ]; then
    echo "make image: cannot pull $base; give NODE_IMAGE= a base image your engine can reach" >&2
    exit 1
  fi
  echo "make image: the registry of $base cannot be reached from here; building on a stand-in base, $standin"
  if ! podman image exists "$standin"; then
    ENGINE=podman sh "$(dirname "$0")/image-base.sh" "$work" "$standin"
  fi
  base=$standin
fi

echo "make image: $engine build of $image on $base"
# shellcheck disable=SC2086
"$engine" build $build_flags --build-arg "NODE_IMAGE=$base" -t "$image" .
