import Foundation

@testable import PartitionDB

/// Fuzz target `partition`: the input is a partition file. It is opened as partition `p` of a
/// database of region `eu` (no log), checked, and read through every read path; when `check()`
/// finds it clean, a write follows and the result must still check clean. The same input runs a
/// second time with every page's checksum recomputed, so that mutations reach the structure
/// checks behind the checksums. Any `PartitionDBError` is a correct answer; a crash, a hang, an
/// error of another type, or a clean partition damaged by a write is a bug.
/// Method: spec/testing.md#fuzzing

let directory = Scratch.databaseDirectory("partition")

/// PDB_FUZZ_RAW_ONLY=1 skips the resealed run: to tell whether a finding needs forged checksums.
let rawOnly = ProcessInfo.processInfo.environment["PDB_FUZZ_RAW_ONLY"] == "1"

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    openAndRead(bytes)
    if !rawOnly {
        let sealed = resealed(bytes)
        if sealed != bytes { openAndRead(sealed) }
    }
    return 0
}

func openAndRead(_ file: [UInt8]) {
    Scratch.reset(directory)
    Scratch.write(file, to: directory + "/p.pdb")
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

/// `file` with the checksum of every whole page recomputed, the page size taken from the
/// header when it is a valid one (layout: spec/file-format.md#checksums).
func resealed(_ file: [UInt8]) -> [UInt8] {
    var pageSize = 4096
    if file.count >= 24 {
        let stored = Int(file[20]) | Int(file[21]) << 8 | Int(file[22]) << 16 | Int(file[23]) << 24
        if PartitionHeader.isValidPageSize(stored) { pageSize = stored }
    }
    var result = file
    var number = 0
    while (number + 1) * pageSize <= file.count {
        var page = Page(bytes: Array(file[(number * pageSize)..<((number + 1) * pageSize)]))
        page.seal(number: PageNumber(UInt32(number)))
        result.replaceSubrange((number * pageSize)..<((number + 1) * pageSize), with: page.bytes)
        number += 1
    }
    return result
}
