#!/usr/bin/env bash
# build.sh builds the offline backend images used by the harness's container
# provider on machines whose Docker engine cannot pull (see README.md):
#
#   prism-offline/redis:7  Debian's redis-server and its libraries, FROM scratch
#   prism-offline/nats:2   a static nats-server built from the Go module cache, FROM scratch
#   prism-offline/postgres:15  Debian's PostgreSQL 15 (server, initdb, psql, pg_isready), its
#                          libraries, loader, share files and dash, FROM scratch, user postgres
#
# It prints one tag per line on stdout (progress goes to stderr). An image whose
# label prism.inputs matches the hash of its inputs is not rebuilt.
# Environment: PRISM_REDIS_IMAGE / PRISM_NATS_IMAGE / PRISM_POSTGRES_IMAGE override the tags.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
redis_tag=${PRISM_REDIS_IMAGE:-prism-offline/redis:7}
nats_tag=${PRISM_NATS_IMAGE:-prism-offline/nats:2}
postgres_tag=${PRISM_POSTGRES_IMAGE:-prism-offline/postgres:15}
# Bump when the way the images are built changes.
recipe=2

log() { echo "build.sh: $*" >&2; }
# elapsed START prints the seconds since START (date +%s%N) with one decimal.
elapsed() { local ms=$((($(date +%s%N) - $1) / 1000000)); printf '%d.%d s' $((ms / 1000)) $((ms % 1000 / 100)); }

