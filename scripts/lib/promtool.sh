# shellcheck shell=bash
# promtool, Prometheus's rule checker, for the suite's `promtool check rules` and `promtool
# test rules` over deploy/monitoring/rules/ (test/security/monitoring-rules.test.ts). It
# comes from Debian's prometheus package, the same version the monitoring image runs
# (deploy/monitoring/Dockerfile.prometheus), but only the binary is taken out of the .deb:
# installing the package would start a Prometheus server on this machine (its init script
# runs on install and listens on every address). Cached; a second run only checks.
# Sourced, after common.sh.

NONSTOP_PROMTOOL="$NONSTOP_CACHE/prometheus/promtool"

ensure_promtool() {
  [ -x "$NONSTOP_PROMTOOL" ] && return 0
  need_root "fetching Debian's prometheus package"
  local dir deb
  dir=$(mktemp -d)
  log "fetching promtool (Debian package prometheus)"
  if ! (cd "$dir" && apt-get -o Acquire::Retries=5 download prometheus >>"$NONSTOP_CACHE/apt.log" 2>&1); then
    # A machine whose package lists were never fetched knows no prometheus yet.
    apt-get -o Acquire::Retries=5 update -qq >>"$NONSTOP_CACHE/apt.log" 2>&1 || die "apt-get update failed; see $NONSTOP_CACHE/apt.log"
    (cd "$dir" && apt-get -o Acquire::Retries=5 download prometheus >>"$NONSTOP_CACHE/apt.log" 2>&1) \
      || die "apt-get download prometheus failed; see $NONSTOP_CACHE/apt.log"
  fi
  deb=("$dir"/prometheus_*.deb)
  dpkg-deb -x "${deb[0]}" "$dir/root" || die "unpacking ${deb[0]} failed"
  mkdir -p "$(dirname "$NONSTOP_PROMTOOL")"
  install -m 0755 "$dir/root/usr/bin/promtool" "$NONSTOP_PROMTOOL.tmp"
  mv "$NONSTOP_PROMTOOL.tmp" "$NONSTOP_PROMTOOL"
  rm -rf "$dir"
  log "promtool: $("$NONSTOP_PROMTOOL" --version 2>&1 | sed -n 1p)"
}
