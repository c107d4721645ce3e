#!/usr/bin/env bash
# Builds ferrolb's two OCI images with buildah (Debian's), without a container engine or a
# registry, the way the Dockerfile's stages do: static musl binaries (the builder stage's cargo
# command, run here), each on an empty base with what distroless/static's "nonroot" variant holds
# and ferrolb uses (a passwd/group entry for user 65532, /tmp), user 65532, the same entrypoint
# and ports. The Dockerfile itself needs its base images from a registry, which these machines
# cannot reach; this script is its stand-in here.
#
#   scripts/build-images.sh            build localhost/ferrolb/{controller,speaker}:VERSION, save
#                                      them as OCI archives in target/images/, and start each
#                                      binary from its image's filesystem (chroot) as a check
#   scripts/build-images.sh --mount    also leave both images mounted and print a directory with
#                                      links to their binaries (FERROLB_BIN_DIR for the tests)
#
# Needs root, buildah, musl-tools and the Rust target x86_64-unknown-linux-musl (installed here
# when missing). Storage: buildah's vfs driver, which needs no kernel overlay support.
set -euo pipefail
cd "$(dirname "$0")/.."
target=x86_64-unknown-linux-musl
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
bah() { buildah --storage-driver vfs "$@"; }
log() { echo "build-images: $*" >&2; }

missing=()
command -v buildah >/dev/null || missing+=(buildah)
command -v musl-gcc >/dev/null || missing+=(musl-tools)
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
rustup target list --installed | grep -qx "$target" || rustup target add "$target"

log "building static binaries (cargo build --release --target $target)"
cargo build --release --locked --target "$target" \
    -p ferrolb-controller --bin ferrolb-controller \
    -p ferrolb-speaker --bin ferrolb-speaker

# The files distroless/static:nonroot provides that matter to a static binary running as 65532.
base=$(mktemp -d)
trap 'rm -rf "$base"' EXIT
mkdir -p "$base/etc" "$base/tmp"
chmod 1777 "$base/tmp"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$base/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$base/etc/group"

mkdir -p target/images
for component in controller speaker; do
    bin=ferrolb-$component
    image=localhost/ferrolb/$component:$version
    log "assembling $image"
    ctr=$(bah from scratch)
    bah copy "$ctr" "$base/etc" /etc >/dev/null
    bah copy "$ctr" "$base/tmp" /tmp >/dev/null
    bah copy --chmod 0755 "$ctr" "target/$target/release/$bin" "/usr/local/bin/$bin" >/dev/null
    if [ "$component" = controller ]; then ports=(--port 7472/tcp); else ports=(--port 7473/tcp --port 7946/udp); fi
    bah config --user 65532:65532 --entrypoint "[\"/usr/local/bin/$bin\"]" "${ports[@]}" \
        --label org.opencontainers.image.version="$version" "$ctr"
    bah commit --quiet --format oci "$ctr" "$image" >/dev/null
    bah rm "$ctr" >/dev/null
    rm -f "target/images/$component.tar"
    bah push --quiet "$image" "oci-archive:target/images/$component.tar:$image" >/dev/null
    # Start the binary from the image's own filesystem: chroot into it, as the image's user.
    ctr=$(bah from "$image")
    root=$(bah mount "$ctr")
    out=$(chroot --userspec=65532:65532 "$root" "/usr/local/bin/$bin" --version)
    log "$image ($(du -h "target/images/$component.tar" | cut -f1)): chroot into the image runs '$out'"
    if [ "${1:-}" = "--mount" ]; then
        mkdir -p target/images/bin
        ln -sf "$root/usr/local/bin/$bin" "target/images/bin/$bin"
    else
        bah umount "$ctr" >/dev/null
        bah rm "$ctr" >/dev/null
    fi
done
if [ "${1:-}" = "--mount" ]; then
    echo "$(pwd)/target/images/bin"
fi
