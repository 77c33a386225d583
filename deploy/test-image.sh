#!/usr/bin/env bash
# Build the CPU image (deploy/Dockerfile), run it, and check it the way a user would meet it.
#
#   deploy/test-image.sh                 # from anywhere; uses docker if an engine answers,
#                                        # else buildah + podman (installed by oci-base.sh)
#   NO_CACHE=1 deploy/test-image.sh      # cold build
#
# Checks: the build succeeds; the server becomes ready within READY_TIMEOUT on a free port given
# through PORT, with a read-only root filesystem and a tmpfs /tmp (as in deploy/k8s); borehole
# predictions match the borehole formula and thermal_actuator answers [n, 2] finite numbers
# (deploy/smoke.py); /metrics answers; the server process and `exec` run as a non-root UID;
# scikit-learn and scipy are neither importable nor installed; the image's HEALTHCHECK passes
# (podman); a repository mounted at /models replaces the demo models. Prints build time, image
# size and start-to-ready time. Exits non-zero on the first failed check; the trap removes the
# containers (the image is kept: IMAGE=... to name it).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
IMAGE=${IMAGE:-localhost/surrogate-serving:test}
READY_TIMEOUT=${READY_TIMEOUT:-120}
BUILD_TIMEOUT=${BUILD_TIMEOUT:-900}
NAME=surrogate-test-$$
CONTAINERS=()
WORKDIR=$(mktemp -d)

log() { printf '==> %s\n' "$*"; }
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }
now() { date +%s.%N; }
since() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$(now)"; }

cleanup() {
  local status=$?
  for c in "${CONTAINERS[@]}"; do
    if [ "$status" -ne 0 ]; then
      printf -- '--- last log lines of %s ---\n' "$c" >&2
      "$ENGINE" logs --tail 30 "$c" >&2 2>/dev/null || true
    fi
    "$ENGINE" rm -f "$c" >/dev/null 2>&1 || true
  done
  rm -rf "$WORKDIR"
  exit "$status"
}

# --- pick the tools: a Docker engine if one answers, else buildah/podman -----------------------
if command -v docker >/dev/null && timeout 10 docker info >/dev/null 2>&1; then
  ENGINE=docker
  BASE_IMAGE=${BASE_IMAGE:-python:3.12-slim}
  BUILD=(docker build)
else
  ENGINE=podman
  BASE_IMAGE=${BASE_IMAGE:-localhost/python-base:bookworm}
  if ! command -v buildah >/dev/null || ! command -v podman >/dev/null \
      || [ ! -f "${CONTAINERS_CONF:-/var/tmp/oci-tools/containers.conf}" ]; then
    log "buildah/podman missing: running ../shared/tools/oci-base.sh"
    [ -x "$ROOT/../shared/tools/oci-base.sh" ] || [ -f "$ROOT/../shared/tools/oci-base.sh" ] \
      || fail "no Docker engine and no $ROOT/../shared/tools/oci-base.sh to install buildah/podman"
    conf=$(bash "$ROOT/../shared/tools/oci-base.sh" | sed -n 's/^export CONTAINERS_CONF=//p')
    export CONTAINERS_CONF=${conf:-/var/tmp/oci-tools/containers.conf}
  fi
  export CONTAINERS_CONF=${CONTAINERS_CONF:-/var/tmp/oci-tools/containers.conf}
  if [ "$BASE_IMAGE" = localhost/python-base:bookworm ] && ! podman image exists "$BASE_IMAGE"; then
    log "building the local base image $BASE_IMAGE (debootstrap, a few minutes)"
    bash "$ROOT/../shared/tools/oci-base.sh" >/dev/null
  fi
  # --layers keeps one cached layer per instruction (buildah squashes by default); --format
  # docker keeps the HEALTHCHECK, which the OCI image format has no field for.
  BUILD=(buildah bud --layers --isolation chroot --network host --format docker
         -v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro)
fi
trap cleanup EXIT
log "engine: $ENGINE, base image: $BASE_IMAGE"

# --- build -------------------------------------------------------------------------------------
cache=()
[ "${NO_CACHE:-0}" = 1 ] && cache=(--no-cache)
start=$(now)
timeout "$BUILD_TIMEOUT" "${BUILD[@]}" "${cache[@]}" --build-arg "BASE_IMAGE=$BASE_IMAGE" \
  -f deploy/Dockerfile -t "$IMAGE" . >"$WORKDIR/build.log" 2>&1 \
  || { tail -40 "$WORKDIR/build.log" >&2; fail "image build failed (or took over ${BUILD_TIMEOUT} s)"; }
