// swift-tools-version: 6.2
// The benchmark is a package of its own so the PartitionDB library never depends on SQLite or
// LMDB: only this package links them, from the system (Debian libsqlite3-dev and liblmdb-dev).
// The replication benchmark (against PostgreSQL 15 streaming replication) is an executable of its
// own: it links Residency, swift-nio and Foundation, which the engine benchmark keeps out of its
// processes so their peak memory is the engine's.
import PackageDescription

let package = Package(
    name: "PartitionDBBenchmarks",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "partitiondb-bench", targets: ["partitiondb-bench"]),
        .executable(name: "partitiondb-replication-bench", targets: ["partitiondb-replication-bench"]),
        .executable(name: "partitiondb-auth-bench", targets: ["partitiondb-auth-bench"]),
    ],
    dependencies: [
        .package(name: "PartitionDB", path: ".."),
        // Already in PartitionDB's graph (Residency uses it): SHA-256 and SHA-512 make the records
        // byte for byte as PostgreSQL's `sha256()` and `sha512()` make them.
        .package(url: "https://github.com/apple/swift-crypto", from: "4.5.2"),
        // Also already there: ClusterHost takes a Logger, whose default handler writes to stdout.
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
    ],
    targets: [
        // SQLite's C API, found through pkg-config.
        .systemLibrary(
            name: "CSQLite",
            pkgConfig: "sqlite3",
            providers: [.apt(["libsqlite3-dev"])]
        ),
        // LMDB's C API. Debian's liblmdb-dev has shipped without a .pc file, so the module map
        // names the library itself (`link "lmdb"`) instead of asking pkg-config.
        .systemLibrary(
            name: "CLMDB",
            providers: [.apt(["liblmdb-dev"])]
        ),
        .executableTarget(
            name: "partitiondb-bench",
            dependencies: [
                "CSQLite", "CLMDB",
                .product(name: "PartitionDB", package: "PartitionDB"),
            ]
        ),
        // Replication rows: this process is the primary (a Database and a ClusterHost), the replica
        // a `pdb serve` process; PostgreSQL's primary and standby run side by side (README.md).
        .executableTarget(
            name: "partitiondb-replication-bench",
            dependencies: [
                .product(name: "PartitionDB", package: "PartitionDB"),
                .product(name: "Residency", package: "PartitionDB"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Auth rows: token verifications beside `openssl speed`, sign-up and login latency.
        .executableTarget(
            name: "partitiondb-auth-bench",
            dependencies: [
                .product(name: "PartitionDB", package: "PartitionDB"),
                .product(name: "Residency", package: "PartitionDB"),
                .product(name: "Auth", package: "PartitionDB"),
            ]
        ),
    ]
)
