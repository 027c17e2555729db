# shellcheck shell=bash
# scripts/secure.sh: the secure default of the scripts that start whole
# clusters (docs/security.md) — a cluster CA and certificates made with the
# openssl command, random passwords, the first admin (the meta group's
# bootstrap rule) and the other users, the daemons' TLS and --auth flags,
# and the environment that makes shalectl connect as the admin. Sourced by
# scripts/cluster.sh and jepsen/run; it runs nothing by itself.
#
#   secure_init DIR CA_CN           DIR (mode 700) and its CA ca.key/ca.crt (P-256, ten
#                                   years), kept when DIR already holds one
#   secure_cert DIR NAME CN SAN EKU DIR/NAME.key and NAME.crt signed by the CA (P-256, one
#                                   year; SAN "" for none), kept when already made
#   secure_password DIR USER        DIR/USER.pw: 32 random hex digits, kept when there
#   secure_flags DIR NAME           SECURE_FLAGS = the TLS and --auth flags of the
#                                   shaled or shale-router whose certificate is NAME (it
#                                   logs in as the service user svc, DIR/svc.pw)
#   secure_admin_env DIR            export SHALE_TLS_CA/_CERT/_KEY, SHALE_USER and
#                                   SHALE_PASSWORD_FILE: shalectl connects as admin
#                                   (DIR/admin.crt and DIR/admin.pw)
#   secure_clear_env                unset them (and SHALE_TLS_SERVER_NAME)
#   secure_users DIR META USER:ROLE... -- CTL...
#                                   the first admin "admin" through the bootstrap rule,
#                                   retried until the meta group (addresses META, started
#                                   with --auth) takes it (15 s), then each USER with ROLE
#                                   (password DIR/USER.pw) as admin. CTL... runs shalectl
#                                   (e.g. "ip netns exec NS build/cluster/shalectl").
#                                   Needs secure_admin_env first. Users that exist are
#                                   kept (a restart finds them)
#
# Every function returns non-zero with a message on stderr when it fails;
# the caller decides what a failure means.

# secure_init DIR CA_CN
secure_init() {
  local dir=$1 cn=$2
  command -v openssl >/dev/null || {
    echo "the secure default needs the openssl command (apt-get install openssl), or use --insecure" >&2
    return 1
  }
  mkdir -p "$dir" || return 1
  chmod 700 "$dir" || return 1
  [ -s "$dir/ca.crt" ] && return 0
  # (keys are made in DIR, mode 700, and set to 600 at once)
  openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
    -subj "/CN=$cn" -keyout "$dir/ca.key" -out "$dir/ca.crt" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null || {
    echo "openssl could not make the cluster CA in $dir" >&2
    return 1
  }
  chmod 600 "$dir/ca.key"
}

# secure_cert DIR NAME CN SAN EKU: e.g. a node's (server and client use; its
# SAN must name the host of its --raft and --listen addresses, the naming
# rule of docs/security.md):
#   secure_cert DIR node-11 node-11 "IP:127.0.0.11, DNS:node-11" "serverAuth, clientAuth"
secure_cert() {
  local dir=$1 name=$2 cn=$3 san=$4 eku=$5
  [ -s "$dir/$name.crt" ] && return 0
  {
    echo "basicConstraints = CA:FALSE"
    echo "keyUsage = critical, digitalSignature"
    echo "extendedKeyUsage = $eku"
    if [ -n "$san" ]; then echo "subjectAltName = $san"; fi
  } >"$dir/$name.ext"
  if ! openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$cn" \
      -keyout "$dir/$name.key" -out "$dir/$name.csr" 2>/dev/null ||
    ! openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
      -CAcreateserial -days 365 -extfile "$dir/$name.ext" -out "$dir/$name.crt" 2>/dev/null; then
    rm -f "$dir/$name.crt"
    echo "openssl could not make the certificate $name in $dir" >&2
    return 1
  fi
  chmod 600 "$dir/$name.key"
  rm -f "$dir/$name.csr" "$dir/$name.ext"
}

# secure_password DIR USER
secure_password() {
  [ -s "$1/$2.pw" ] && return 0
  (umask 077 && openssl rand -hex 16 >"$1/$2.pw") || {
    echo "openssl could not make a password in $1/$2.pw" >&2
    return 1
  }
}

# secure_flags DIR NAME
secure_flags() {
  # shellcheck disable=SC2034 # the caller's
  SECURE_FLAGS=(--tls-ca "$1/ca.crt" --tls-cert "$1/$2.crt" --tls-key "$1/$2.key"
    --auth --auth-user svc --auth-password-file "$1/svc.pw")
}

# secure_admin_env DIR
secure_admin_env() {
  export SHALE_TLS_CA="$1/ca.crt" SHALE_TLS_CERT="$1/admin.crt" SHALE_TLS_KEY="$1/admin.key"
  export SHALE_USER=admin SHALE_PASSWORD_FILE="$1/admin.pw"
}

# secure_clear_env: a shell that sourced a secure cluster's exports must not
# make a plain cluster's shalectl speak TLS or log in.
secure_clear_env() {
  unset SHALE_TLS_CA SHALE_TLS_CERT SHALE_TLS_KEY SHALE_TLS_SERVER_NAME SHALE_USER SHALE_PASSWORD_FILE
}

# secure_users DIR META USER:ROLE... -- CTL...
# With --auth and no user yet, the meta group answers nothing but the first
# admin's creation: that request, retried until a leader takes it, is the
# wait for the meta group. Listing the users before any exists is refused
# as unavailable, not as a failed login (no rate limit is hit).
secure_users() {
  local dir=$1 meta=$2 users="" u name role
  local -a want=()
  shift 2
  while [ $# -gt 0 ] && [ "$1" != -- ]; do want+=("$1"); shift; done
  [ "${1:-}" = -- ] || { echo "secure_users: no -- before the shalectl command" >&2; return 1; }
  shift
  for _ in $(seq 1 150); do
    if users=$("$@" --meta "$meta" --timeout 500 user list 2>/dev/null); then break; fi
    SHALE_USER="" SHALE_PASSWORD_FILE="" "$@" --meta "$meta" --timeout 500 \
      user add admin --role admin --password-file "$dir/admin.pw" >/dev/null 2>&1 || true
    users=""
    sleep 0.1
  done
  [ -n "$users" ] || { echo "the meta group did not take the first admin user within 15 s" >&2; return 1; }
  for u in "${want[@]}"; do
    name=${u%%:*} role=${u#*:}
    grep -qw "$name" <<<"$users" && continue
    "$@" --meta "$meta" user add "$name" --role "$role" --password-file "$dir/$name.pw" >/dev/null ||
      { echo "could not create the user $name (role $role)" >&2; return 1; }
  done
}
