"""The guest's /init (busybox sh) and the files through which host and guest talk.

Contract, all in the "ctl" 9p share (a private host temp dir, mounted at /ctl before the chroot):
``workdir`` (host path of the writable work share, or empty), ``keep`` (a host path under /tmp to keep
visible over the guest's tmpfs /tmp, or empty), ``job`` (a /bin/sh script run chrooted in the
host's read-only root), then, written by the guest: ``output`` (the job's stdout and stderr) and ``rc``
(its exit status, 128+N if killed by signal N). A missing ``rc`` means the guest never finished the job.
Every line /init prints starts with "vm-init:", so its steps are easy to find in the console log.
"""

from __future__ import annotations

# 9p over virtio (Documentation/filesystems/9p.rst). The root share is read-only and nothing on the host
# changes under a short run, so cache=loose saves a round trip per stat/read; the writable shares stay
# uncached so the host sees every write as soon as the guest makes it.
ROOT_MOUNT_OPTS = "trans=virtio,version=9p2000.L,msize=262144,ro,cache=loose"
RW_MOUNT_OPTS = "trans=virtio,version=9p2000.L,msize=262144"

INIT_SCRIPT = r"""#!/bin/sh
/bin/busybox --install -s /bin
export PATH=/bin
say() { echo "vm-init: $*"; }
die() { say "FAILED: $*"; sync; reboot -f; }
mount -t proc proc /proc || die "mount /proc"
mount -t sysfs sysfs /sys || die "mount /sys"
mount -t devtmpfs devtmpfs /dev || die "mount /dev"

# virtio_mmio takes its devices from the command line (virtio_mmio.device=...), which for a loadable
# module only modprobe would read: hand them over as insmod parameters.
for m in @MODULES@; do
    params=""
    case "$m" in
    */virtio_mmio.ko)
        for arg in $(cat /proc/cmdline); do
            case "$arg" in virtio_mmio.device=*) params="$params device=${arg#virtio_mmio.device=}" ;; esac
        done ;;
    esac
    insmod "$m" $params || die "insmod $m"
done

mount -t 9p -o "@RW_OPTS@" ctl /ctl || die "mount ctl share"
mount -t 9p -o "@ROOT_OPTS@" root /newroot || die "mount host / over 9p"
R=/newroot
mount -t proc proc $R/proc || die "mount $R/proc"
mount -t sysfs sysfs $R/sys || die "mount $R/sys"
mount -t securityfs securityfs $R/sys/kernel/security || die "mount securityfs"
mount -t bpf bpf $R/sys/fs/bpf || die "mount bpffs"
mount -t cgroup2 cgroup2 $R/sys/fs/cgroup || die "mount cgroup2"
mount -t tracefs tracefs $R/sys/kernel/tracing || die "mount tracefs"
mount -t devtmpfs devtmpfs $R/dev || die "mount $R/dev"
mkdir -p $R/dev/shm && mount -t tmpfs -o mode=1777 shm $R/dev/shm || die "mount $R/dev/shm"
# A host path under /tmp that must stay visible (the command's cwd, e.g. a clone in /tmp) is moved
# aside before the guest's tmpfs hides it, then moved back on top.
keep=$(cat /ctl/keep)
if [ -n "$keep" ]; then mount --bind "$R$keep" /keep || die "hold $keep"; fi
mount -t tmpfs -o mode=1777 tmpfs $R/tmp || die "mount $R/tmp"
if [ -n "$keep" ]; then mkdir -p "$R$keep" && mount --move /keep "$R$keep" || die "restore $keep"; fi
mount -t tmpfs -o mode=755 tmpfs $R/run || die "mount $R/run"

workdir=$(cat /ctl/workdir)
if [ -n "$workdir" ]; then
    # After /tmp: a work folder under the host's /tmp is created in the guest's tmpfs, then shared over it.
    mkdir -p "$R$workdir" && mount -t 9p -o "@RW_OPTS@" work "$R$workdir" || die "mount work share $workdir"
fi

# No network device: loopback only, for the tests of socket hooks.
ip link set lo up || die "loopback up"

say "running job"
chroot $R /bin/sh -c "$(cat /ctl/job)" </dev/null >/ctl/output 2>&1
echo $? >/ctl/rc
sync
say "job exited $(cat /ctl/rc)"
reboot -f
"""

INIT_SCRIPT = INIT_SCRIPT.replace("@RW_OPTS@", RW_MOUNT_OPTS).replace("@ROOT_OPTS@", ROOT_MOUNT_OPTS)
