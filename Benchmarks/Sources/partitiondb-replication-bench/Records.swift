import Crypto
import Foundation

/// The records both systems write, byte for byte the same: record `i`'s key is the first 24 bytes
/// of SHA-256 of `i` as 8 big-endian bytes, its value the first 150 bytes of
/// SHA-512(i) ‖ SHA-512(i ^ 1) ‖ SHA-512(i ^ 2). PostgreSQL computes them with `bench_key(i)` and
/// `bench_value(i)` (`sqlFunctions`), which the benchmark checks against these before it runs.
/// Random-looking bytes, so neither compression nor a storage layout gains from patterns; the
/// sizes are redb's (and the engine benchmark's): 24-byte keys, 150-byte values.
enum Records {
    static let keySize = 24
    static let valueSize = 150
    static let table = "bench"

    /// Writes record `index`'s key and value into the two buffers.
    static func write(_ index: Int64, key: UnsafeMutableRawBufferPointer, value: UnsafeMutableRawBufferPointer) {
        precondition(key.count == keySize && value.count == valueSize, "record buffers of 24 and 150 bytes")
        let keyDigest = hash256(index)
        keyDigest.withUnsafeBytes { key.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[0..<keySize])) }
        var offset = 0
        for variant in [index, index ^ 1, index ^ 2] where offset < valueSize {
            let digest = hash512(variant)
            digest.withUnsafeBytes { bytes in
                let count = min(bytes.count, valueSize - offset)
                UnsafeMutableRawBufferPointer(rebasing: value[offset..<(offset + count)])
                    .copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes[0..<count]))
                offset += count
            }
        }
    }

    /// Record `index` as arrays, for checks.
    static func record(_ index: Int64) -> (key: [UInt8], value: [UInt8]) {
        var key = [UInt8](repeating: 0, count: keySize)
        var value = [UInt8](repeating: 0, count: valueSize)
        key.withUnsafeMutableBytes { key in
            value.withUnsafeMutableBytes { value in write(index, key: key, value: value) }
        }
        return (key, value)
    }

    private static func hash256(_ index: Int64) -> SHA256.Digest {
        withUnsafeBytes(of: index.bigEndian) { SHA256.hash(data: $0) }
    }

    private static func hash512(_ index: Int64) -> SHA512.Digest {
        withUnsafeBytes(of: index.bigEndian) { SHA512.hash(data: $0) }
    }

    /// PostgreSQL's twins of `write`: `int8send` is the 8 big-endian bytes, `#` is xor.
    static let sqlFunctions = """
        CREATE FUNCTION bench_key(i bigint) RETURNS bytea LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
            AS $$ SELECT substr(sha256(int8send(i)), 1, 24) $$;
        CREATE FUNCTION bench_value(i bigint) RETURNS bytea LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
            AS $$ SELECT substr(sha512(int8send(i)) || sha512(int8send(i # 1)) || sha512(int8send(i # 2)), 1, 150) $$;
        """

    /// Where the records of each timed phase start: far above the catch-up load's 1 ..< N, and
    /// apart from each other, so no phase replaces another's records.
    static func phaseBase(_ phase: Int) -> Int64 { Int64(1) << 40 + Int64(phase) << 32 }
}

extension Array where Element == UInt8 {
    var hex: String { map { String(format: "%02x", $0) }.joined() }
}
