"""The VM test tier: boots a stock kernel under QEMU (TCG, -M microvm) to run what this host refuses (BPF LSM).

Modules: ``kernel_image`` (vmlinux from /boot/vmlinuz), ``initramfs`` (cpio newc + busybox /init),
``harness`` (``run_in_vm``), ``guest_pytest`` (one guest pytest run for the whole tests/lsm tier).
"""