BUILD_SECONDS=$(since "$start")
SIZE_MB=$("$ENGINE" image inspect --format '{{.Size}}' "$IMAGE" \
  | python3 -c "import sys; print(f'{int(sys.stdin.read()) / 1e6:.0f}')")
log "built $IMAGE in ${BUILD_SECONDS} s, ${SIZE_MB} MB"

# --- run ---------------------------------------------------------------------------------------
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# run NAME PORT [extra run options...]: start the image as Kubernetes would (read-only root,
# writable /tmp holding the Prometheus multiprocess directory), listening on PORT.
run() {
  local name=$1 port=$2
  shift 2
  local net=(--network host)
  [ "$ENGINE" = docker ] && net=(-p "127.0.0.1:$port:$port")
  CONTAINERS+=("$name")
  # stderr kept for failures only: podman without systemd logs that it cannot time the
  # HEALTHCHECK (it is run by hand below).
  "$ENGINE" run -d --name "$name" "${net[@]}" --read-only --tmpfs /tmp \
    -e "PORT=$port" -e SURROGATE_WORKERS=2 -e PROMETHEUS_MULTIPROC_DIR=/tmp/metrics \
    "$@" "$IMAGE" >/dev/null 2>"$WORKDIR/run.err" \
    || { cat "$WORKDIR/run.err" >&2; fail "could not start $IMAGE"; }
}

PORT=$(free_port)
start=$(now)
run "$NAME" "$PORT"
python3 -c 'import sys; sys.path.insert(0, "deploy"); import smoke; smoke.wait_ready(*sys.argv[1:2], float(sys.argv[2]))' \
  "http://127.0.0.1:$PORT" "$READY_TIMEOUT"
READY_SECONDS=$(since "$start")
log "ready ${READY_SECONDS} s after the run command"
python3 deploy/smoke.py "http://127.0.0.1:$PORT" --timeout 10 --metrics \
  || fail "smoke checks against the image failed"

# --- what runs inside --------------------------------------------------------------------------
uid=$("$ENGINE" exec "$NAME" id -u)
[ "$uid" != 0 ] || fail "podman/docker exec runs as root"
pid1_uid=$("$ENGINE" exec "$NAME" sh -c "awk '/^Uid:/ {print \$2}' /proc/1/status")
[ "$pid1_uid" != 0 ] || fail "the server process (PID 1) runs as root"
log "ok   non-root: exec UID $uid, server UID $pid1_uid"

if "$ENGINE" exec "$NAME" python -c "import sklearn" >/dev/null 2>&1; then
  fail "scikit-learn is importable in the serving image"
fi
heavy=$("$ENGINE" exec "$NAME" python -m pip list --format=freeze \
  | grep -iE '^(scikit-learn|scipy|onnx|skl2onnx|matplotlib|pandas)==' || true)
[ -z "$heavy" ] || fail "training packages installed in the serving image: $heavy"
log "ok   no scikit-learn, scipy or other training packages in the image"

if [ "$ENGINE" = podman ]; then
  podman healthcheck run "$NAME" >/dev/null || fail "the image's HEALTHCHECK fails"
  log "ok   HEALTHCHECK passes"
fi

# --- a mounted repository replaces the demo models ----------------------------------------------
"$ENGINE" cp "$NAME:/models/thermal_actuator" "$WORKDIR/thermal_actuator"
mkdir -p "$WORKDIR/repo" && mv "$WORKDIR/thermal_actuator" "$WORKDIR/repo/"
chmod -R a+rX "$WORKDIR"
PORT2=$(free_port)
run "$NAME-mount" "$PORT2" -v "$WORKDIR/repo:/models:ro"
python3 - "http://127.0.0.1:$PORT2" "$READY_TIMEOUT" <<'EOF' || fail "the mounted repository did not replace /models"
import sys
sys.path.insert(0, "deploy")
import smoke
base, timeout = sys.argv[1], float(sys.argv[2])
smoke.wait_ready(base, timeout)
print("ok  ", smoke.check_thermal_actuator(base))
status, _ = smoke.request(f"{base}/v2/models/borehole/ready")
assert status == 404, f"borehole should be gone with /models mounted, got HTTP {status}"
EOF
log "ok   a repository mounted at /models replaces the demo models"

printf '\nbuild time: %s s  image size: %s MB  start-to-ready: %s s (%s)\n' \
  "$BUILD_SECONDS" "$SIZE_MB" "$READY_SECONDS" "$IMAGE"
log "all image checks passed"
