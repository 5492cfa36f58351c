# Shared by the tools' end-to-end scripts (sourced, not run): a temporary
# folder and the PIDs started, both cleaned up at exit; pass/fail counts;
# waiting for a line in a file; the children of a process.
T=$(mktemp -d)
pids=""
cleanup() {
    for p in $pids; do kill "$p" 2>/dev/null; done
    for p in $pids; do wait "$p" 2>/dev/null; done
    rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 1' INT TERM
passed=0
failed=0
ok() { passed=$((passed + 1)); }
bad() { failed=$((failed + 1)); echo "FAIL: $*"; }

# children_of PID: the PIDs whose parent is PID (from /proc; no procps needed).
children_of() {
    for st in /proc/[0-9]*/stat; do
        line=$(cat "$st" 2>/dev/null) || continue
        rest=${line##*) }   # after the command name, which may hold spaces: "STATE PPID ..."
        ppid=$(echo "$rest" | cut -d' ' -f2)
        [ "$ppid" = "$1" ] && echo "${line%% *}"
    done
    return 0
}

# wait_for FILE PATTERN SECONDS: until a line of FILE matches.
wait_for() {
    n=0
    while [ $n -lt $(($3 * 10)) ]; do
        grep -qE "$2" "$1" 2>/dev/null && return 0
        sleep 0.1; n=$((n + 1))
    done
    return 1
}
