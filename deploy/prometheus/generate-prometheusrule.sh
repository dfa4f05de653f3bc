#!/bin/sh
# Regenerate rtprobe-prometheusrule.yaml (prometheus-operator) from rtprobe-rules.yaml, the one
# source of the rules. tests/deploy/rules.rs fails when the two differ.
set -eu
cd "$(dirname "$0")"
{
  cat <<'HEADER'
# Generated from rtprobe-rules.yaml by generate-prometheusrule.sh: edit that file, not this one.
# The `release` label must match your Prometheus's ruleSelector (kube-prometheus-stack: the
# Helm release name); deploy/kubernetes/base/kustomization.yaml sets it for every object.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: rtprobe-slo
  labels:
    app.kubernetes.io/name: rtprobe
    app.kubernetes.io/component: slo-rules
    release: kube-prometheus-stack
spec:
HEADER
  grep -v '^#' rtprobe-rules.yaml | sed 's/^/  /'
} > rtprobe-prometheusrule.yaml
