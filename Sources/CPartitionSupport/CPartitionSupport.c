// sync_file_range is a GNU extension of <fcntl.h>.
#define _GNU_SOURCE
#include "CPartitionSupport.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>

int pdb_start_writeback(int fd, int64_t offset, int64_t length) {
#if defined(__linux__)
    return sync_file_range(fd, offset, length, SYNC_FILE_RANGE_WRITE) == 0 ? 0 : errno;
#else
    (void)fd;
    (void)offset;
    (void)length;
    return 0;
#endif
}

// Reflected polynomial 0x82F63B78. The table serves CPUs without the CRC32 instruction.
static uint32_t table[256];
static int tableReady = 0;

static void buildTable(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t crc = i;
        for (int k = 0; k < 8; k++) crc = (crc & 1) ? (crc >> 1) ^ 0x82F63B78u : crc >> 1;
        table[i] = crc;
    }
    __atomic_store_n(&tableReady, 1, __ATOMIC_RELEASE);
}

static uint32_t crc32cSoftware(uint32_t crc, const uint8_t *p, size_t n) {
    if (!__atomic_load_n(&tableReady, __ATOMIC_ACQUIRE)) buildTable();
    uint32_t c = ~crc;
    while (n--) c = table[(c ^ *p++) & 0xFF] ^ (c >> 8);
    return ~c;
}

#if defined(__x86_64__)
// The CRC32 instruction takes 3 cycles but can start every cycle, so one dependent chain runs at
// a third of the instruction's speed. Three independent chains over three lanes of a block run
// at full speed, and are then combined: running a CRC register over n zero bytes is linear in
// the register, so it is 4 table lookups (one table of 256 entries per register byte). Pages are
// sealed and verified on every commit and first read; this makes that a third as costly.
enum { laneBytes = 256 };
static uint32_t shiftOneLane[4][256];
static uint32_t shiftTwoLanes[4][256];

__attribute__((target("sse4.2"))) static uint32_t crc32cZeros(uint32_t crc, size_t count) {
    uint64_t c = crc;
    for (size_t i = 0; i < count / 8; i++) c = __builtin_ia32_crc32di(c, 0);
    return (uint32_t)c;
}

__attribute__((constructor)) static void buildShiftTables(void) {
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("sse4.2")) return;
    for (int k = 0; k < 4; k++) {
        for (uint32_t b = 0; b < 256; b++) {
            shiftOneLane[k][b] = crc32cZeros(b << (8 * k), laneBytes);
            shiftTwoLanes[k][b] = crc32cZeros(b << (8 * k), 2 * laneBytes);
        }
    }
}

static inline uint32_t shiftCRC(const uint32_t table[4][256], uint32_t crc) {
    return table[0][crc & 0xFF] ^ table[1][(crc >> 8) & 0xFF] ^ table[2][(crc >> 16) & 0xFF] ^ table[3][crc >> 24];
}

__attribute__((target("sse4.2"))) static uint32_t crc32cHardware(uint32_t crc, const uint8_t *p, size_t n) {
    uint64_t c = (uint32_t)~crc;
    while (n >= 3 * laneBytes) {
        uint64_t c1 = 0, c2 = 0;
        for (size_t i = 0; i < laneBytes; i += 8) {
            uint64_t w0, w1, w2;
            memcpy(&w0, p + i, 8);
            memcpy(&w1, p + laneBytes + i, 8);
            memcpy(&w2, p + 2 * laneBytes + i, 8);
            c = __builtin_ia32_crc32di(c, w0);
            c1 = __builtin_ia32_crc32di(c1, w1);
            c2 = __builtin_ia32_crc32di(c2, w2);
        }
        c = shiftCRC(shiftTwoLanes, (uint32_t)c) ^ shiftCRC(shiftOneLane, (uint32_t)c1) ^ (uint32_t)c2;
        p += 3 * laneBytes;
        n -= 3 * laneBytes;
    }
    while (n >= 8) {
        uint64_t word;
        memcpy(&word, p, 8);
        c = __builtin_ia32_crc32di(c, word);
        p += 8;
        n -= 8;
    }
    uint32_t c32 = (uint32_t)c;
    while (n--) c32 = __builtin_ia32_crc32qi(c32, *p++);
    return ~c32;
}
#endif

uint32_t pdb_crc32c(uint32_t crc, const void *data, size_t count) {
#if defined(__x86_64__)
    if (__builtin_cpu_supports("sse4.2")) return crc32cHardware(crc, (const uint8_t *)data, count);
#endif
    return crc32cSoftware(crc, (const uint8_t *)data, count);
}
