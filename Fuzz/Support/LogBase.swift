import Foundation

@testable import PartitionDB

/// The partition that the `log` target's inputs are logs of. It is built the same way, byte for
/// byte, by the target at start and by the seed generator, so the checked-in seed logs (made by
/// `Fuzz/run.sh seeds`) carry its file id and fit its pages.
enum LogBase {
    /// A fixed file id: the log header must name it.
    static let fileID: [UInt8] = Array("PDB-FUZZ-LOGBASE".utf8)
    static let pageSize = 4096

    /// Creates `directory/p.pdb` (region `eu`): three tables, an overflow value, deleted records
    /// and so free pages; closed, so its log is empty. Returns the file's bytes.
    static func make(in directory: String) -> [UInt8] {
        Scratch.reset(directory)
        let path = directory + "/p.pdb"
        do {
            let eu = try Region("eu")
            try PartitionFile.create(
                at: path, name: "p", region: eu, pageSize: pageSize, fileID: fileID,
                fileSystem: PosixFileSystem())
            let database = try Database.open(at: directory, region: eu)
            database.setResolver(EverySubjectInEU())
            let partition = try database.partition("p")
            try partition.write { tx in
                for i in 0..<60 {
                    let value = [UInt8](repeating: UInt8(i), count: i % 17 == 0 ? 6000 : 40 + i)
                    try tx.put("t\(i % 3)", Array("key-\(i)".utf8), value, owner: try SubjectID("s\(i % 4)"))
                }
            }
            try partition.write { tx in
                for i in stride(from: 0, to: 60, by: 4) { _ = try tx.delete("t\(i % 3)", Array("key-\(i)".utf8)) }
            }
            try database.close()
            return [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        } catch {
            fatalError("fuzz: cannot build the log target's partition: \(error)")
        }
    }
}
