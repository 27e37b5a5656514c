#!/usr/bin/env bash
# `make images`: the five images of docker/ built with podman on this machine.
#
# No Docker engine and no container registry here, so: podman (installed with
# apt-get when missing), a local Debian base image made from Debian's package
# registry with mmdebstrap (kept once built), and the Dockerfiles' public base
# images swapped for it by build argument. During the builds only, the host's
# CA bundle is bind-mounted read-only (HTTPS to the package registry goes
# through a CA only that bundle trusts) and so is the local wheel directory
# that holds the CPU build of torch. Nothing of the host is copied into an
# image. Layers are cached: a rebuild with no change takes seconds.
#
#   scripts/build_images.sh            # all images
#   scripts/build_images.sh concept    # some of them (names as in IMAGES below)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PODMAN=scripts/podman
TAG=${XAIMESH_IMAGE_TAG:-0.1.0}
BASE_IMAGE=${XAIMESH_BASE_IMAGE:-localhost/xaimesh/debian-python:bookworm}
# Stand-in for the CUDA base (pytorch/pytorch): the local base plus the CPU
# build of torch. It lets the CUDA Dockerfile build end to end here; the image
# it gives is NOT a CUDA image (docs/deploy.md).
TORCH_BASE_IMAGE=localhost/xaimesh/debian-python-torch:bookworm
TORCH_VERSION=2.13.0
CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
# runc: `podman kube play` needs pods with cgroups, which crun refuses here.
PACKAGES=(podman buildah crun runc fuse-overlayfs mmdebstrap slirp4netns catatonit uidmap)

# name -> Dockerfile and tag (the tags the Kubernetes overlays use)
declare -A DOCKERFILE=(
  [model-server-cpu]=model-server-cpu.Dockerfile
  [attribution]=attribution.Dockerfile
  [concept]=concept.Dockerfile
  [labeling]=labeling.Dockerfile
  [model-server-cuda]=model-server.Dockerfile
)
declare -A IMAGE=(
  [model-server-cpu]=xaimesh/model-server:$TAG-cpu
  [attribution]=xaimesh/attribution-service:$TAG
  [concept]=xaimesh/concept-service:$TAG
  [labeling]=xaimesh/labeling-service:$TAG
  [model-server-cuda]=xaimesh/model-server:$TAG-cuda
)
ORDER=(attribution labeling concept model-server-cpu model-server-cuda)

log() { printf '[images %s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }

ensure_packages() {
  local missing=()
  for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    local sudo=()
    [ "$(id -u)" = 0 ] || sudo=(sudo)
    "${sudo[@]}" apt-get update -q
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
  fi
}

# The local wheel directory with the CPU build of torch, from pip's own
# configuration (find-links), if any.
torch_wheel_dir() {
  local dirs
  dirs=$({ pip config get global.find-links 2>/dev/null || true; echo "${PIP_FIND_LINKS:-}"; } | tr ' ' '\n')
  for dir in $dirs; do
    dir=${dir#file://}
    if compgen -G "$dir/torch-$TORCH_VERSION+cpu-*.whl" >/dev/null; then echo "$dir"; return; fi
  done
}

build_base() {
  if $PODMAN image exists "$BASE_IMAGE"; then
    log "base $BASE_IMAGE: present"
    return
  fi
  local started=$SECONDS tmp sources=http://deb.debian.org/debian
  [ -f /etc/apt/sources.list.d/debian.sources ] && sources=/etc/apt/sources.list.d/debian.sources
  tmp=$(mktemp -d)
  log "base $BASE_IMAGE: mmdebstrap bookworm from $sources"
  # python-is-python3: the Dockerfiles call `python`, as in the python:*-slim
  # images. /etc/pip.conf points pip at the system CA bundle (Debian's pip
  # otherwise uses its own copy of certifi); during the builds that path is
  # the host bundle, bind-mounted.
  mmdebstrap --variant=minbase --include=python3,python3-venv,python-is-python3,ca-certificates \
    --aptopt='Acquire::Check-Valid-Until "false"' \
    --customize-hook='printf "[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n" > "$1/etc/pip.conf"' \
    bookworm "$tmp/rootfs.tar" "$sources"
  $PODMAN import --change 'CMD ["/bin/bash"]' "$tmp/rootfs.tar" "$BASE_IMAGE"
  rm -rf "$tmp"
  log "base $BASE_IMAGE: built in $((SECONDS - started)) s"
}

# build_image TAG DOCKERFILE ARGS...
build_image() {
  local tag=$1 file=$2; shift 2
  local started=$SECONDS
  log "building $tag from $file"
  $PODMAN build --format docker --isolation chroot --network host --layers \
    -v "$CA_BUNDLE:$CA_BUNDLE:ro" "$@" -t "$tag" -f "$file" .
  log "$tag: $((SECONDS - started)) s"
}

main() {
  local names=("$@")
  ((${#names[@]})) || names=("${ORDER[@]}")
  for name in "${names[@]}"; do
    [ -n "${DOCKERFILE[$name]:-}" ] || { echo "unknown image $name (one of ${ORDER[*]})" >&2; exit 2; }
  done
  ensure_packages
  build_base
  local torch_args=() wheels
  wheels=$(torch_wheel_dir)
  if [ -n "$wheels" ]; then
    # pip prefers the local 2.13.0+cpu wheel over PyPI's 2.13.0 (CUDA) one.
    torch_args=(-v "$wheels:/wheels:ro" --build-arg PIP_FIND_LINKS=/wheels
                --build-arg TORCH_INDEX_URL=https://pypi.org/simple)
  fi
  for name in "${names[@]}"; do
    local args=(--build-arg "PYTHON_IMAGE=$BASE_IMAGE")
    case $name in
      concept|model-server-cpu) args+=("${torch_args[@]}") ;;
      model-server-cuda)
        build_image "$TORCH_BASE_IMAGE" docker/podman/torch-base.Containerfile \
          --build-arg "PYTHON_IMAGE=$BASE_IMAGE" "${torch_args[@]}"
        args=(--build-arg "CUDA_BASE_IMAGE=$TORCH_BASE_IMAGE" --build-arg REQUIRE_CUDA_TORCH=0) ;;
    esac
    build_image "${IMAGE[$name]}" "docker/${DOCKERFILE[$name]}" "${args[@]}"
  done
  log "sizes:"
  for name in "${names[@]}"; do
    $PODMAN image inspect --format "{{.Size}} ${IMAGE[$name]}" "${IMAGE[$name]}" \
      | awk '{printf "  %-40s %6.0f MB\n", $2, $1 / 1e6}'
  done
}

main "$@"
