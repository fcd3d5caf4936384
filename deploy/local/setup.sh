#!/usr/bin/env bash
# Installs what a fresh Debian machine lacks for Watchfloor's demo and tests:
# Java 17 and Maven (the local Kafka broker), Prometheus and promtool (alert rules,
# end-to-end alert tests). Uses apt-get when root (or sudo without a password);
# otherwise says what to install. Idempotent and quick when everything is there.
#   deploy/local/setup.sh demo   Java + Maven (Prometheus if it can)
#   deploy/local/setup.sh test   Java + Maven + Prometheus (all required)
set -euo pipefail
purpose="${1:-test}"

need=()
command -v java >/dev/null 2>&1 || need+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || need+=(maven)
if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
    need+=(prometheus)
fi
# amtool checks the example Alertmanager routes in the tests.
command -v amtool >/dev/null 2>&1 || need+=(prometheus-alertmanager)
[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
    apt=(apt-get)
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    apt=(sudo apt-get)
else
    apt=()
fi
if [ ${#apt[@]} -gt 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing ${need[*]} with apt-get" >&2
    export DEBIAN_FRONTEND=noninteractive
    "${apt[@]}" update -qq >/dev/null
    # --no-install-recommends: the prometheus package recommends node exporters we
    # do not use; Java and Maven come without a desktop.
    "${apt[@]}" install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    # Debian starts these services on install where an init system runs; Watchfloor
    # starts its own Prometheus (demo, tests) on other ports or on 9090 itself.
    for svc in prometheus prometheus-alertmanager; do
        service "$svc" stop >/dev/null 2>&1 || true
    done
    exit 0
fi

missing="${need[*]}"
if [ "$purpose" = demo ] && [[ " ${need[*]} " != *" openjdk-17-jre-headless "* ]] \
    && [[ " ${need[*]} " != *" maven "* ]]; then
    echo "setup: Prometheus is not installed, so the demo runs without it (apt-get install prometheus)." >&2
    exit 0
fi
echo "setup: this machine lacks ${missing}; install them (apt-get install ${missing}) or run the compose stack in deploy/compose/ (docs/deploy.md)." >&2
exit 1
