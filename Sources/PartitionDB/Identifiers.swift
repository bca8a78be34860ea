/// A data-residency zone such as `eu` or `us`: 1 to 31 characters of `a-z`, `0-9` and `-`.
/// `global` is reserved for the residency directory.
public struct Region: Hashable, Sendable, CustomStringConvertible, Comparable {
    public let name: String

    public static let global = Region(unchecked: "global")
    public static let maxLength = 31

    public init(_ name: String) throws {
        guard !name.isEmpty, name.utf8.count <= Region.maxLength else {
            throw PartitionDBError.invalidName(kind: "region", name: name, reason: "must be 1 to 31 characters")
        }
        guard name.utf8.allSatisfy({ ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2D }) else {
            throw PartitionDBError.invalidName(kind: "region", name: name, reason: "use only a-z, 0-9 and -")
        }
        self.name = name
    }

    init(unchecked name: String) { self.name = name }

    public var isGlobal: Bool { name == Region.global.name }
    public var description: String { name }
    public static func < (a: Region, b: Region) -> Bool { a.name < b.name }
}

/// The opaque, pseudonymous id of the person a record is about: 1 to 128 bytes of UTF-8.
public struct SubjectID: Hashable, Sendable, CustomStringConvertible {
    public let rawValue: String
    public static let maxLength = 128

    public init(_ rawValue: String) throws {
        let size = rawValue.utf8.count
        guard size > 0 else {
            throw PartitionDBError.invalidName(kind: "subject", name: rawValue, reason: "must not be empty")
        }
        guard size <= SubjectID.maxLength else {
            throw PartitionDBError.ownerTooLarge(size: size, limit: SubjectID.maxLength)
        }
        self.rawValue = rawValue
    }

    public var description: String { rawValue }
}

/// Log sequence number: the position of a commit in a partition's history. The first commit is 1.
public struct LSN: Hashable, Sendable, Comparable, CustomStringConvertible {
    public var rawValue: UInt64
    public init(_ rawValue: UInt64) { self.rawValue = rawValue }
    public static let zero = LSN(0)
    public static func < (a: LSN, b: LSN) -> Bool { a.rawValue < b.rawValue }
    public var description: String { String(rawValue) }
    public var next: LSN { LSN(rawValue + 1) }
}

/// The number of a page in a partition file; page 0 is the header.
struct PageNumber: Hashable, Sendable, Comparable, CustomStringConvertible {
    var rawValue: UInt32
    init(_ rawValue: UInt32) { self.rawValue = rawValue }
    static let header = PageNumber(0)
    /// Stored in link fields to mean "no page".
    static let none = PageNumber(0)
    static func < (a: PageNumber, b: PageNumber) -> Bool { a.rawValue < b.rawValue }
    var description: String { String(rawValue) }
}

/// How a commit reaches the disk.
public enum Durability: Sendable {
    /// The commit is on disk when `write` returns: one fsync of the log per commit.
    case durable
    /// No fsync: a crash may lose the latest commits, but recovery always finds a commit boundary.
    case noSync
}

/// Partition and table names: 1 to 63 bytes of `a-z`, `A-Z`, `0-9`, `_`, `-` and `.`, not starting with `.`.
enum Names {
    static func validate(_ name: String, kind: String, maxLength: Int = 63) throws {
        guard !name.isEmpty, name.utf8.count <= maxLength else {
            throw PartitionDBError.invalidName(kind: kind, name: name, reason: "must be 1 to \(maxLength) characters")
        }
        guard name.utf8.first != 0x2E,
            name.utf8.allSatisfy({
                ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x5F
                    || $0 == 0x2D || $0 == 0x2E
            })
        else {
            throw PartitionDBError.invalidName(
                kind: kind, name: name, reason: "use only letters, digits, _, - and ., and do not start with .")
        }
    }
}
