#!/usr/bin/env python3
"""Rewrites a format-1 partition file (2-byte node slots) in format 2 (6-byte slots holding each
key's head; spec/file-format.md#leaf-and-branch-pages), keeping every cell's bytes, and seals
each page again.

    scripts/convert-format-1-to-2.py OLD.pdb NEW.pdb            a real partition file
    scripts/convert-format-1-to-2.py --forged OLD.pdb NEW.pdb   a fuzz input

The partition must have been closed cleanly by the release that wrote it, so that its log is
empty: the log's frames are not converted (remove the empty NAME.pdb-log before opening the new
file). Every page's format-1 checksum is verified first and a damaged page stops the
conversion; with --forged (used for the fuzz findings in Fuzz/corpus) damaged or unparsable
pages are carried over as they are and every page is sealed, so a forged input stays forged.
Run `pdb check` on the result."""
import struct, sys

def crc32c_table():
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        t.append(c)
    return t
T = crc32c_table()
def crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c = T[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF

def convert_node(page, P):
    kind = page[4]
    n = struct.unpack_from('<H', page, 6)[0]
    link = struct.unpack_from('<I', page, 12)[0]
    cells = []
    for i in range(n):
        off = struct.unpack_from('<H', page, 20 + 2 * i)[0]
        if kind == 2:
            if off + 8 > P: return None
            k, o, vk, vl = struct.unpack_from('<HBBI', page, off)
            size = 8 + k + o + (4 if vk else vl)
            key = page[off + 8: off + 8 + k]
        else:
            if off + 6 > P: return None
            k = struct.unpack_from('<H', page, off + 4)[0]
            size = 6 + k
            key = page[off + 6: off + 6 + k]
        if off + size > P: return None
        cells.append((page[off:off + size], key))
    out = bytearray(P)
    out[4] = kind
    end = P
    for i, (cell, key) in enumerate(cells):
        end -= len(cell)
        if end < 20 + 6 * (i + 1): return None
        out[end:end + len(cell)] = cell
        head = (bytes(key[:4]) + b'\0\0\0\0')[:4]
        struct.pack_into('<H', out, 20 + 6 * i, end)
        out[20 + 6 * i + 2: 20 + 6 * i + 6] = head
    struct.pack_into('<HII', out, 6, n, end, link)
    return out

args = sys.argv[1:]
forged = args[:1] == ['--forged']
if forged: args = args[1:]
if len(args) != 2: sys.exit('usage: convert-format-1-to-2.py [--forged] OLD.pdb NEW.pdb')
data = bytearray(open(args[0], 'rb').read())
P = struct.unpack_from('<I', data, 20)[0]
if struct.unpack_from('<I', data, 16)[0] != 1: sys.exit(f'{args[0]}: not a format 1 partition file')
struct.pack_into('<I', data, 16, 2)
converted = 0
for number in range(len(data) // P):
    page = data[number * P:(number + 1) * P]
    sealed = struct.unpack_from('<I', page, 0)[0]
    # Page 0 is checked before its version field changes.
    original = bytearray(page)
    if number == 0: struct.pack_into('<I', original, 16, 1)
    if sealed != crc32c(original[4:]) ^ ((number * 0x9E3779B1) & 0xFFFFFFFF) and not forged:
        sys.exit(f'{args[0]}: page {number} fails its checksum; nothing written')
    if number > 0 and page[4] in (2, 3):
        new = convert_node(page, P)
        if new is None and not forged:
            sys.exit(f'{args[0]}: page {number} is not a format-1 node; nothing written')
        if new is not None:
            page = new
            converted += 1
    crc = crc32c(page[4:]) ^ ((number * 0x9E3779B1) & 0xFFFFFFFF)
    struct.pack_into('<I', page, 0, crc)
    data[number * P:(number + 1) * P] = page
open(args[1], 'wb').write(data)
print(f'{args[0]} -> {args[1]}: page size {P}, {len(data) // P} pages, {converted} nodes converted')
