#!/bin/sh
# PID 1 of a test guest, run by `unshare --pid --mount --uts` inside the
# guest's network namespace. Builds the guest's own root and moves into it,
# boots it through cloud-init as a VM's image would, then becomes tini
# running sshd: like a VM's init, tini reaps the orphans that daemons (Ray's
# among them) leave behind, which sshd as PID 1 would leave as zombies.
#
# usage: guest_init.sh HOSTNAME HOSTS_FILE --root STATE
#                      [--overlay DIR LOWER STATE]... [--private DIR GUEST_COPY]...
#                      [--channel HOST_DIR GUEST_DIR] [--hide PATH]...
#                      [--boot STAND_INS LOG BOOTED] -- COMMAND...
#
# The guest's root is the machine's root, copy-on-write: an overlay whose
# lower layer is / and whose upper layer is STATE/upper (STATE/work is
# overlayfs's), mounted on STATE/merged, so whatever the guest writes,
# anywhere, is its own, as on a VM's disk. Then, inside that root: an overlay
# DIR shows LOWER with the guest's writes in STATE/upper; a private DIR is
# the guest's GUEST_COPY; /dev, /dev/shm, /proc and a read-only /sys are the
# guest's own; HOST_DIR (guestinfo, stand-ins, logs: what the hypervisor and
# the guest exchange) shows at GUEST_DIR; a HIDE path the guest would see is
# covered by an empty read-only tmpfs. Then pivot_root leaves the machine's
# tree behind. --boot runs cloud-init's boot stages with the STAND_INS
# folder (a guest path) first on PATH, and between its local and network
# stages what Debian's networking.service runs (ifupdown raising the
# interfaces cloud-init rendered), logging to LOG, then creates BOOTED (guest
# paths) before the COMMAND starts.
set -eu
hostname=$1 hosts_file=$2
shift 2
printf '%s\n' "$hostname" >/proc/sys/kernel/hostname

root_state="" overlays="" private_dirs="" channel="" hidden="" stand_ins="" boot_log="" booted=""
while [ "$1" != "--" ]; do
    case $1 in
    --root) root_state=$2; shift 2 ;;
    --overlay) overlays="$overlays $2=$3=$4"; shift 4 ;;
    --private) private_dirs="$private_dirs $2=$3"; shift 3 ;;
    --channel) channel="$2=$3"; shift 3 ;;
    --hide) hidden="$hidden $2"; shift 2 ;;
    --boot) stand_ins=$2 boot_log=$3 booted=$4; shift 4 ;;
    *) echo "guest_init.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
shift
[ -n "$root_state" ] || { echo "guest_init.sh: --root is required" >&2; exit 2; }

root=$root_state/merged
mount -t overlay guest-root -o "lowerdir=/,upperdir=$root_state/upper,workdir=$root_state/work" "$root"
for triple in $overlays; do
    dir=${triple%%=*} rest=${triple#*=}
    lower=${rest%%=*} state=${rest#*=}
    mount -t overlay overlay -o "lowerdir=$lower,upperdir=$state/upper,workdir=$state/work" "$root$dir"
done
for pair in $private_dirs; do
    mount --bind "${pair#*=}" "$root${pair%%=*}"
done
mount --bind "$hosts_file" "$root/etc/hosts"
if [ -n "$channel" ]; then
    mkdir -p "$root${channel#*=}"
    mount --bind "${channel%%=*}" "$root${channel#*=}"
fi

# The kernel's views of this guest's namespaces, and a /dev of its own with
# the device nodes a VM's programs use.
mount -t proc -o nosuid,nodev,noexec proc "$root/proc"
# The kernel's settings are the machine's, but for the network namespace's
# own (net.*): read-only, as in a container, so that a guest's sysctl fails
# rather than changes the machine's.
mount --bind "$root/proc/sys" "$root/proc/sys"
mount --bind "$root/proc/sys/net" "$root/proc/sys/net"
mount -o remount,bind,ro "$root/proc/sys"
if [ -e "$root/proc/sysrq-trigger" ]; then
    mount --bind "$root/proc/sysrq-trigger" "$root/proc/sysrq-trigger"
    mount -o remount,bind,ro "$root/proc/sysrq-trigger"
fi
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$root/sys"
mount -t tmpfs -o nosuid,mode=755,size=1m guest-dev "$root/dev"
for node in null zero full random urandom tty; do
    touch "$root/dev/$node"
    mount --bind "/dev/$node" "$root/dev/$node"
done
mkdir "$root/dev/pts" "$root/dev/shm"
mount -t devpts -o newinstance,nosuid,noexec,gid=5,mode=620,ptmxmode=666 devpts "$root/dev/pts"
mount -t tmpfs -o nosuid,nodev,mode=1777 shm "$root/dev/shm"
ln -s pts/ptmx "$root/dev/ptmx"
ln -s /proc/self/fd "$root/dev/fd"
ln -s /proc/self/fd/0 "$root/dev/stdin"
ln -s /proc/self/fd/1 "$root/dev/stdout"
ln -s /proc/self/fd/2 "$root/dev/stderr"

for path in $hidden; do
    if [ -d "$root$path" ]; then
        mount -t tmpfs -o ro,size=4k,mode=755 hidden "$root$path"
    fi
done

# Leave the machine's tree: from here on the guest sees only its own root.
cd "$root"
mkdir -p .machine
pivot_root . .machine
cd /
umount -l /.machine
rmdir /.machine

if [ -n "$stand_ins" ]; then
    # cloud-init's boot stages, in the order its systemd units run them. A
    # failed stage is in the log; the guest still comes up, as a VM would.
    for stage in "init --local" "init" "modules --mode config" "modules --mode final"; do
        if [ "$stage" = init ]; then
            # networking.service (ifupdown), ordered after cloud-init-local and before cloud-init's network stage.
            mkdir -p /run/network
            ifup -a --read-environment >>"$boot_log" 2>&1 || echo "ifup -a: exit $?" >>"$boot_log"
        fi
        # shellcheck disable=SC2086 # the stage is words
        PATH="$stand_ins:$PATH" cloud-init $stage >>"$boot_log" 2>&1 || echo "cloud-init $stage: exit $?" >>"$boot_log"
    done
    : >"$booted"
fi
mkdir -p /run/sshd
exec tini -- "$@"
