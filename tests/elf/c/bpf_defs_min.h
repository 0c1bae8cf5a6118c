/* For programs that need no kernel types. */
#pragma once
#define SEC(name) __attribute__((section(name), used))
