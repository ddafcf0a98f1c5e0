# Pinned tool versions, and `tool`, which installs one with `go install`
# into a per-machine cache (shared by clones and runs) and prints its
# directory. Sourced by clients/generate, docs/grpcurl-check and bench/read.
BUF_VERSION=v1.50.0
PROTOC_GEN_GO_VERSION=v1.36.10
PROTOC_GEN_GO_GRPC_VERSION=v1.5.1
GRPCURL_VERSION=v1.9.3
# The load generator of bench/read (its `@latest` on the proxy is an old v0.93.0).
GHZ_VERSION=v0.121.0
# sqlx-cli (cargo install), for scripts/sqlx-prepare: the offline query data of query! macros.
SQLX_CLI_VERSION=0.8.6
ROSTER_TOOLS=${ROSTER_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/roster-tools}

tool() { # name package version
  local dir="$ROSTER_TOOLS/$1@$3"
  if [ ! -x "$dir/$1" ]; then
    GOBIN="$dir" go install "$2@$3" >&2
  fi
  echo "$dir"
}
