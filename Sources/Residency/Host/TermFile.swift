import CPartitionSupport
import Foundation

/// What a host knows of a partition's current epoch and primary beyond its configuration
/// (spec/replication.md#term-files): written, synced and renamed into place in
/// `DATA/terms/NAME` before the host answers a fence or a promotion finishes, so that a restart
/// keeps following the primary a promotion chose whatever the configuration file says.
struct TermFile: Equatable, Sendable {
    var epoch: UInt64
    var primary: String

    static let magic = Array("PDBTERM\0".utf8)
    static let version: UInt32 = 1

    static func path(database: String, partition: String) -> String {
        database + "/terms/" + partition
    }

    /// Magic (8), version (u32), epoch (u64), primary length (u8), primary, CRC-32C (u32) of
    /// everything before it; integers big-endian.
    func encoded() -> [UInt8] {
        var writer = ByteWriter()
        writer.bytes.append(contentsOf: Self.magic)
        writer.u32(Self.version)
        writer.u64(epoch)
        let id = Array(primary.utf8)
        writer.u8(UInt8(id.count))
        writer.bytes.append(contentsOf: id)
        let crc = writer.bytes.withUnsafeBytes { pdb_crc32c(0, $0.baseAddress!, $0.count) }
        writer.u32(crc)
        return writer.bytes
    }

    static func decode(_ bytes: [UInt8], path: String) throws -> TermFile {
        func bad(_ reason: String) -> ResidencyError {
            ResidencyError.termFile(path: path, reason: reason + "; remove it to follow the configuration file")
        }
        guard bytes.count >= 8 + 4 + 8 + 1 + 4, Array(bytes.prefix(8)) == magic else {
            throw bad("is not a term file")
        }
        let crc = bytes.withUnsafeBytes { pdb_crc32c(0, $0.baseAddress!, $0.count - 4) }
        var reader = ByteReader(bytes, from: 8, to: bytes.count - 4)
        var tail = ByteReader(bytes, from: bytes.count - 4, to: bytes.count)
        guard (try? tail.u32()) == crc else { throw bad("has a bad checksum") }
        guard try reader.u32() == version else { throw bad("is of an unknown version") }
        let epoch = try reader.u64()
        let length = Int(try reader.u8())
        let id = try reader.take(length)
        try reader.finish()
        guard epoch >= 1, length > 0, let primary = String(validating: id, as: UTF8.self) else {
            throw bad("holds no epoch or primary")
        }
        return TermFile(epoch: epoch, primary: primary)
    }

    /// The term file of `partition`, nil when there is none.
    static func read(database: String, partition: String) throws -> TermFile? {
        let path = path(database: database, partition: partition)
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        return try decode(Array(data), path: path)
    }

    /// Replaces the term file durably: a temporary file written and synced, renamed over the
    /// old one, and the folder synced.
    func write(database: String, partition: String) throws {
        let folder = database + "/terms"
        let path = Self.path(database: database, partition: partition)
        let temporary = path + ".tmp"
        func fail(_ operation: String) -> ResidencyError {
            ResidencyError.termFile(
                path: path, reason: "cannot be \(operation) (\(String(cString: strerror(errno))))")
        }
        do {
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        } catch {
            throw ResidencyError.termFile(path: folder, reason: "cannot be created (\(error.localizedDescription))")
        }
        let descriptor = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else { throw fail("created") }
        let bytes = encoded()
        let written = bytes.withUnsafeBytes { Foundation.write(descriptor, $0.baseAddress, $0.count) }
        guard written == bytes.count, fsync(descriptor) == 0 else {
            close(descriptor)
            throw fail("written")
        }
        close(descriptor)
        guard rename(temporary, path) == 0 else { throw fail("renamed into place") }
        let directory = open(folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard directory >= 0 else { throw fail("synced") }
        defer { close(directory) }
        guard fsync(directory) == 0 else { throw fail("synced") }
    }
}
