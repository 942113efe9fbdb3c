#!/bin/busybox sh
# The guest's second stage (PID 1 after init.sh's switch_root, on the overlay of the host's
# root): a pure cgroup-v2 machine, then the tests plan.sh names, then one result line that
# `cargo xtask vm` reads from the serial console, then power off.
bb=/bin/busybox
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root

fail() {
    echo "PEAPOD-VM: $*"
    echo "PEAPOD-VM-RESULT: set-up failed"
    $bb poweroff -f
}

# Under `cargo xtask vm --systemd` systemd is PID 1 and runs this script as a unit
# (PEAPOD_VM_INIT=systemd): it made /dev/pts, /dev/shm and the cgroup2 tree itself, and it
# powers off when the unit ends (the unit's SuccessAction and FailureAction).
if [ "${PEAPOD_VM_INIT:-}" = systemd ]; then
    echo "PEAPOD-VM: $(systemctl --version | $bb head -n 1) is PID 1"
    echo "PEAPOD-VM: the tests run in $($bb cat /proc/self/cgroup)"
else
    $bb mkdir -p /dev/pts /dev/shm
    $bb mount -t devpts -o newinstance,ptmxmode=0666 devpts /dev/pts || fail "cannot mount devpts"
    $bb mount -t tmpfs -o mode=1777 tmpfs /dev/shm || fail "cannot mount /dev/shm"
    $bb hostname peapod-vm
    $bb ip link set lo up

    # Nothing ever mounted a v1 hierarchy (and the kernel was booted with cgroup_no_v1=all), so
    # every controller is on this one. Each is enabled for children on its own: one the kernel
    # refuses must not keep the others off.
    $bb mount -t cgroup2 cgroup2 /sys/fs/cgroup || fail "cannot mount cgroup2"
    enable_all() {
        for controller in $($bb cat "$1/cgroup.controllers"); do
            echo "+$controller" >"$1/cgroup.subtree_control" ||
                echo "PEAPOD-VM: cannot enable $controller below $1"
        done
    }
    # The tests run in a leaf below a slice, as everything does on a systemd host (a login
    # session's scope, a service): a v2 cgroup with processes cannot hand controllers down, so
    # peapod has to make its cgroups beside its own, not below it.
    enable_all /sys/fs/cgroup
    $bb mkdir -p /sys/fs/cgroup/test.slice/test.scope
    enable_all /sys/fs/cgroup/test.slice
    echo $$ >/sys/fs/cgroup/test.slice/test.scope/cgroup.procs || fail "cannot enter test.scope"
    echo "PEAPOD-VM: cgroup2 controllers for children: $($bb cat /sys/fs/cgroup/cgroup.subtree_control)"
    echo "PEAPOD-VM: the tests run in $($bb cat /proc/self/cgroup)"
fi

failed=0
# run_test NAME DIR BINARY ARGS...: one test binary, run from its package's directory as
# cargo runs it.
run_test() {
    name=$1 dir=$2 binary=$3
    shift 3
    echo "PEAPOD-VM: running $name"
    if ! (cd "$dir" && "$binary" "$@"); then
        echo "PEAPOD-VM: $name failed"
        failed=$((failed + 1))
    fi
}
# shellcheck source=/dev/null
. /run/peapod-vm/plan.sh

echo "PEAPOD-VM-RESULT: $failed"
[ "${PEAPOD_VM_INIT:-}" = systemd ] || $bb poweroff -f
