import Synchronization

/// What `pdb replication status` shows (spec/cli.md#replication-status): per partition of the
/// host its role, epoch and LSN, and per replica of a primary partition the connection and its
/// lag. Encoded as the command's `--json` object.
public struct ReplicationStatus: Codable, Sendable, Equatable {
    public struct Replica: Codable, Sendable, Equatable {
        public var host: String
        /// `disconnected`, `snapshot` (a snapshot is being sent) or `streaming`.
        public var state: String
        public var durableLSN: UInt64
        public var lagCommits: UInt64
        public var lagBytes: UInt64
        public var lagMilliseconds: UInt64
        public var bytesShipped: UInt64
        /// Of the batches: uncompressed change-set bytes per byte shipped, times 100 (250 = 2.5 : 1).
        public var compressionRatioPercent: UInt64
        public var snapshotsSent: UInt64
        public var lastError: String?

        enum CodingKeys: String, CodingKey {
            case host, state
            case durableLSN = "durable_lsn"
            case lagCommits = "lag_commits"
            case lagBytes = "lag_bytes"
            case lagMilliseconds = "lag_ms"
            case bytesShipped = "bytes_shipped"
            case compressionRatioPercent = "compression_ratio_percent"
            case snapshotsSent = "snapshots_sent"
            case lastError = "last_error"
        }
    }

    public struct Partition: Codable, Sendable, Equatable {
        public var name: String
        /// `primary`, `replica`, or `fenced` (promoted here, but the promotion did not finish).
        public var role: String
        public var epoch: UInt64
        public var lastLSN: UInt64
        /// The primary's host id (on a replica).
        public var primary: String?
        /// On a replica: `connecting`, `snapshot`, `streaming` or `refused`.
        public var state: String?
        public var retainedBytes: UInt64?
        public var oldestRetainedLSN: UInt64?
        public var replicas: [Replica]?
        public var lastError: String?
        /// The commits this host's copy had that a newer epoch's primary never had, cut at
        /// rejoin and kept (spec/replication.md#rejoin); empty when none.
        public var cut: [Cut]

        enum CodingKeys: String, CodingKey {
            case name, role, epoch, primary, state, replicas, cut
            case lastLSN = "last_lsn"
            case retainedBytes = "retained_bytes"
            case oldestRetainedLSN = "oldest_retained_lsn"
            case lastError = "last_error"
        }
    }

    /// Commits cut from one copy at one rejoin: LSNs `fromLSN...toLSN` of `epoch`, kept in the
    /// backup file `file` (`pdb restore` makes it a database to read).
    public struct Cut: Codable, Sendable, Equatable {
        public var epoch: UInt64
        public var fromLSN: UInt64
        public var toLSN: UInt64
        public var commits: UInt64
        public var file: String

        enum CodingKeys: String, CodingKey {
            case epoch, commits, file
            case fromLSN = "from_lsn"
            case toLSN = "to_lsn"
        }
    }

    public var host: String
    public var region: String
    public var partitions: [Partition]
    /// Replication requests this host refused (identity, role, border, epoch), since it started.
    public var refusals: UInt64
}

/// The figures of one replica of one primary partition, updated by its stream.
final class ReplicaFigures: Sendable {
    struct Values {
        var state = "disconnected"
        var durableLSN: UInt64 = 0
        var bytesShipped: UInt64 = 0
        /// Bytes of batch frames, and of the change sets they carried uncompressed (the
        /// compression ratio).
        var batchBytesShipped: UInt64 = 0
        var uncompressedBytesShipped: UInt64 = 0
        var snapshotsSent: UInt64 = 0
        var lastError: String?
    }

    let host: String
    let values = Mutex(Values())

    init(host: String) { self.host = host }
}
