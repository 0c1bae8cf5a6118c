"""The VM test tier: boots stock kernels under QEMU (TCG, -M microvm) to run what this host refuses (BPF LSM).

Modules: ``kernels`` (which kernel each tier boots: 6.1, 6.12), ``kernel_image`` (vmlinux from a
bzImage), ``initramfs`` (cpio newc + busybox /init), ``harness`` (``run_in_vm``), ``guest_pytest`` (one
guest pytest run per kernel tier), ``pytest_items`` (the host items that report each guest verdict).
"""
