#!/bin/sh
# `make image`: the bedside image with no registry. A minimal Debian bookworm root (mmdebstrap: python3.11 and
# python3.11-venv from Debian) becomes the base by `podman import`, cached under a tag keyed by its recipe; the
# project's image is built on it (deploy/Containerfile), then its size, SBOM and build time land in out/image/.
# This machine's pip settings (its index mirror, CA, constraints) are lent to the build's RUN steps read-only and
# are not in the image. Environment: IMAGE (tag), OUT (report folder), SUITE (Debian suite).
set -eu
cd "$(dirname "$0")/../.."
SUITE=${SUITE:-bookworm}
VERSION=$(python3 -c "import tomllib; print(tomllib.load(open('pyproject.toml', 'rb'))['project']['version'])")
IMAGE=${IMAGE:-localhost/fatty-liver-edge:$VERSION}
OUT=${OUT:-out/image}
# Two bases from Debian: the runtime's holds Python and the C++ runtime the wheels link, unpacked with nothing else
# (no shell, no package manager's scripts run; no iconv modules, which Python never loads); the build's adds the
# Essential set and venv.
RUNTIME_PACKAGES=python3.11,libstdc++6
BUILD_PACKAGES=python3.11,python3.11-venv,libstdc++6
base_tag() { printf '%s' "$SUITE $1 $2 merged-usr nodoc nogconv" | sha256sum | cut -c1-12; }
BASE=localhost/fatty-liver-edge-base:$SUITE-runtime-$(base_tag extract "$RUNTIME_PACKAGES")
BUILD_BASE=localhost/fatty-liver-edge-base:$SUITE-build-$(base_tag essential "$BUILD_PACKAGES")
mkdir -p "$OUT"
started=$(date +%s)

make_base() {  # tag variant packages
    podman image exists "$1" && return 0
    echo "base: mmdebstrap --variant=$2 $SUITE ($3) -> $1"
    tarball=$(mktemp --suffix=.tar)
    mmdebstrap --quiet --variant="$2" --include="$3" --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
        --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*' \
        --dpkgopt='path-exclude=/usr/lib/x86_64-linux-gnu/gconv/*' \
        "$SUITE" "$tarball" >/dev/null
    podman import --quiet --change 'CMD ["/usr/bin/python3.11"]' "$tarball" "$1" >/dev/null
    rm -f "$tarball"
}
make_base "$BASE" extract "$RUNTIME_PACKAGES"
make_base "$BUILD_BASE" essential "$BUILD_PACKAGES"
base_done=$(date +%s)

# The host's pip settings as one file, and the local paths they name, mounted read-only for the build.
pip_conf="$OUT/build-pip.conf"
python3 -m pip config list 2>/dev/null | python3 deploy/image/pip_settings.py "$pip_conf" > "$OUT/build-mounts"
set --
while read -r path; do set -- "$@" --volume "$path:$path:ro"; done < "$OUT/build-mounts"
[ -s "$pip_conf" ] && set -- "$@" --volume "$(realpath "$pip_conf"):/etc/pip.conf:ro"

podman build --quiet --log-level=error --isolation chroot --format docker --layers "$@" \
    --build-arg BASE="$BASE" --build-arg BUILD_BASE="$BUILD_BASE" --build-arg VERSION="$VERSION" \
    --build-arg REVISION="$(git rev-parse HEAD 2>/dev/null || echo unknown)" \
    --build-arg CREATED="$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
    -f deploy/Containerfile -t "$IMAGE" . >/dev/null
done_at=$(date +%s)
# What this build superseded (the tag's last image, the build stage's layers) is unnamed now: removed, so that
# repeated builds do not fill the disk. Only the project's own images are touched; bases are tagged and stay.
podman image prune --force --filter label=org.opencontainers.image.title=fatty-liver-edge >/dev/null

# The SBOM beside the image, and what the image weighs.
mount=$(podman image mount "$IMAGE")
cp "$mount/usr/share/doc/fatty-liver-edge/sbom.cdx.json" "$OUT/sbom.cdx.json"
podman image unmount "$IMAGE" >/dev/null
size=$(podman image inspect --format '{{.Size}}' "$IMAGE")
printf '{"image": "%s", "base": "%s", "size_bytes": %s, "base_seconds": %s, "build_seconds": %s, "total_seconds": %s}\n' \
    "$IMAGE" "$BASE" "$size" $((base_done - started)) $((done_at - base_done)) $((done_at - started)) > "$OUT/image.json"
echo "built $IMAGE: $((size / 1000000)) MB in $((done_at - started)) s (base $((base_done - started)) s); SBOM $OUT/sbom.cdx.json"
