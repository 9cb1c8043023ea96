#!/usr/bin/env bash
# Renders a release's install manifests into OUT_DIR:
#   <service>.yaml             deploy/<service>/release (the base without its placeholder Secrets)
#   <service>-monitoring.yaml  deploy/<service>/monitoring (ServiceMonitor, PrometheusRule, dashboard)
# with the released image (by digest when IMAGE has one) and app.kubernetes.io/version=VERSION on
# every object. Needs kubectl with kustomize v5 ($KUBECTL, else kubectl on PATH).
#
#   deploy/release/render-manifest.sh imagelist 1.2.3 ghcr.io/acme/imagelist@sha256:<hex> dist/
set -euo pipefail

if [ "$#" -ne 4 ]; then
  echo "usage: $0 SERVICE VERSION IMAGE OUT_DIR (IMAGE: name:tag or name@sha256:digest)" >&2
  exit 2
fi
service=$1
version=$2
image=$3
out=$4
deploy=$(cd "$(dirname "$0")/.." && pwd)
kubectl=${KUBECTL:-kubectl}

if [ ! -d "$deploy/$service/release" ]; then
  echo "no deploy/$service/release" >&2
  exit 2
fi
if [[ "$image" == *@sha256:* ]]; then
  image_fields="newName: ${image%@*}
    digest: ${image#*@}"
elif [[ "${image##*/}" == *:* ]]; then
  image_fields="newName: ${image%:*}
    newTag: \"${image##*:}\""
else
  echo "IMAGE $image has neither a tag nor a digest" >&2
  exit 2
fi

# Beside the service's kustomizations: kustomize takes relative resource paths only.
work=$(mktemp -d "$deploy/$service/.render.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"
for part in release monitoring; do
  mkdir "$work/$part"
  cat > "$work/$part/kustomization.yaml" <<KUSTOMIZATION
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - ../../$part
labels:
  - pairs:
      app.kubernetes.io/version: "$version"
    includeTemplates: true
images:
  - name: ghcr.io/OWNER/$service
    $image_fields
KUSTOMIZATION
done
"$kubectl" kustomize "$work/release" > "$out/$service.yaml"
"$kubectl" kustomize "$work/monitoring" > "$out/$service-monitoring.yaml"
echo "$out/$service.yaml $out/$service-monitoring.yaml"
