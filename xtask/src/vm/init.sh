#!/bin/busybox sh
# The guest's /init (PID 1, from the initramfs `cargo xtask vm` writes): mounts the host's root
# read-only over 9p, lays a tmpfs over it with overlayfs (so the guest may write anywhere and
# nothing reaches the host), and switches into that, where tests.sh runs the tests.
# Only busybox applets, by their full name: the initramfs has nothing else.
bb=/bin/busybox

fail() {
    echo "PEAPOD-VM: $*"
    echo "PEAPOD-VM-RESULT: set-up failed"
    $bb poweroff -f
}

$bb mount -t proc proc /proc
$bb mount -t sysfs sysfs /sys
$bb mount -t devtmpfs devtmpfs /dev

# virtio, 9p and overlayfs are modules in Debian's kernel; the names are numbered in
# dependency order (xtask read it from modules.dep).
for module in /modules/*.ko; do
    $bb insmod "$module" || fail "insmod $module failed"
done

# A large msize makes reading the test binaries over 9p several times faster; the share is
# read-only, so caching its pages in the guest (cache=loose) cannot go stale.
$bb mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000,cache=loose host /host ||
    fail "cannot mount the host's root (9p)"
$bb mount -t tmpfs -o mode=0755 tmpfs /rw || fail "cannot mount the tmpfs for the overlay"
$bb mkdir /rw/upper /rw/work
$bb mount -t overlay -o lowerdir=/host,upperdir=/rw/upper,workdir=/rw/work overlay /newroot ||
    fail "cannot mount the overlay of the host's root"

# The guest's own /run, /tmp and /var/tmp are fresh tmpfs mounts. The host directories the
# tests read (the workspace and its target directory, in keep.sh) may be below one of them,
# as a CI clone under /tmp is: each is held by a bind mount first and moved back on top.
. /keep.sh
eval "set -- $KEEP"
i=0
for path in "$@"; do
    $bb mkdir -p "/keep/$i"
    $bb mount --bind "/newroot$path" "/keep/$i" || fail "cannot hold $path"
    i=$((i + 1))
done
$bb mount -t tmpfs -o mode=0755 tmpfs /newroot/run || fail "cannot mount /run"
$bb mount -t tmpfs -o mode=1777 tmpfs /newroot/tmp || fail "cannot mount /tmp"
$bb mount -t tmpfs -o mode=1777 tmpfs /newroot/var/tmp || fail "cannot mount /var/tmp"
i=0
for path in "$@"; do
    $bb mkdir -p "/newroot$path"
    $bb mount --move "/keep/$i" "/newroot$path" || fail "cannot put $path back"
    i=$((i + 1))
done
# The plan (variables, tests) and tests.sh go to the new root's /run.
$bb mkdir -p /newroot/run/peapod-vm
$bb cp /tests.sh /plan.sh /newroot/run/peapod-vm/ || fail "cannot copy the plan"
for fs in proc sys dev; do
    $bb mount --move "/$fs" "/newroot/$fs" || fail "cannot move /$fs"
done
# `cargo xtask vm --systemd`: the host's own systemd becomes PID 1 and starts only the test
# unit (and what it needs: sysinit, D-Bus), which runs tests.sh and powers off.
# systemd takes the guest for a container (the host's root it boots from has /.dockerenv),
# and a containerised systemd reads its `systemd.*` options from its own arguments, not from
# the kernel's command line: the kernel's are passed on (`--hybrid`'s cgroup layout).
if [ -f /peapod-vm.service ]; then
    $bb mkdir -p /newroot/run/systemd/system
    $bb cp /peapod-vm.service /newroot/run/systemd/system/ || fail "cannot copy the test unit"
    options=
    for word in $($bb cat /newroot/proc/cmdline); do
        case $word in
        systemd.*) options="$options $word" ;;
        esac
    done
    # shellcheck disable=SC2086 # one argument per option
    exec $bb switch_root /newroot /lib/systemd/systemd --unit=peapod-vm.service $options
fi
# The host's /bin/busybox (busybox-static) runs tests.sh: the same applets as here.
exec $bb switch_root /newroot /bin/busybox sh /run/peapod-vm/tests.sh
