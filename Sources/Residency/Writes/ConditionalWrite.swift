import Foundation
import NIOPosix
import PartitionDB

/// A write that commits only if the records it read are unchanged (a compare and set): an
/// application reads from whatever copy it has, then commits its changes with the values it
/// read as expectations. On a primary or a single host it runs in one write transaction; on a
/// replica host it goes to the partition's primary as `pdb apply` lines with `check`
/// operations (spec/cli.md#apply, spec/replication.md#write-forwarding), so the primary decides
/// and no change is made from a stale read.
public struct ConditionalWrite: Sendable, Equatable {
    public enum Step: Sendable, Equatable {
        /// The record must hold `value`, or be absent when `value` is nil (a missing table holds
        /// no record).
        case expect(table: String, key: [UInt8], value: [UInt8]?)
        /// Inserts or replaces the record, creating the table when it is missing.
        case put(table: String, key: [UInt8], value: [UInt8], owner: SubjectID?)
        /// Removes the record if there is one.
        case delete(table: String, key: [UInt8])
    }

    public var steps: [Step]

    public init(_ steps: [Step] = []) {
        self.steps = steps
    }

    /// Runs the steps in `tx` in order. False when an expectation does not hold: then the
    /// caller must roll `tx` back, since the steps before it were made.
    public func run(in tx: WriteTransaction) throws -> Bool {
        for step in steps {
            switch step {
            case .expect(let table, let key, let value):
                let current = try tx.hasTable(table) ? tx.get(table, key) : nil
                if current != value { return false }
            case .put(let table, let key, let value, let owner):
                try tx.put(table, key, value, owner: owner)
            case .delete(let table, let key):
                try tx.delete(table, key)
            }
        }
        return true
    }

    /// The write as `pdb apply` input: one line per step, keys and values in base64, then a
    /// commit line.
    public var applyLines: [UInt8] {
        struct Line: Encodable {
            var op: String
            var table: String?
            var keyB64: String?
            var valueB64: String?
            var owner: String?
            enum CodingKeys: String, CodingKey {
                case op, table, owner
                case keyB64 = "key_b64"
                case valueB64 = "value_b64"
            }
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        var lines = steps.map { step -> Line in
            switch step {
            case .expect(let table, let key, let value):
                return Line(op: "check", table: table, keyB64: Self.base64(key), valueB64: value.map(Self.base64))
            case .put(let table, let key, let value, let owner):
                return Line(
                    op: "put", table: table, keyB64: Self.base64(key), valueB64: Self.base64(value),
                    owner: owner?.rawValue)
            case .delete(let table, let key):
                return Line(op: "del", table: table, keyB64: Self.base64(key))
            }
        }
        lines.append(Line(op: "commit"))
        var bytes: [UInt8] = []
        for line in lines {
            // Encoding strings and optionals cannot fail.
            bytes += (try? encoder.encode(line)).map(Array.init) ?? []
            bytes.append(0x0A)
        }
        return bytes
    }

    private static func base64(_ bytes: [UInt8]) -> String { Data(bytes).base64EncodedString() }
}

/// Where conditional writes commit: `LocalCommits` in a database of its own, `ClusterHost` on
/// the partition's primary (forwarding from a replica host). A commit returns once it is
/// durable and satisfies the partition's commit mode, and once this host's copy holds it, so the
/// caller reads its own write where it made it.
public protocol ConditionalCommitting: Sendable {
    /// Commits `write` to `partition` if every expectation holds; false (nothing written) when
    /// one does not.
    func commit(_ write: ConditionalWrite, to partition: String) async throws -> Bool
}

/// Conditional writes in a database this process owns (a single host, or the tests), as
/// durable commits on NIO's shared blocking pool.
public struct LocalCommits: ConditionalCommitting {
    public let database: Database

    public init(database: Database) {
        self.database = database
    }

    public func commit(_ write: ConditionalWrite, to partition: String) async throws -> Bool {
        let database = self.database
        return try await NIOThreadPool.singleton.runIfActive {
            try Self.commitNow(write, to: try database.partition(partition)) != nil
        }
    }

    /// Runs `write` in one durable transaction of `partition`: its LSN, or nil (rolled back,
    /// nothing committed) when an expectation does not hold.
    static func commitNow(_ write: ConditionalWrite, to partition: Partition) throws -> LSN? {
        do {
            return try partition.write(durability: .durable) { tx in
                guard try write.run(in: tx) else { throw ExpectationFailed() }
                return tx.lsn
            }
        } catch is ExpectationFailed {
            return nil
        }
    }

    private struct ExpectationFailed: Error {}
}
