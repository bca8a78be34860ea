// swift-tools-version: 6.2
import PackageDescription

let package = Package(
    name: "PartitionDB",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "PartitionDB", targets: ["PartitionDB"]),
        .library(name: "Residency", targets: ["Residency"]),
        .executable(name: "pdb", targets: ["pdb"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2")
    ],
    targets: [
        // zstd from Debian's libzstd-dev, found through pkg-config.
        .systemLibrary(
            name: "CZstd",
            pkgConfig: "libzstd",
            providers: [.apt(["libzstd-dev"])]
        ),
        // Atomic page flags and hardware CRC-32C (see its header).
        .target(name: "CPartitionSupport"),
        .target(name: "PartitionDB", dependencies: ["CZstd", "CPartitionSupport"]),
        .target(name: "Residency", dependencies: ["PartitionDB"]),
        .executableTarget(
            name: "pdb",
            dependencies: [
                "PartitionDB", "Residency",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .testTarget(name: "PartitionDBTests", dependencies: ["PartitionDB"]),
        .testTarget(name: "ResidencyTests", dependencies: ["Residency", "PartitionDB"]),
        .testTarget(name: "EndToEndTests", dependencies: ["PartitionDB", "Residency"]),
    ]
)
