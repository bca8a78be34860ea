// swift-tools-version: 6.2
// The benchmark is a package of its own so the PartitionDB library never depends on SQLite or
// LMDB: only this package links them, from the system (Debian libsqlite3-dev and liblmdb-dev).
import PackageDescription

let package = Package(
    name: "PartitionDBBenchmarks",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "partitiondb-bench", targets: ["partitiondb-bench"])
    ],
    dependencies: [
        .package(name: "PartitionDB", path: "..")
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
    ]
)
