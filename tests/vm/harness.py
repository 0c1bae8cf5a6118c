"""Run one command in a throwaway QEMU guest with a stock kernel: ``run_in_vm(argv, env=..., workdir=...)``.

The guest (qemu -M microvm, TCG: KVM cannot run a stock kernel on these hosts) boots the uncompressed
vmlinux of one stock kernel (``kernels.find_kernel``: a tier's newest release) with our busybox
initramfs, mounts the host's ``/`` read-only over 9p, shares *workdir* writable at the same path,
chroots into the host's root and runs *argv* as root. Boot to first instruction of the command takes
about 2.5 s (see tests/vm/README.md).

The kernel and initramfs are built once into ``tests/vm/.cache/<tier>-<release>-<key>/`` (key: harness
version, kernel and busybox files, /init text), which takes about a second.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .guest_init import INIT_SCRIPT
from .initramfs import InitramfsError, build_initramfs
from .kernel_image import KernelImageError, extract_vmlinux
from .kernels import DEFAULT_TIER, TIERS, GuestKernel, KernelNotFoundError, find_kernel, tier_named

# Bump when the guest's behaviour changes in a way the cache key below does not see.
HARNESS_VERSION = 2

CACHE_DIR = Path(__file__).resolve().parent / ".cache"
BUSYBOX = Path("/bin/busybox")
MEMORY_MB = 512
CONSOLE_TAIL_LINES = 40
STALE_CACHE_AGE_S = 600.0


class VMError(Exception):
    """The guest did not run the command to completion; ``console`` holds the serial log for diagnosis,
    ``output`` what the command printed before it stopped. ``str()`` ends with the tails of both."""

    def __init__(self, message: str, console: str = "", output: str = "") -> None:
        self.reason = message
        self.console = console
        self.output = output
        text = message
        for title, log in (("output", output), ("console", console)):
            tail = "\n".join(log.splitlines()[-CONSOLE_TAIL_LINES:])
            if tail:
                text += f"\n--- {title} tail ---\n{tail}"
        super().__init__(text)

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (type(self), (self.reason, self.console, self.output))


class VMSetupError(VMError):
    """The kernel, initramfs or qemu is missing or unusable on this host (nothing was booted)."""


class VMKernelMissingError(VMSetupError):
    """No usable kernel of the wanted tier is installed (``tier`` names it); nothing was booted."""

    def __init__(self, message: str, console: str = "", output: str = "", tier: str = "") -> None:
        super().__init__(message, console, output)
        self.tier = tier

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (type(self), (self.reason, self.console, self.output, self.tier))


class VMBootError(VMError):
    """qemu exited without the guest reporting an exit status (boot, module or mount failure)."""


class VMTimeoutError(VMError):
    """The guest did not finish within ``timeout_s``; qemu was killed."""


@dataclass(frozen=True, slots=True)
class VMResult:
    """What one guest run gave back.

    ``returncode``: the command's exit status (128+N if killed by signal N, 127 if *workdir* or the
    program is missing). ``output``: its stdout and stderr, interleaved. ``duration_s``: wall seconds from
    starting qemu to its exit (boot included). ``console``: the serial console (kernel and /init lines).
    ``kernel_release``: the release the guest booted.
    """

    returncode: int
    output: str
    duration_s: float
    console: str
    kernel_release: str = ""


@dataclass(frozen=True, slots=True)
class VMImage:
    """A bootable pair for one kernel: ``vmlinux`` (ELF with PVH note), ``initramfs`` (cpio newc)."""

    kernel: GuestKernel
    vmlinux: Path
    initramfs: Path


def kernel_for(tier_series: str | None = None) -> GuestKernel:
    """The kernel of the tier named *tier_series* (default: the first tier, 6.1).

    Raises VMKernelMissingError when that tier has no usable kernel on this host.
    """
    try:
        tier = DEFAULT_TIER if tier_series is None else tier_named(tier_series)
    except KeyError as err:
        raise VMSetupError(err.args[0]) from None
    try:
        return find_kernel(tier)
    except KernelNotFoundError as err:
        raise VMKernelMissingError(str(err), tier=tier.series) from err


def _cache_key(kernel: GuestKernel) -> str:
    h = hashlib.sha256(f"{HARNESS_VERSION}\0{kernel.release}\0{kernel.modules_dir}\0{INIT_SCRIPT}".encode())
    for p in (kernel.vmlinuz, BUSYBOX):
        st = p.stat()
        h.update(f"\0{p}\0{st.st_size}\0{st.st_mtime_ns}".encode())
    return f"{kernel.tier}-{kernel.release}-{h.hexdigest()[:12]}"


def _write_atomically(path: Path, data: bytes) -> None:
    # Several engineers' test runs may build the same entry at once: each writes its own temp file and
    # the rename makes whichever finishes last the (identical) winner, never a half-written file.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _other_tiers_entry(name: str, tier: str) -> bool:
    # "6.1-..." must not claim "6.12-...": compare the whole tier prefix up to its dash.
    return any(name.startswith(f"{t.series}-") for t in TIERS if t.series != tier)


def ensure_image(kernel: GuestKernel | None = None, cache_dir: Path = CACHE_DIR) -> VMImage:
    """The cached VMImage for *kernel* (default: the first tier's), building it first if needed (about 1 s).

    Raises VMSetupError when the kernel, its modules or busybox are missing or the kernel cannot be used.
    """
    if kernel is None:
        kernel = kernel_for()
    release = kernel.release
    if not BUSYBOX.exists():
        raise VMSetupError(f"{BUSYBOX} missing (apt-get install busybox-static; .ci/setup does)")
    entry = cache_dir / _cache_key(kernel)
    image = VMImage(kernel, entry / "vmlinux", entry / "initramfs.cpio")
    if image.vmlinux.exists() and image.initramfs.exists():
        os.utime(entry)  # marks the entry in use, so a build of another key leaves it alone for a while
        return image
    try:
        entry.mkdir(parents=True, exist_ok=True)
        _write_atomically(image.initramfs, build_initramfs(release, BUSYBOX, kernel.modules_dir.parent))
        _write_atomically(image.vmlinux, extract_vmlinux(kernel.vmlinuz))
    except (OSError, KernelImageError, InitramfsError, subprocess.CalledProcessError) as err:
        raise VMSetupError(f"building the VM image for {release} in {entry}: {err}") from err
    now = time.time()
    for stale in cache_dir.iterdir():
        # Old keys are dead weight (about 70 MB each). An entry touched in the last few minutes may be
        # about to boot in another engineer's run (of older code): leave it for the next build. Another
        # tier's entry is that tier's to prune.
        if (
            stale.is_dir()
            and stale != entry
            and not _other_tiers_entry(stale.name, kernel.tier)
            and now - stale.stat().st_mtime > STALE_CACHE_AGE_S
        ):
            shutil.rmtree(stale, ignore_errors=True)  # a concurrent run may be removing it too
    return image


def host_tsc_khz() -> int | None:
    """The host's TSC rate in kHz from /proc/cpuinfo "cpu MHz", None if absent.

    Under TCG the guest's rdtsc reads the host TSC (qemu cpu_get_host_ticks), so this is the guest's TSC
    rate too. On hosts with cpufreq "cpu MHz" is the current clock instead: the guest clock then runs
    somewhat fast or slow, which changes timing only, never outcomes.
    """
    with open("/proc/cpuinfo") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key.strip() == "cpu MHz":
                return round(float(value) * 1000)
    return None


def kernel_cmdline() -> str:
    """The guest's kernel command line.

    ``tsc_early_khz`` (Documentation/admin-guide/kernel-parameters.txt) skips TSC calibration against
    the PIT, which under TCG on a loaded host fails ("tsc: Unable to calibrate against PIT"); microvm has
    no HPET or PM timer to fall back on, and the boot then hangs. ``tsc=reliable`` keeps the clocksource
    watchdog from dropping the TSC over emulation jitter. ``reboot=t`` plus qemu's ``-no-reboot`` turn
    the guest's final reboot (and a panic, via ``panic=-1``) into qemu exiting.
    """
    args = ["console=ttyS0", "quiet", "panic=-1", "reboot=t", "tsc=reliable"]
    khz = host_tsc_khz()
    if khz:
        args.append(f"tsc_early_khz={khz}")
    return " ".join(args)


def qemu_argv(image: VMImage, ctl_dir: Path, workdir: Path | None, console_log: Path) -> list[str]:
    """The qemu command line: microvm, TCG, serial console to *console_log*, 9p shares root/ctl/work.

    microvm gives virtio over MMIO only and passes the devices on the kernel command line
    (virtio_mmio.device=..., handed to the module by /init).
    """
    shares = [("root", Path("/"), True), ("ctl", ctl_dir, False)]
    if workdir is not None:
        shares.append(("work", workdir, False))
    argv = [
        "qemu-system-x86_64", "-M", "microvm", "-accel", "tcg", "-cpu", "max", "-m", f"{MEMORY_MB}M",
        "-smp", "1", "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
        "-chardev", f"file,id=console,path={console_log}", "-serial", "chardev:console",
        "-kernel", str(image.vmlinux), "-initrd", str(image.initramfs),
        "-append", kernel_cmdline(),
    ]  # fmt: skip
    for tag, path, readonly in shares:
        ro = ",readonly=on" if readonly else ""
        argv += [
            "-fsdev", f"local,id={tag},path={path},security_model=none,multidevs=remap{ro}",
            "-device", f"virtio-9p-device,fsdev={tag},mount_tag={tag}",
        ]  # fmt: skip
    return argv


def job_script(argv: list[str], env: dict[str, str], cwd: Path) -> str:
    """The /bin/sh script the guest runs in the chroot: cd to *cwd*, exec *argv* with exactly *env*."""
    assignments = " ".join(shlex.quote(f"{k}={v}") for k, v in env.items())
    return f"cd {shlex.quote(str(cwd))} || exit 127\nexec /usr/bin/env -i {assignments} {shlex.join(argv)}\n"


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def run_in_vm(
    argv: list[str],
    *,
    env: dict[str, str],
    workdir: Path | None = None,
    timeout_s: float = 120.0,
    cwd: Path | None = None,
    kernel: GuestKernel | None = None,
) -> VMResult:
    """Boot a guest of *kernel* (default: the first tier's, see tests/vm/kernels.py), run *argv* (as root,
    chrooted in the host's read-only ``/``) and return its VMResult.

    *env* is the command's whole environment. *workdir* (an existing host directory, or None) is shared
    writable at the same path. *cwd* is the command's working directory (default *workdir*, else ``/``),
    a host path seen read-only unless it is inside *workdir* (kept visible even under /tmp). The guest has its own proc,
    sysfs, securityfs, bpffs (/sys/fs/bpf), cgroup2 (/sys/fs/cgroup), devtmpfs and tmpfs /tmp, /run,
    /dev/shm; anything written outside *workdir* is lost at exit.

    *timeout_s* bounds the whole run, boot included (seconds of wall time). qemu never outlives this
    call: it is killed on timeout, on any exception (KeyboardInterrupt too), and by the kernel if this
    process dies (PR_SET_PDEATHSIG via setpriv). Raises VMSetupError (no image or qemu;
    VMKernelMissingError when the tier has no kernel), VMTimeoutError,
    or VMBootError (qemu exited without an exit status from the guest); each carries the console log.
    """
    image = ensure_image(kernel)
    qemu = shutil.which("qemu-system-x86_64")
    if qemu is None:
        raise VMSetupError("qemu-system-x86_64 missing (apt-get install qemu-system-x86; .ci/setup does)")
    if workdir is not None:
        workdir = Path(workdir).resolve()
        if not workdir.is_dir():
            raise VMSetupError(f"workdir {workdir} is not a directory")
    with tempfile.TemporaryDirectory(prefix="pybpfguard-vm-") as run_dir:
        ctl = Path(run_dir) / "ctl"
        ctl.mkdir()
        console_log = Path(run_dir) / "console.log"
        (ctl / "workdir").write_text(str(workdir) if workdir is not None else "")
        cwd = Path(cwd).resolve() if cwd is not None else workdir or Path("/")
        (ctl / "job").write_text(job_script(argv, env, cwd))
        hidden = cwd.is_relative_to("/tmp") and not (workdir is not None and cwd.is_relative_to(workdir))
        (ctl / "keep").write_text(str(cwd) if hidden else "")
        cmd = qemu_argv(image, ctl, workdir, console_log)
        setpriv = shutil.which("setpriv")
        if setpriv is not None:
            cmd = [setpriv, "--pdeathsig", "KILL", "--", *cmd]
        start = time.monotonic()
        with open(Path(run_dir) / "qemu.log", "wb") as qemu_log:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=qemu_log, stderr=subprocess.STDOUT)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise VMTimeoutError(
                f"guest did not finish {shlex.join(argv)!r} within {timeout_s:.0f} s (qemu killed)",
                _read(console_log) + _read(Path(run_dir) / "qemu.log"),
                _read(ctl / "output"),
            ) from None
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        duration_s = time.monotonic() - start
        console = _read(console_log) + _read(Path(run_dir) / "qemu.log")
        output = _read(ctl / "output")
        rc_text = _read(ctl / "rc").strip()
        if not rc_text.isdigit():
            raise VMBootError(
                f"qemu exited ({proc.returncode}) after {duration_s:.1f} s without the guest's exit status",
                console,
                output,
            )
        return VMResult(int(rc_text), output, duration_s, console, image.kernel.release)
