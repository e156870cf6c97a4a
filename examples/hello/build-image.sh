#!/usr/bin/env bash
# Builds the example image `flotilla.local/examples/hello:1` (busybox serving a page on
# port 8080) as an OCI archive with buildah, for `flotilla image import`. No registry needed.
#
# Usage: examples/hello/build-image.sh [ARCHIVE]   (default: hello.tar)
set -euo pipefail
archive="${1:-hello.tar}"
for command in buildah busybox; do
    command -v "$command" >/dev/null || { echo "needs $command: scripts/install-deps runtime installs it" >&2; exit 1; }
done
root="$(mktemp -d)"
container=""
trap 'rm -rf "$root"; [[ -z "$container" ]] || buildah rm "$container" >/dev/null' EXIT
mkdir -p "$root/bin" "$root/www" "$root/tmp"
cp "$(command -v busybox)" "$root/bin/busybox"
for applet in sh httpd hostname cat echo sleep ls nslookup wget; do ln -s busybox "$root/bin/$applet"; done
echo "hello from Flotilla" > "$root/www/index.html"
container="$(buildah from scratch)"
buildah copy "$container" "$root" / >/dev/null
buildah config --port 8080 --cmd '["/bin/httpd", "-f", "-p", "8080", "-h", "/www"]' "$container"
buildah commit --quiet "$container" "oci-archive:$archive:flotilla.local/examples/hello:1" >/dev/null
echo "built $archive (flotilla.local/examples/hello:1); load it with: flotilla image import $archive"
