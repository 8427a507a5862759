# shellcheck shell=bash
# Makes sure a Docker engine answers. Sourced by bootstrap.sh.

docker_answers() { timeout 10 docker info >/dev/null 2>&1; }

ensure_docker_engine() {
  if docker_answers; then
    return 0
  fi
  # Debian's engine 20.10 plus its compose v1.29 (reads compose-spec files).
  apt_install docker.io docker-compose iptables
  if ! docker_answers; then
    need_root "starting dockerd"
    mkdir -p "$NONSTOP_CACHE"
    log "starting dockerd (log: $NONSTOP_CACHE/dockerd.log)"
    # Userland proxy off: published ports reach containers through DNAT with the client's
    # real source address, which the knock sniffer and the SSH allow-list depend on.
    # NONSTOP_DOCKERD_ARGS and DOCKER_HOST let scripts/check-fresh-bootstrap.sh start an
    # isolated engine of its own the same way.
    local args=(--userland-proxy=false)
    [ -n "${DOCKER_HOST:-}" ] && args+=(-H "$DOCKER_HOST")
    # shellcheck disable=SC2206 # word splitting of the extra arguments is intended
    [ -n "${NONSTOP_DOCKERD_ARGS:-}" ] && args+=($NONSTOP_DOCKERD_ARGS)
    # Its own session: the engine must outlive the job that started it (a test run, a CI
    # phase). In the caller's process group it died with that group, taking every
    # container of every later run with it.
    setsid nohup dockerd "${args[@]}" >>"$NONSTOP_CACHE/dockerd.log" 2>&1 </dev/null &
    for _ in $(seq 1 60); do
      docker_answers && break
      sleep 1
    done
    docker_answers || die "dockerd did not answer within 60 s; see $NONSTOP_CACHE/dockerd.log"
  fi
  log "docker engine $(docker version --format '{{.Server.Version}}') answers"
}