command -v docker >/dev/null || { log "docker not found"; exit 1; }
docker version --format '{{.Server.APIVersion}}' >/dev/null || { log "docker daemon does not answer"; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# current_hash TAG prints the prism.inputs label of TAG, or nothing.
current_hash() {
	docker image inspect --format '{{index .Config.Labels "prism.inputs"}}' "$1" 2>/dev/null || true
}

# build_image TAG CONTEXT: classic builder (no BuildKit: it would pull a frontend).
build_image() {
	DOCKER_BUILDKIT=0 docker build --quiet -t "$1" "$2" >/dev/null 2>"$work/build.err" || {
		cat "$work/build.err" >&2
		return 1
	}
}

# --- redis ------------------------------------------------------------------
redis_bin=$(command -v redis-server || true)
if [[ -z "$redis_bin" ]]; then
	if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
		log "installing redis-server with apt-get"
		apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y redis-server >&2
		redis_bin=$(command -v redis-server)
	else
		log "redis-server not found; install Debian's redis-server (apt-get install redis-server)"
		exit 1
	fi
fi
# /usr/bin/redis-server is a symlink to redis-check-rdb; Redis picks its mode
# from its file name, so the copy must be named redis-server.
redis_real=$(readlink -f "$redis_bin")
mapfile -t redis_libs < <(ldd "$redis_real" | awk '/=>/ { if ($3 ~ /^\//) print $3; next } $1 ~ /^\// { print $1 }')

redis_dockerfile='FROM scratch
COPY rootfs/ /
WORKDIR /data
EXPOSE 6379
LABEL prism.inputs="@HASH@"
ENTRYPOINT ["/usr/bin/redis-server", "/etc/redis/redis.conf"]'
# Options the container needs whatever the harness appends: reachable through
# the published port (protected mode would refuse the bridge's address).
redis_conf='bind 0.0.0.0
protected-mode no
dir /data'

redis_hash=$( {
	echo "recipe $recipe"
	echo "$redis_dockerfile"
	echo "$redis_conf"
	sha256sum "$redis_real"
	for l in "${redis_libs[@]}"; do sha256sum "$(readlink -f "$l")"; done
} | sha256sum | cut -c1-32)

start=$(date +%s%N)
if [[ $(current_hash "$redis_tag") == "$redis_hash" ]]; then
	log "$redis_tag is up to date"
else
	log "building $redis_tag from $redis_real ($(redis_real_version=$("$redis_bin" --version); echo "${redis_real_version%% sha=*}"))"
	ctx="$work/redis"
	mkdir -p "$ctx/rootfs/usr/bin" "$ctx/rootfs/etc/redis" "$ctx/rootfs/data" "$ctx/rootfs/tmp"
	cp -L "$redis_real" "$ctx/rootfs/usr/bin/redis-server"
	for l in "${redis_libs[@]}"; do
		mkdir -p "$ctx/rootfs$(dirname "$l")"
		cp -L "$l" "$ctx/rootfs$l"
	done
	echo "$redis_conf" >"$ctx/rootfs/etc/redis/redis.conf"
	echo "${redis_dockerfile//@HASH@/$redis_hash}" >"$ctx/Dockerfile"
	build_image "$redis_tag" "$ctx"
	log "built $redis_tag in $(elapsed "$start")"
fi

# --- nats -------------------------------------------------------------------
command -v go >/dev/null || { log "go not found"; exit 1; }
nats_module=github.com/nats-io/nats-server/v2
nats_version=$(cd "$root" && go list -m -f '{{.Version}}' "$nats_module")
nats_dockerfile='FROM scratch
COPY nats-server /nats-server
EXPOSE 4222 6222 8222
LABEL prism.inputs="@HASH@"
ENTRYPOINT ["/nats-server"]'
nats_hash=$( {
	echo "recipe $recipe"
	echo "$nats_dockerfile"
	echo "$nats_module $nats_version"
	go env GOVERSION GOARCH
} | sha256sum | cut -c1-32)

start=$(date +%s%N)
if [[ $(current_hash "$nats_tag") == "$nats_hash" ]]; then
	log "$nats_tag is up to date"
else
	log "building $nats_tag from $nats_module $nats_version"
	ctx="$work/nats"
	mkdir -p "$ctx"
	(cd "$root" && CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$ctx/nats-server" "$nats_module")
	echo "${nats_dockerfile//@HASH@/$nats_hash}" >"$ctx/Dockerfile"
	build_image "$nats_tag" "$ctx"
	log "built $nats_tag in $(elapsed "$start")"
fi

# --- postgres ---------------------------------------------------------------
# Debian's PostgreSQL 15 copied into a scratch image: the binaries the image
# and backends/postgres/backend.yaml use, the server's modules (but llvmjit,
# which needs libLLVM; without it JIT is simply unavailable), every library
# they load, the loader, the share files, the time zones, dash as /bin/sh
# for the entrypoint, and a non-root user postgres (uid 999, as in the
# official image).
pg_major=15
pg_dir=/usr/lib/postgresql/$pg_major
if [[ ! -x "$pg_dir/bin/postgres" ]]; then
	if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
		log "installing postgresql with apt-get (no cluster is started)"
		# policy-rc.d exit 101: the package must not start a system service.
		policy=/usr/sbin/policy-rc.d
		had_policy=0
		[[ -e $policy ]] && had_policy=1
		[[ $had_policy -eq 1 ]] || { printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy"; }
		apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql >&2
		[[ $had_policy -eq 1 ]] || rm -f "$policy"
	else
		log "$pg_dir/bin/postgres not found; install Debian's postgresql package (apt-get install postgresql)"
		exit 1
	fi
fi
pg_bins=(postgres initdb psql pg_isready)
mapfile -t pg_modules < <(find "$pg_dir/lib" -maxdepth 1 -name '*.so' ! -name 'llvmjit*' | sort)
mapfile -t pg_libs < <(for f in "${pg_bins[@]/#/$pg_dir/bin/}" "${pg_modules[@]}" /bin/dash; do
	ldd "$f" | awk '/=>/ { if ($3 ~ /^\//) print $3; next } $1 ~ /^\// { print $1 }'
done | sort -u)

postgres_dockerfile='FROM scratch
COPY rootfs/ /
COPY --chown=999:999 owned/ /
ENV PATH=/usr/lib/postgresql/15/bin:/bin PGDATA=/var/lib/postgresql/data TZ=UTC LANG=C.UTF-8
USER 999:999
WORKDIR /var/lib/postgresql
EXPOSE 5432
STOPSIGNAL SIGINT
LABEL prism.inputs="@HASH@"
ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]
CMD ["postgres"]'
# The part of the official image's docker-entrypoint.sh Prism relies on:
# POSTGRES_PASSWORD, POSTGRES_USER, POSTGRES_DB, POSTGRES_HOST_AUTH_METHOD and
# POSTGRES_INITDB_ARGS on first start, arguments starting with "-" go to
# postgres, anything else runs as given. It runs as postgres from the start
# (the image has no root step), so it needs no gosu.
postgres_entrypoint='#!/bin/sh
set -eu
if [ "${1#-}" != "$1" ]; then set -- postgres "$@"; fi
if [ "$1" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
	user=${POSTGRES_USER:-postgres}
	db=${POSTGRES_DB:-$user}
	method=${POSTGRES_HOST_AUTH_METHOD:-}
	if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "$method" != trust ]; then
		echo "error: database is uninitialized and superuser password is not specified." >&2
		echo "       Set POSTGRES_PASSWORD, or POSTGRES_HOST_AUTH_METHOD=trust to allow connections without one." >&2
		exit 1
	fi
	[ -n "$method" ] || method=scram-sha-256
	pwfile=
	if [ -n "${POSTGRES_PASSWORD:-}" ]; then
		pwfile=/tmp/pwfile
		(umask 077; printf "%s" "$POSTGRES_PASSWORD" >"$pwfile")
	fi
	initdb -D "$PGDATA" -U "$user" ${pwfile:+--pwfile=$pwfile} --auth-local=trust --auth-host="$method" \
		-E UTF8 --locale=C ${POSTGRES_INITDB_ARGS:-} >&2
	[ -z "$pwfile" ] || : >"$pwfile" # no rm in the image: empty it
	printf "\nhost all all all %s\n" "$method" >>"$PGDATA/pg_hba.conf"
	printf "\nlisten_addresses = '\''*'\''\n" >>"$PGDATA/postgresql.conf"
	if [ "$db" != postgres ]; then
		echo "CREATE DATABASE \"$db\";" | postgres --single -D "$PGDATA" -j postgres >/dev/null
	fi
	echo "PostgreSQL init process complete; ready for start up." >&2
fi
exec "$@"'
postgres_hash=$( {
	echo "recipe $recipe"
	echo "$postgres_dockerfile"
	echo "$postgres_entrypoint"
	for f in "${pg_bins[@]/#/$pg_dir/bin/}" "${pg_modules[@]}" /bin/dash "${pg_libs[@]}"; do sha256sum "$(readlink -f "$f")"; done
	(cd "/usr/share/postgresql/$pg_major" && find . -type f | sort | xargs sha256sum)
} | sha256sum | cut -c1-32)

start=$(date +%s%N)
if [[ $(current_hash "$postgres_tag") == "$postgres_hash" ]]; then
	log "$postgres_tag is up to date"
else
	log "building $postgres_tag from $pg_dir ($("$pg_dir/bin/postgres" --version))"
	ctx="$work/postgres"
	r="$ctx/rootfs"
	mkdir -p "$r$pg_dir/bin" "$r$pg_dir/lib" "$r/usr/share/postgresql" "$r/usr/share/zoneinfo" "$r/usr/local/bin" \
		"$r/bin" "$r/etc" "$r/tmp" "$ctx/owned/var/lib/postgresql" "$ctx/owned/var/run/postgresql"
	for b in "${pg_bins[@]}"; do cp -L "$pg_dir/bin/$b" "$r$pg_dir/bin/$b"; done
	for m in "${pg_modules[@]}"; do cp -L "$m" "$r$pg_dir/lib/"; done
	for l in "${pg_libs[@]}"; do
		mkdir -p "$r$(dirname "$l")"
		cp -L "$l" "$r$l"
	done
	cp -L /bin/dash "$r/bin/sh"
	cp -a "/usr/share/postgresql/$pg_major" "$r/usr/share/postgresql/"
	cp -a /usr/share/zoneinfo/. "$r/usr/share/zoneinfo/"
	printf 'root:x:0:0:root:/root:/bin/sh\npostgres:x:999:999:PostgreSQL:/var/lib/postgresql:/bin/sh\n' >"$r/etc/passwd"
	printf 'root:x:0:\npostgres:x:999:\n' >"$r/etc/group"
	printf '%s\n' "$postgres_entrypoint" >"$r/usr/local/bin/docker-entrypoint.sh"
	chmod 755 "$r/usr/local/bin/docker-entrypoint.sh"
	chmod 1777 "$r/tmp"
	# owned/ is copied with --chown=999:999: the home (initdb creates data/
	# in it, mode 0700) and the socket directory belong to postgres.
	echo "${postgres_dockerfile//@HASH@/$postgres_hash}" >"$ctx/Dockerfile"
	build_image "$postgres_tag" "$ctx"
	log "built $postgres_tag in $(elapsed "$start")"
fi

echo "$redis_tag"
echo "$nats_tag"
echo "$postgres_tag"
