// The few primitives the engine needs that Swift's standard library lacks: atomic byte flags
// for the pager's lock-free read path, and CRC-32C with the CPU's instruction where there is one.
#ifndef CPARTITIONSUPPORT_H
#define CPARTITIONSUPPORT_H

#include <stddef.h>
#include <stdint.h>

// Atomic flags: one byte per page, read with acquire and written with release ordering (C11
// builtins, which ThreadSanitizer understands).
static inline uint8_t pdb_flag_load(const uint8_t *flags, uint64_t index) {
    return __atomic_load_n(&flags[index], __ATOMIC_ACQUIRE);
}

static inline void pdb_flag_store(uint8_t *flags, uint64_t index, uint8_t value) {
    __atomic_store_n(&flags[index], value, __ATOMIC_RELEASE);
}

static inline uint64_t pdb_u64_load(const uint64_t *value) { return __atomic_load_n(value, __ATOMIC_ACQUIRE); }

static inline void pdb_u64_store(uint64_t *value, uint64_t newValue) {
    __atomic_store_n(value, newValue, __ATOMIC_RELEASE);
}

/// Continues the CRC-32C (Castagnoli) `crc` (start with 0) over `count` bytes at `data`.
uint32_t pdb_crc32c(uint32_t crc, const void *data, size_t count);

#endif
