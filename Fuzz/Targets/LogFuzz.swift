import Foundation

@testable import PartitionDB

/// Fuzz target `log`: the input is the write-ahead log `p.pdb-log` of a fixed, valid partition
/// (`LogBase`). Opening the partition recovers the log (frame decoding, LSN continuity, the
/// header from the log) and checkpoints it; then the partition is checked and read through, and
/// when it is clean a write follows that must leave it clean. The same input runs a second time
/// with the log header's fields, the salts and every checksum (page and chained frame checksums)
/// made valid, so that mutations reach what lies behind them. Any `PartitionDBError` is a correct
/// answer; a crash, a hang, another error type, or a clean partition damaged by a write is a bug.
/// Method: spec/testing.md#fuzzing

let directory = Scratch.databaseDirectory("log")
let base = LogBase.make(in: directory)

/// libFuzzer's start hook: with PDB_FUZZ_WRITE_SEEDS=FOLDER, writes the seeds of the
/// `partition` and `log` targets into FOLDER/partition and FOLDER/log and exits.
@_cdecl("LLVMFuzzerInitialize")
public func initialize(_ argc: UnsafeMutableRawPointer?, _ argv: UnsafeMutableRawPointer?) -> CInt {
    if let corpus = ProcessInfo.processInfo.environment["PDB_FUZZ_WRITE_SEEDS"] {
        do {
            try Seeds.write(to: corpus)
        } catch {
            fatalError("cannot write the seeds: \(error)")
        }
        exit(0)
    }
    return 0
}

/// PDB_FUZZ_RAW_ONLY=1 skips the resealed run: to tell whether a finding needs forged checksums.
let rawOnly = ProcessInfo.processInfo.environment["PDB_FUZZ_RAW_ONLY"] == "1"

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let log = Array(UnsafeBufferPointer(start: data, count: size))
    recoverAndRead(log)
    if !rawOnly {
        let sealed = resealed(log)
        if sealed != log { recoverAndRead(sealed) }
    }
    return 0
}

func recoverAndRead(_ log: [UInt8]) {
    Scratch.reset(directory)
    Scratch.write(base, to: directory + "/p.pdb")
    Scratch.write(log, to: directory + "/p.pdb-log")
    guard let database = engine({ try Database.open(at: directory, region: try Region("eu")) }) else {
        fatalError("fuzz: the scratch database does not open")
    }
    database.setResolver(EverySubjectInEU())
    var clean = false
    if let partition = engine({ try database.partition("p") }) {
        clean = readThrough(partition)
    }
    engine { try database.close() }
    if clean { writeAndRecheck(directory, "p") }
}

/// `log` with a valid header for the base partition (magic, version, page size, file id, a
/// non-zero salt, checksum) and every whole frame carrying that salt, a valid page checksum for
/// its page number and a valid chained frame checksum (layout: spec/file-format.md#write-ahead-log).
func resealed(_ log: [UInt8]) -> [UInt8] {
    let headerSize = WriteAheadLog.headerSize
    let frameSize = WriteAheadLog.frameHeaderSize + LogBase.pageSize
    guard log.count >= headerSize else { return log }
    var header = Page(bytes: Array(log[0..<headerSize]))
    header.setBytes(at: 0, WriteAheadLog.magic)
    header.setU32(8, WriteAheadLog.version)
    header.setU32(12, UInt32(LogBase.pageSize))
    header.setBytes(at: 16, LogBase.fileID)
    if header.u64(32) == 0 { header.setU64(32, 1) }
    let salt = header.u64(32)
    header.setU32(60, header.bytes.withUnsafeBytes { CRC32C.update(0, UnsafeRawBufferPointer(rebasing: $0[0..<60])) })
    var result = header.bytes
    var chain: UInt32 = 0
    var offset = headerSize
    while offset + frameSize <= log.count {
        var frameHeader = Page(bytes: Array(log[offset..<(offset + WriteAheadLog.frameHeaderSize)]))
        var image = Page(bytes: Array(log[(offset + WriteAheadLog.frameHeaderSize)..<(offset + frameSize)]))
        frameHeader.setU64(16, salt)
        image.seal(number: PageNumber(frameHeader.u32(0)))
        var crc = frameHeader.bytes.withUnsafeBytes {
            CRC32C.update(chain, UnsafeRawBufferPointer(rebasing: $0[0..<24]))
        }
        crc = image.bytes.withUnsafeBytes { CRC32C.update(crc, UnsafeRawBufferPointer(rebasing: $0[0..<4])) }
        frameHeader.setU32(24, crc)
        chain = crc
        result += frameHeader.bytes + image.bytes
        offset += frameSize
    }
    result += log[offset...]
    return result
}
