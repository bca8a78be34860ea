// swift-tools-version: 6.2
import PackageDescription

// `PDB_ENGINE_ONLY=1` declares the engine and its tests alone: the sanitizer runs of CI
// (scripts/reliability.sh) build it in a folder of their own without paying for swift-nio,
// swift-nio-ssl and swift-certificates a second time.
let engineOnly = Context.environment["PDB_ENGINE_ONLY"] == "1"

let engineTargets: [Target] = [
    // zstd from Debian's libzstd-dev, found through pkg-config.
    .systemLibrary(
        name: "CZstd",
        pkgConfig: "libzstd",
        providers: [.apt(["libzstd-dev"])]
    ),
    // Atomic page flags, hardware CRC-32C and SHA-256 (see its header).
    .target(name: "CPartitionSupport"),
    .target(name: "PartitionDB", dependencies: ["CZstd", "CPartitionSupport"]),
    .testTarget(name: "PartitionDBTests", dependencies: ["PartitionDB"]),
]

let hostTargets: [Target] = [
    // Line editing and history for `pdb shell`: libedit (BSD) from Debian's libedit-dev.
    .systemLibrary(
        name: "CEdit",
        pkgConfig: "libedit",
        providers: [.apt(["libedit-dev"])]
    ),
    // Argon2id from Debian's libargon2-dev, found through pkg-config.
    .systemLibrary(
        name: "CArgon2",
        pkgConfig: "libargon2",
        providers: [.apt(["libargon2-dev"])]
    ),
    .target(
        name: "Residency",
        dependencies: [
            "PartitionDB", "CZstd", "CPartitionSupport",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOSSL", package: "swift-nio-ssl"),
            .product(name: "NIOTLS", package: "swift-nio"),
            .product(name: "X509", package: "swift-certificates"),
            .product(name: "SwiftASN1", package: "swift-asn1"),
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Metrics", package: "swift-metrics"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "Prometheus", package: "swift-prometheus"),
        ]
    ),
    .target(
        name: "Auth",
        dependencies: [
            "PartitionDB", "Residency", "CArgon2",
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "JWTKit", package: "jwt-kit"),
            .product(name: "NIOPosix", package: "swift-nio"),
            // Its locks are pthread mutexes, which ThreadSanitizer sees (the standard library's
            // `Mutex` is a futex it does not, and reports its critical sections as races).
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
        ]
    ),
    .executableTarget(
        name: "pdb",
        dependencies: [
            "PartitionDB", "Residency", "Auth", "CEdit",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]
    ),
    .testTarget(
        name: "ResidencyTests",
        dependencies: [
            "Residency", "PartitionDB", .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOEmbedded", package: "swift-nio"),
        ]
    ),
    .testTarget(
        name: "AuthTests",
        dependencies: ["Auth", "Residency", "PartitionDB", .product(name: "Crypto", package: "swift-crypto")]
    ),
    .testTarget(
        name: "EndToEndTests",
        dependencies: [
            "PartitionDB", "Residency", "Auth",
            // A fake primary in the tests speaks the protocol over NIO and TLS itself.
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOSSL", package: "swift-nio-ssl"),
            .product(name: "Logging", package: "swift-log"),
        ]
    ),
]

let package = Package(
    name: "PartitionDB",
    platforms: [.macOS(.v15)],
    products: engineOnly
        ? [.library(name: "PartitionDB", targets: ["PartitionDB"])]
        : [
            .library(name: "PartitionDB", targets: ["PartitionDB"]),
            .library(name: "Residency", targets: ["Residency"]),
            .library(name: "Auth", targets: ["Auth"]),
            .executable(name: "pdb", targets: ["pdb"]),
        ],
    dependencies: engineOnly
        ? []
        : [
            .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
            .package(url: "https://github.com/apple/swift-nio", from: "2.101.3"),
            .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
            .package(url: "https://github.com/apple/swift-certificates", from: "1.21.1"),
            .package(url: "https://github.com/apple/swift-asn1", from: "1.7.4"),
            .package(url: "https://github.com/apple/swift-crypto", from: "4.5.2"),
            .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
            .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
            .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
            .package(url: "https://github.com/vapor/jwt-kit", from: "5.8.0"),
        ],
    targets: engineOnly ? engineTargets : engineTargets + hostTargets
)
