#!/usr/bin/env bash
# Installs what a fresh Debian machine lacks for Watchfloor's demo and tests:
# Java 17 and Maven (the local Kafka broker), a Java compiler (tests: the benchmark's
# Kafka Streams peer is built from source), Prometheus and promtool (alert rules,
# end-to-end alert tests), kcat (a librdkafka producer the tests publish with), chromium
# and a CJK font (tests: the command-centre page in a real browser). Uses apt-get when
# root (or sudo without a password); otherwise says what to install. Idempotent and quick
# when everything is there.
#   deploy/local/setup.sh demo   Java + Maven (Prometheus if it can)
#   deploy/local/setup.sh test   JDK + Maven + Prometheus + kcat + chromium (all required)
set -euo pipefail
purpose="${1:-test}"

need=()
command -v java >/dev/null 2>&1 || need+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || need+=(maven)
# tests/benchmarks/kstreams (run by the tiny benchmark test) is compiled with Maven.
if [ "$purpose" = test ] && ! command -v javac >/dev/null 2>&1; then
    need+=(openjdk-17-jdk-headless)
fi
if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
    need+=(prometheus)
fi
# amtool checks the example Alertmanager routes in the tests.
command -v amtool >/dev/null 2>&1 || need+=(prometheus-alertmanager)
# kcat publishes half of the lifecycle crash test's records, as a librdkafka client would.
# The command-centre page is tested in a real browser (Playwright drives Debian's
# chromium by path); Chinese labels need a CJK font to render and print.
if [ "$purpose" = test ]; then
    command -v kcat >/dev/null 2>&1 || need+=(kcat)
    command -v chromium >/dev/null 2>&1 || need+=(chromium)
    fc-list 2>/dev/null | grep -qi "Noto Sans CJK" || need+=(fonts-noto-cjk)
fi

# The compose file is checked by the real Compose parser (no engine needed). Debian has
# only Compose v1, so v2 is built once from the Go module proxy (about 4 minutes).
build_compose() {
    [ "$purpose" = test ] || return 0
    if docker compose version >/dev/null 2>&1; then
        return 0
    fi
    if docker-compose version 2>/dev/null | grep -q "v[2-9]"; then
        return 0
    fi
    if ! command -v go >/dev/null 2>&1; then
        echo "setup: Docker Compose v2 is missing and Go is not there to build it; the compose test will say so." >&2
        return 0
    fi
    local version=v5.6.0 dest=/usr/local/bin/docker-compose dir
    [ -w "$(dirname "$dest")" ] || dest="$HOME/.local/bin/docker-compose"
    mkdir -p "$(dirname "$dest")"
    echo "setup: building Docker Compose $version from the Go module proxy into $dest" >&2
    dir="$(go mod download -json "github.com/docker/compose/v5@$version" \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
    (cd "$dir" && GOFLAGS=-mod=mod go build -trimpath \
        -ldflags "-X github.com/docker/compose/v5/internal.Version=$version" -o "$dest" ./cmd) \
        || echo "setup: building Docker Compose failed; the compose test will say so." >&2
}
build_compose

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
