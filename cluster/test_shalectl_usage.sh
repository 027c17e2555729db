#!/usr/bin/env bash
# shalectl's command line, without a cluster: every verb's wrong arguments
# exit 2 with a message naming the problem (before anything is sent), --help
# works globally and per verb, and an unreachable cluster exits 3.
#   test_shalectl_usage.sh PATH/TO/shalectl
# The cluster verbs against real processes are tested by the cluster
# integration tests (tests/integration/).
set -uo pipefail
CTL=${1:?usage: test_shalectl_usage.sh SHALECTL}
fails=0
# Nothing listens here (the port is reserved for tcpmux and unused).
export SHALE_META=127.0.0.1:1 SHALE_ROUTER=127.0.0.1:1
unset SHALE_ADDR

# expect CODE PATTERN ARGS...: exit status CODE and PATTERN in the output.
expect() {
  local want=$1 pat=$2 out rc
  shift 2
  out=$("$CTL" "$@" 2>&1)
  rc=$?
  if [ "$rc" -ne "$want" ] || ! grep -qF -- "$pat" <<<"$out"; then
    echo "FAIL: shalectl $* -> exit $rc (want $want), output:"
    printf '    %s\n' "$out"
    fails=$((fails + 1))
  fi
}

A=127.0.0.1:1
expect 0 "exit status:" --help
expect 0 "init --group ID=ADDR" init --help
expect 0 "group remove ID" group --help
expect 0 "--addr ADDRS status" status --help
expect 2 "no verb given"
expect 2 "unknown verb 'frobnicate'" frobnicate
expect 2 "needs a second word" replica
expect 2 "unknown option '--bogus'" --bogus status
expect 2 "--timeout needs a positive number" --timeout 0 status
expect 2 "needs a value" --meta
# data verbs
expect 2 "get: missing arguments" get
expect 2 "mget: missing arguments" mget
expect 2 "--stale needs a positive number" mget a b --stale 0
expect 2 "too many arguments ('b')" get a b
expect 2 "--stale needs a positive number" get k --stale x
expect 2 "missing VALUE (or --file F, or - for standard input)" put k
expect 2 "give VALUE or --file, not both" put k v --file /etc/hostname
expect 2 "--file /nonexistent/v: No such file or directory" put k --file /nonexistent/v
expect 2 "put: missing arguments" put
expect 2 "--ttl needs a number of milliseconds" put --ttl 0 k v
expect 2 "--ttl needs a number of milliseconds" put --ttl soon k v
expect 2 "--ttl needs a number of milliseconds" put --ttl 3153600000001 k v
expect 2 "ttl: missing arguments" ttl
expect 2 "too many arguments ('b')" ttl a b
expect 2 "--stale needs a positive number" ttl k --stale 0
expect 2 "del: missing arguments" del
expect 2 "exactly one of --expect-absent" cas k v
expect 2 "either NEWVALUE or --delete" cas k --expect-value a --delete v
expect 2 "--expect-version needs a number" cas k --expect-version x v
expect 0 "txn [--if COND ...]" txn --help
expect 2 "at least one --if, --then or --else" txn
expect 2 "unknown target 'size'" txn --if 'size({a}x) = 3' --then 'get {a}x'
expect 2 "a version is a number" txn --if 'version({a}x) = abc'
expect 2 "expected an operator" txn --if 'value({a}x)'
expect 2 "takes no operator" txn --if 'exists({a}x) = 1'
expect 2 "expected put[:ttl=MS|:keepttl] KEY VALUE, del KEY, get KEY, add KEY DELTA, append KEY VALUE or expire KEY MS" txn --then 'set {a}x 1'
expect 2 "expected put[:ttl=MS|:keepttl]" txn --then 'put:bogus {a}x 1'
expect 2 "put:ttl=MS takes a TTL of 1 ms or more" txn --then 'put:ttl=abc {a}x 1'
expect 2 "DELTA is a signed 64-bit number, not 'abc'" txn --then 'add {a}x abc'
expect 2 "add needs KEY DELTA" txn --then 'add {a}x'
expect 2 "append needs KEY VALUE" txn --then 'append {a}x'
expect 2 "expire needs KEY MS" txn --then 'expire {a}x'
expect 2 "MS is a number of milliseconds, not '-5'" txn --then 'expire {a}x -5'
expect 2 "put needs KEY VALUE" txn --then 'put {a}x'
expect 2 "get takes only a KEY" txn --else 'get {a}x extra'
expect 3 "txn" txn --if 'version({a}x) = 3' --then 'put {a}x 1' --else 'get {a}x'
expect 0 "watch KEY [--prefix]" watch --help
expect 2 "watch: missing arguments" watch
expect 2 "--from needs a revision" watch k --from 0
expect 2 "--count needs a positive number" watch k --count x
expect 2 "--group needs a group id" watch k --from 3 --group 0
expect 2 "--group goes with --from" watch k --group 2
expect 3 "watch" watch k --from 5
expect 2 "not both" --router $A --addr $A get k
expect 2 "not --meta" --meta $A get k
# cluster verbs
expect 2 "name at least one group" init
expect 2 "--group wants ID=HOST:PORT" init --group 1
expect 2 "--group wants ID=HOST:PORT" init --group 0=$A
expect 2 "group 1 is named twice" init --group 1=$A --group 1=127.0.0.2:1
expect 2 "--slots needs a number in 1..65535" init --slots 70000 --group 1=$A
expect 2 "2 groups need at least 2 slots" init --slots 1 --group 1=$A --group 2=127.0.0.2:1
expect 2 "use --meta, not --addr" --addr $A init --group 1=$A
expect 2 "too many arguments" status extra
expect 2 "too many arguments" map x
expect 2 "slot: missing arguments" slot
expect 2 "group add: missing arguments" group add 3
expect 2 "ID must be a positive integer" group add x $A
expect 2 "is not HOST:PORT" group add 3 nohostport
expect 2 "ids are positive integers" group remove -1
expect 2 "replica add: missing arguments" replica add 1 2 $A
expect 2 "CLIENT 'noport' is not HOST:PORT" replica add 1 2 $A noport
expect 2 "GROUP must be a positive integer" replica add 0 2 $A $A
expect 2 "unknown option '--replica'" replica add 1 2 $A $A --replica
expect 2 "replica remove: missing arguments" replica remove 1
expect 2 "replica rejoin: missing arguments" replica rejoin 1
expect 2 "--wait takes seconds" replica rejoin 1 2 --wait 0
expect 2 "ids are positive integers" replica rejoin 1 x
expect 0 "top [--interval S] [--count N]" top --help
expect 2 "--count needs a positive number" top --count 0
expect 2 "--interval needs seconds in 0.1..3600" top --interval 0
expect 2 "--interval needs seconds in 0.1..3600" top --interval x
expect 2 "too many arguments" top now
expect 2 "use --meta, not --router" --router $A status
expect 2 "use --meta, not --addr" --addr $A top
expect 2 "leader transfer: missing arguments" leader transfer
expect 2 "too many arguments ('3')" leader transfer 1 2 3
# slot migration
expect 0 "slot move SLOT|FROM-TO GROUP" slot --help
expect 0 "rebalance [--dry-run]" rebalance --help
expect 0 "migration abort (ID... | --all)" migration --help
expect 2 "needs a second word" migration
expect 2 "slot move: missing arguments" slot move 5
expect 2 "SLOTS must be a slot number or a range FROM-TO, not 'x'" slot move x 2
expect 2 "SLOTS must be a slot number or a range FROM-TO, not '1-x'" slot move 1-x 2
expect 2 "SLOTS must be a slot number or a range FROM-TO" slot move 70000 2
expect 2 "is empty (FROM > TO)" slot move 9-3 2
expect 2 "GROUP must be a positive integer, not '0'" slot move 3 0
expect 2 "--rate needs MB/s as a number >= 0" slot move 3 2 --rate fast
expect 2 "--rate needs MB/s as a number >= 0" slot move 3 2 --rate -1
expect 2 "--batch needs a number of slots in 1..65535" slot move 3 2 --batch 0
expect 2 "--stop-after needs start, copy, fence or drain, not 'flip'" slot move 3 2 --stop-after flip
expect 2 "--max-parallel needs a number in 1..32, not 'x'" slot move 3 2 --max-parallel x
expect 2 "unknown option '--dry-run'" slot move 3 2 --dry-run
expect 0 "slot assign SLOTS GROUP --force" slot --help
expect 2 "slot assign: missing arguments" slot assign 5
expect 2 "refused without --force" slot assign 5 1
expect 2 "WITHOUT moving their data" slot assign 0-99 2
expect 2 "SLOTS is a slot, a range FROM-TO or a comma list" slot assign x 1 --force
expect 2 "SLOTS is a slot, a range FROM-TO or a comma list" slot assign 1,,2 1 --force
expect 2 "SLOTS is a slot, a range FROM-TO or a comma list" slot assign 1, 1 --force
expect 2 "slot range '9-3' is empty (FROM > TO)" slot assign 1,9-3 1 --force
expect 2 "slot 70000 is beyond any map" slot assign 70000 1 --force
expect 2 "GROUP must be a positive integer, not '0'" slot assign 3 0 --force
expect 3 "cannot connect" --timeout 300 slot assign 1,2,7 2 --force
expect 2 "too many arguments ('now')" rebalance now
expect 2 "--max-parallel needs a number in 1..32, not '0'" rebalance --max-parallel 0
expect 2 "--max-parallel needs a number in 1..32, not '33'" rebalance --max-parallel 33
expect 2 "option '--dry-run' given twice" rebalance --dry-run --dry-run
expect 2 "use --meta, not --addr" --addr $A rebalance
expect 2 "too many arguments ('1')" migration status 1
expect 2 "name the migrations to abort (IDs) or --all" migration abort
expect 2 "give migration ids or --all, not both" migration abort 3 --all
expect 2 "migration ids are positive integers, not '0'" migration abort 0
expect 2 "migration ids are positive integers, not 'x'" migration resume x
expect 2 "unknown option '--batch'" migration resume --batch 3
# backup and restore
expect 0 "backup verify DIR" backup --help
expect 0 "restore DIR [--into-same-cluster]" restore --help
expect 2 "backup: missing arguments" backup
expect 2 "too many arguments ('b')" backup a b
expect 2 "backup verify: missing arguments" backup verify
expect 2 "too many arguments ('x')" backup release x
expect 2 "restore: missing arguments" restore
expect 2 "unknown option '--force'" restore /tmp --force
expect 2 "DIR must be a directory path" backup ''
expect 2 "use --meta, not --addr" --addr $A backup /tmp/x
expect 2 "use --meta, not --router" --router $A backup /tmp/x
expect 1 "not a complete backup" backup verify /nonexistent/bk
expect 1 "refused" restore /nonexistent/bk
expect 3 "cannot connect" --timeout 300 backup "${TMPDIR:-/tmp}/shalectl-usage-bk.$$"
expect 3 "cannot connect" --timeout 300 backup release
rmdir "${TMPDIR:-/tmp}/shalectl-usage-bk.$$" 2>/dev/null
expect 2 "--stop-after needs start, copy, fence or drain" group remove 3 --stop-after never
expect 2 "--max-parallel needs a number" group remove 3 --max-parallel x
# users
expect 0 "user add NAME --role R" user --help
expect 2 "user add: missing arguments" user add
expect 2 "--role is required" user add alice
expect 2 "--role must be read, readwrite or admin, not 'root'" user add alice --role root
expect 2 "a user name may only hold" user add "al ice" --role read
expect 2 "an admin cannot have a --prefix" user add alice --role admin --prefix app/
expect 2 "cannot read --password-file" user add alice --role read --password-file /nonexistent/pw
expect 2 "no password to read" user add alice --role read --password-file /dev/null
expect 2 "user remove: missing arguments" user remove
expect 2 "too many arguments ('x')" user list x
expect 2 "a user name has 1..64 characters" user passwd ""
expect 2 "use --meta, not --addr" --addr $A user list
# one group directly
expect 2 "give its members with --addr" member add 4 $A $A
expect 2 "'a' is not HOST:PORT" --addr $A member add 4 a $A
expect 2 "too many arguments ('2')" --addr $A leader transfer 1 2
expect 2 "--meta does not apply" --addr $A --meta $A status
# nobody listening
expect 3 "cannot connect" --timeout 300 status
expect 3 "cannot connect" --timeout 300 --router $A top --count 1
expect 3 "cannot connect" --timeout 300 init --group 1=$A
expect 3 "cannot connect" --timeout 300 get k
# TLS options: a file that cannot be read is named (exit 2, nothing sent);
# the same through the environment; half a certificate is refused.
expect 2 "cannot read CA file '/nonexistent/ca.crt'" --tls-ca /nonexistent/ca.crt get k
SHALE_TLS_CA=/nonexistent/env.crt expect 2 "/nonexistent/env.crt" --timeout 300 get k
expect 2 "give both" --tls-ca /dev/null --tls-cert /dev/null get k
expect 2 "needs a value" --tls-key
expect 3 "cannot connect" --timeout 300 --addr $A status
expect 3 "cannot connect" --timeout 300 rebalance --dry-run
# check (the replica consistency check)
expect 0 "check [GROUP] [--slots]" check --help
expect 0 "5  check: members of a group hold different data" --help
expect 2 "GROUP must be a group id > 0, not 'x'" check x
expect 2 "too many arguments ('2')" check 1 2
expect 2 "--rate must be bytes per second > 0, not '0'" check --rate 0
expect 2 "--wait must be seconds > 0, not 'soon'" check --wait soon
expect 3 "cannot connect" --timeout 300 --meta $A check
expect 3 "cannot connect" --timeout 300 migration status
expect 3 "cannot connect" --timeout 300 slot move 1 2
expect 3 "cannot connect" --timeout 300 user list
expect 3 "cannot connect" --timeout 300 user remove alice
# The profile file (--config / $SHALE_CONFIG, [sections] by --profile):
# its settings are the $SHALE_* defaults; the environment and flags win;
# relative paths are the file's directory's; mistakes name file and line.
P=$(mktemp -d "${TMPDIR:-/tmp}/shalectl-profile-XXXXXX")
printf 'addr = 127.0.0.1:2   # common\ntls-ca = tls/ca.crt\n[other]\naddr = 127.0.0.1:4\n' >"$P/ok.conf"
printf 'addr = 127.0.0.1:2\n' >"$P/plain.conf"
printf 'meta = 127.0.0.1:1\nbogus = 1\n' >"$P/bad.conf"
printf '[x\n' >"$P/sect.conf"
(
  unset SHALE_META SHALE_ROUTER SHALE_ADDR
  expect 3 "connect to 127.0.0.1:2" --timeout 300 --config "$P/plain.conf" member remove 4
  SHALE_CONFIG="$P/plain.conf" expect 3 "connect to 127.0.0.1:2" --timeout 300 member remove 4
  SHALE_ADDR=127.0.0.1:3 expect 3 "connect to 127.0.0.1:3" --config "$P/plain.conf" --timeout 300 member remove 4
  expect 3 "connect to 127.0.0.1:5" --config "$P/plain.conf" --addr 127.0.0.1:5 --timeout 300 member remove 4
  expect 2 "cannot read CA file '$P/tls/ca.crt'" --config "$P/ok.conf" --timeout 300 member remove 4
  SHALE_TLS_CA= expect 2 "cannot read CA file '$P/tls/ca.crt'" --config "$P/ok.conf" --profile other member remove 4
  SHALE_PROFILE=other expect 2 "cannot read CA file" --config "$P/ok.conf" member remove 4
  expect 2 "profile 'nope' is not in $P/ok.conf" --config "$P/ok.conf" --profile nope status
  expect 2 "$P/bad.conf:2: unknown setting 'bogus'" --config "$P/bad.conf" status
  expect 2 "$P/sect.conf:1: a section is [NAME]" --config "$P/sect.conf" status
  expect 2 "profile file $P/none.conf: No such file" --config "$P/none.conf" status
  expect 2 "option '--profile' needs a value" --profile
  # No file given and none at the default place: nothing changes.
  HOME="$P" expect 3 "cannot connect to 127.0.0.1:7001" --timeout 300 status
  mkdir -p "$P/.config/shale" && cp "$P/plain.conf" "$P/.config/shale/shalectl.conf"
  HOME="$P" expect 3 "connect to 127.0.0.1:2" --timeout 300 member remove 4
  exit $fails
) || fails=$((fails + $?))
rm -rf "$P"

if [ $fails -ne 0 ]; then
  echo "$fails failed"
  exit 1
fi
echo "all shalectl usage checks passed"
