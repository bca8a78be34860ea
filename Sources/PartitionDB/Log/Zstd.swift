import CZstd

/// Streaming zstd compression over a file handle, for backups (and log shipping later).
/// Each instance owns its zstd context; it is not shared between threads.
final class ZstdWriter {
    private let stream: OpaquePointer
    private let file: any FileHandle
    private(set) var offset: UInt64
    private var output: [UInt8]

    init(file: any FileHandle, offset: UInt64, level: Int32 = 3) throws {
        guard let stream = ZSTD_createCStream() else {
            throw PartitionDBError.compression(reason: "cannot allocate a stream")
        }
        self.stream = stream
        self.file = file
        self.offset = offset
        self.output = [UInt8](repeating: 0, count: Int(ZSTD_CStreamOutSize()))
        try check(ZSTD_CCtx_setParameter(stream, ZSTD_c_compressionLevel, level))
        try check(ZSTD_CCtx_setParameter(stream, ZSTD_c_checksumFlag, 1))
    }

    deinit { ZSTD_freeCStream(stream) }

    private func check(_ code: Int) throws {
        if ZSTD_isError(code) != 0 {
            throw PartitionDBError.compression(reason: String(cString: ZSTD_getErrorName(code)))
        }
    }

    func write(_ bytes: [UInt8]) throws { try run(bytes, directive: ZSTD_e_continue) }

    /// Ends the zstd frame and writes what is left.
    func finish() throws { try run([], directive: ZSTD_e_end) }

    private func run(_ bytes: [UInt8], directive: ZSTD_EndDirective) throws {
        try bytes.withUnsafeBytes { source in
            var input = ZSTD_inBuffer(src: source.baseAddress, size: source.count, pos: 0)
            while true {
                let (remaining, produced): (Int, Int) = try output.withUnsafeMutableBytes { target in
                    var out = ZSTD_outBuffer(dst: target.baseAddress, size: target.count, pos: 0)
                    let remaining = ZSTD_compressStream2(stream, &out, &input, directive)
                    try check(remaining)
                    return (remaining, out.pos)
                }
                if produced > 0 {
                    try output.withUnsafeBytes {
                        try file.write(UnsafeRawBufferPointer(rebasing: $0[0..<produced]), at: offset)
                    }
                    offset += UInt64(produced)
                }
                let done = directive == ZSTD_e_end ? remaining == 0 : input.pos == input.size
                if done { return }
            }
        }
    }
}

/// Streaming zstd decompression from a file handle.
final class ZstdReader {
    private let stream: OpaquePointer
    private let file: any FileHandle
    private var offset: UInt64
    private let end: UInt64
    private var input: [UInt8] = []
    private var inputPosition = 0
    private var pending: [UInt8] = []
    private var frameEnded = false

    init(file: any FileHandle, offset: UInt64) throws {
        guard let stream = ZSTD_createDStream() else {
            throw PartitionDBError.compression(reason: "cannot allocate a stream")
        }
        self.stream = stream
        self.file = file
        self.offset = offset
        self.end = try file.size()
    }

    deinit { ZSTD_freeDStream(stream) }

    /// Reads exactly `count` decompressed bytes, or throws when the stream ends first.
    func read(count: Int) throws -> [UInt8] {
        var chunk = [UInt8](repeating: 0, count: Int(ZSTD_DStreamOutSize()))
        while pending.count < count {
            let produced = try step(into: &chunk)
            pending.append(contentsOf: chunk[0..<produced])
            if frameEnded && pending.count < count && produced == 0 {
                throw PartitionDBError.compression(reason: "compressed data ends early")
            }
        }
        let result = Array(pending[0..<count])
        pending.removeFirst(count)
        return result
    }

    /// Checks that the stream ends where the reader is: the frame is complete (zstd has then
    /// verified its content checksum), it holds no more bytes, and nothing follows it in the file.
    func finish() throws {
        var chunk = [UInt8](repeating: 0, count: Int(ZSTD_DStreamOutSize()))
        while !frameEnded {
            guard try step(into: &chunk) == 0, pending.isEmpty else {
                throw PartitionDBError.compression(reason: "the compressed data holds more than expected")
            }
        }
        guard pending.isEmpty else {
            throw PartitionDBError.compression(reason: "the compressed data holds more than expected")
        }
        guard inputPosition == input.count, offset == end else {
            throw PartitionDBError.compression(reason: "bytes follow the compressed data")
        }
    }

    /// Decompresses from the input (reading more of the file when it is used up) into `chunk`;
    /// returns how many bytes it produced.
    private func step(into chunk: inout [UInt8]) throws -> Int {
        if inputPosition == input.count {
            guard offset < end else { throw PartitionDBError.compression(reason: "compressed data ends early") }
            let n = Int(min(UInt64(1 << 17), end - offset))
            input = try file.read(at: offset, count: n)
            offset += UInt64(n)
            inputPosition = 0
        }
        return try input.withUnsafeBytes { source in
            try chunk.withUnsafeMutableBytes { target in
                var inBuffer = ZSTD_inBuffer(src: source.baseAddress, size: source.count, pos: inputPosition)
                var outBuffer = ZSTD_outBuffer(dst: target.baseAddress, size: target.count, pos: 0)
                let result = ZSTD_decompressStream(stream, &outBuffer, &inBuffer)
                if ZSTD_isError(result) != 0 {
                    throw PartitionDBError.compression(reason: String(cString: ZSTD_getErrorName(result)))
                }
                if result == 0 { frameEnded = true }
                inputPosition = inBuffer.pos
                return outBuffer.pos
            }
        }
    }
}
