#include "CPartitionSupport.h"

#include <string.h>

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
__attribute__((target("sse4.2"))) static uint32_t crc32cHardware(uint32_t crc, const uint8_t *p, size_t n) {
    uint64_t c = (uint32_t)~crc;
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
