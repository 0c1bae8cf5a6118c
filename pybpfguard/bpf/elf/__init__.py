"""ELF objects built by clang: loading and CO-RE relocation."""
