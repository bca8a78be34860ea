/// Settings of an open database. The defaults suit a server.
public struct Options: Sendable {
    /// Page size of newly created partitions: a power of two from 4096 to 32768.
    public var pageSize: Int = 4096
    /// Log frames (and, where the partition file cannot be mapped, file pages) kept in memory
    /// per partition. Pages of the partition file are read through the file mapping instead.
    public var cachePages: Int = 2048
    /// Durability of commits that do not name one.
    public var durability: Durability = .durable
    /// Log frames that trigger a checkpoint after a commit.
    public var autoCheckpointFrames: Int = 4096

    public init() {}
}
