// The few primitives the engine needs that Swift's standard library lacks: atomic words and
// bitmaps for the pager's lock-free read path, a cache prefetch hint, CRC-32C with the CPU's
// instruction where there is one, and SHA-256 for content checksums.
#ifndef CPARTITIONSUPPORT_H
#define CPARTITIONSUPPORT_H

#include <stddef.h>
#include <stdint.h>

// Atomic 64-bit words, read with acquire and written with release ordering (C11 builtins, which
// ThreadSanitizer understands).
static inline uint64_t pdb_u64_load(const uint64_t *value) { return __atomic_load_n(value, __ATOMIC_ACQUIRE); }

// Atomic bitmaps: one bit per page, so the flags of a large partition stay in the CPU's caches
// (a byte per page would be 8 times larger and miss on every lookup of a big tree).
static inline int pdb_bit_test(const uint64_t *words, uint64_t index) {
    return (int)((__atomic_load_n(&words[index >> 6], __ATOMIC_ACQUIRE) >> (index & 63)) & 1);
}

static inline void pdb_bit_set(uint64_t *words, uint64_t index) {
    __atomic_fetch_or(&words[index >> 6], (uint64_t)1 << (index & 63), __ATOMIC_RELEASE);
}

static inline void pdb_bit_clear(uint64_t *words, uint64_t index) {
    __atomic_fetch_and(&words[index >> 6], ~((uint64_t)1 << (index & 63)), __ATOMIC_RELEASE);
}

static inline void pdb_u64_store(uint64_t *value, uint64_t newValue) {
    __atomic_store_n(value, newValue, __ATOMIC_RELEASE);
}

// Asks the CPU to start loading `count` bytes at `address` into its caches (a hint: no fault,
// no effect on results). A cursor uses it for the next cell while the caller reads the current one.
static inline void pdb_prefetch(const void *address, size_t count) {
    for (size_t offset = 0; offset < count; offset += 64) __builtin_prefetch((const char *)address + offset);
}

// The same for memory about to be written: the lines arrive ready for a store.
static inline void pdb_prefetch_for_write(const void *address, size_t count) {
    for (size_t offset = 0; offset < count; offset += 64) __builtin_prefetch((const char *)address + offset, 1);
}

// Asks the kernel to start writing the file's dirty pages in [offset, offset + length) to the
// disk, without waiting for them (Linux `sync_file_range` with SYNC_FILE_RANGE_WRITE; elsewhere
// nothing). Durability still needs an fsync: this only lets the disk begin earlier. Returns 0 or
// an errno.
int pdb_start_writeback(int fd, int64_t offset, int64_t length);

/// Continues the CRC-32C (Castagnoli) `crc` (start with 0) over `count` bytes at `data`.
uint32_t pdb_crc32c(uint32_t crc, const void *data, size_t count);

/// SHA-256 (SHA256.c), for the content checksum of a partition: init, update any number of
/// times, final.
typedef struct {
    uint32_t state[8];
    uint64_t length;
    uint8_t buffer[64];
    size_t used;
} pdb_sha256;

void pdb_sha256_init(pdb_sha256 *context);
void pdb_sha256_update(pdb_sha256 *context, const void *data, size_t count);
void pdb_sha256_final(pdb_sha256 *context, uint8_t digest[32]);

#endif
