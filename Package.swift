// swift-tools-version:6.1
import PackageDescription

// One target per layer, one system-library target per C library (each imported by exactly
// one wrapper file), one test target per module. See docs/ARCHITECTURE.md.

let strict: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

let package = Package(
    name: "beeldzorg",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "beeldzorgd", targets: ["beeldzorgd"]),
        .executable(name: "beeldzorgctl", targets: ["beeldzorgctl"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
    ],
    targets: [
        // MARK: C libraries at the edge (pkg-config names from Debian's -dev packages)
        .systemLibrary(name: "CEvdev", pkgConfig: "libevdev", providers: [.apt(["libevdev-dev"])]),
        .systemLibrary(name: "CV4L2", pkgConfig: "libv4l2", providers: [.apt(["libv4l-dev"])]),
        .systemLibrary(name: "CALSA", pkgConfig: "alsa", providers: [.apt(["libasound2-dev"])]),
        .systemLibrary(name: "COpus", pkgConfig: "opus", providers: [.apt(["libopus-dev"])]),
        .systemLibrary(name: "CVPX", pkgConfig: "vpx", providers: [.apt(["libvpx-dev"])]),
        .systemLibrary(name: "CSRTP", pkgConfig: "libsrtp2", providers: [.apt(["libsrtp2-dev"])]),
        // webrtc-audio-processing is C++: CWebRTCAPM only carries its pkg-config flags, the C++
        // target CEchoCanceller wraps it in an extern "C" API that Media imports.
        .systemLibrary(
            name: "CWebRTCAPM", pkgConfig: "webrtc-audio-processing",
            providers: [.apt(["libwebrtc-audio-processing-dev"])]
        ),
        .target(name: "CEchoCanceller", dependencies: ["CWebRTCAPM"]),
        .systemLibrary(name: "CCrypto", pkgConfig: "libcrypto", providers: [.apt(["libssl-dev"])]),
        // glibc's libresolv (SRV/A/AAAA with TTLs, RFC 3263); part of libc6-dev, no pkg-config.
        .systemLibrary(name: "CResolv"),
        .systemLibrary(name: "CFreeType", pkgConfig: "freetype2", providers: [.apt(["libfreetype-dev"])]),
        .systemLibrary(name: "CPNG", pkgConfig: "libpng", providers: [.apt(["libpng-dev"])]),
        .systemLibrary(name: "CDRM", pkgConfig: "libdrm", providers: [.apt(["libdrm-dev"])]),
        // libyuv ships no pkg-config file: the module map links libyuv.so itself.
        .systemLibrary(name: "CYUV", providers: [.apt(["libyuv-dev"])]),

        // MARK: Layers
        .target(name: "CallFlow", swiftSettings: strict),
        .target(
            name: "SIP",
            dependencies: [
                "CCrypto", "CResolv",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "Devices",
            dependencies: [
                "CEvdev", "CV4L2", "CALSA",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "Media",
            dependencies: [
                "COpus", "CVPX", "CSRTP", "CEchoCanceller", "Devices",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "Store",
            dependencies: [
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "BeeldzorgConfig",
            dependencies: [.product(name: "Yams", package: "Yams")],
            swiftSettings: strict
        ),
        .target(name: "Control", swiftSettings: strict),
        .target(
            name: "Screen",
            dependencies: ["CFreeType", "CPNG", "CDRM", "CYUV", "CallFlow", "Devices"],
            swiftSettings: strict
        ),
        .target(
            name: "DemoCentrale",
            dependencies: [
                "SIP", "Media",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "Daemon",
            dependencies: [
                "CallFlow", "SIP", "Media", "Devices", "Store", "BeeldzorgConfig", "Control",
                "DemoCentrale", "Provisioning", "Screen",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "beeldzorgd",
            dependencies: [
                "Daemon", "BeeldzorgConfig",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "beeldzorgctl",
            dependencies: [
                "Control", "BeeldzorgConfig", "Store", "Devices", "Provisioning",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strict
        ),
        // Crash-safety victim and durability benchmark for Store (StoreTests runs it).
        .executableTarget(name: "store-crash-writer", dependencies: ["Store"], swiftSettings: strict),
        .target(
            name: "Provisioning",
            dependencies: [
                "Store",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // Prints SIP latency and failover figures (issue 3); also the netns tests' registering side.
        .executableTarget(
            name: "sip-benchmark",
            dependencies: [
                "SIP", "CallFlow", "DemoCentrale",
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Sources/SIPBenchmark", swiftSettings: strict),
        // Prints I420 conversion and whole-frame render times for the screen (issue 9); not a test.
        .executableTarget(name: "screen-benchmark", dependencies: ["Screen", "Devices", "CallFlow"], path: "Sources/ScreenBenchmark", swiftSettings: strict),
        // Prints codec, CPU and latency figures for media (issue 4); not a test.
        .executableTarget(
            name: "media-benchmark",
            dependencies: [
                "Media", "Devices", "SIP",
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Sources/MediaBenchmark", swiftSettings: strict
        ),

        // MARK: Tests
        .testTarget(name: "CallFlowTests", dependencies: ["CallFlow", "TestSupport"], swiftSettings: strict),
        // Media for SRTP checks of the daemon's packets (ReinviteDaemonTests).
        .testTarget(name: "SIPTests", dependencies: ["SIP", "DemoCentrale", "Media", "TestSupport"], swiftSettings: strict),
        .testTarget(name: "DevicesTests", dependencies: ["Devices", "TestSupport"], swiftSettings: strict),
        .testTarget(
            name: "MediaTests",
            dependencies: [
                // SIP only for the calls to a real baresip (BaresipPeerTests).
                "Media", "Devices", "SIP",
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .testTarget(name: "StoreTests", dependencies: ["Store"], swiftSettings: strict),
        // Test set-up shared by test targets (throwaway PKI, Python test servers); no test framework.
        .target(name: "TestSupport", path: "Tests/TestSupport", swiftSettings: strict),
        .testTarget(name: "ProvisioningTests", dependencies: ["Provisioning", "Store", "TestSupport"], swiftSettings: strict),
        .testTarget(name: "BeeldzorgConfigTests", dependencies: ["BeeldzorgConfig"], swiftSettings: strict),
        .testTarget(name: "ControlTests", dependencies: ["Control"], swiftSettings: strict),
        .testTarget(name: "ScreenTests", dependencies: ["Screen", "CallFlow", "Devices"],
                    exclude: ["References"], swiftSettings: strict),
        .testTarget(name: "DaemonTests", dependencies: ["Daemon", "TestSupport"], swiftSettings: strict),
        .testTarget(
            name: "IntegrationTests",
            dependencies: ["Control", "BeeldzorgConfig", "Store", "Screen", "TestSupport"],
            swiftSettings: strict
        ),
    ]
)
