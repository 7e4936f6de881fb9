import Foundation
import TestSupport
import Testing

/// Advice that fits the image (issue 17, Deliver 4): every command a fix text or error message
/// of beeldzorgctl and beeldzorgd names in backticks is installed on the device image. The
/// image's packages are read from `image/build.sh` (its `packages=(…)` list, plus the Essential
/// packages mmdebstrap's `essential` variant always installs); which package carries a command
/// is this file's table, cross-checked against the host's dpkg database where the host has the
/// command. A new backticked word must be added to the table (or to `notCommands`): that is the
/// moment to decide whether the image carries it.
@Suite struct AdviceCommandsTests {
    /// Command → Debian package (bookworm). `beeldzorg` = our own binaries, which build.sh
    /// installs itself.
    static let packageOf: [String: String] = [
        "beeldzorgctl": "beeldzorg", "beeldzorgd": "beeldzorg",
        "systemctl": "systemd", "journalctl": "systemd", "timedatectl": "systemd",
        "ls": "coreutils", "chmod": "coreutils", "chown": "coreutils",
        "arecord": "alsa-utils", "aplay": "alsa-utils", "alsamixer": "alsa-utils", "amixer": "alsa-utils",
        "ip": "iproute2", "usermod": "passwd",
    ]

    /// Backticked words in the sources that are not commands (device names, keys, patterns).
    static let notCommands: Set<String> = ["camera", "button", "prompts:", ".corrupt-*", "-o"]

    /// What mmdebstrap --variant=essential installs besides the listed packages (bookworm's
    /// Essential: yes set), and what build.sh puts there itself.
    static let alwaysOnImage: Set<String> = [
        "base-files", "base-passwd", "bash", "bsdutils", "coreutils", "dash", "debianutils", "diffutils", "dpkg",
        "findutils", "grep", "gzip", "hostname", "init-system-helpers", "libc-bin", "login", "ncurses-bin",
        "perl-base", "sed", "sysvinit-utils", "tar", "util-linux", "beeldzorg",
    ]

    static var root: URL { BuiltProducts.packageRoot }

    /// The `packages=(…)` list of image/build.sh.
    static func imagePackages() throws -> Set<String> {
        let script = try String(contentsOf: root.appendingPathComponent("image/build.sh"), encoding: .utf8)
        var inList = false
        var packages: Set<String> = []
        for line in script.split(separator: "\n") {
            let text = line.trimmingCharacters(in: .whitespaces)
            if text.hasPrefix("packages=(") { inList = true; continue }
            guard inList else { continue }
            if text == ")" { break }
            let words = text.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
            packages.formUnion(words.split(separator: " ").map(String.init))
        }
        return packages
    }

    /// Every backticked span in a string literal (not in comments) of the CLI and daemon sources,
    /// with the file it is in.
    static func advice() throws -> [(command: String, text: String, file: String)] {
        var found: [(String, String, String)] = []
        for directory in ["Sources/beeldzorgctl", "Sources/beeldzorgd", "Sources/Daemon"] {
            let url = root.appendingPathComponent(directory)
            for name in try FileManager.default.contentsOfDirectory(atPath: url.path) where name.hasSuffix(".swift") {
                let source = try String(contentsOf: url.appendingPathComponent(name), encoding: .utf8)
                for line in source.split(separator: "\n") {
                    let code = line.trimmingCharacters(in: .whitespaces)
                    if code.hasPrefix("//") { continue }
                    var rest = Substring(code)
                    while let open = rest.firstIndex(of: "`") {
                        let after = rest[rest.index(after: open)...]
                        guard let close = after.firstIndex(of: "`") else { break }
                        let span = String(after[..<close])
                        if let first = span.split(separator: " ").first { found.append((String(first), span, name)) }
                        rest = after[after.index(after: close)...]
                    }
                }
            }
        }
        return found
    }

    @Test func everyCommandAnAdviceTextNamesIsOnTheImage() throws {
        let onImage = try Self.imagePackages().union(Self.alwaysOnImage)
        #expect(onImage.contains("systemd"), "image/build.sh's package list was not found")
        let spans = try Self.advice()
        #expect(spans.contains { $0.command == "systemctl" }, "no advice found; did the sources move?")
        for span in spans where !Self.notCommands.contains(span.command) {
            guard let package = Self.packageOf[span.command] else {
                Issue.record("\(span.file): `\(span.text)`: which package has \(span.command)? Add it to packageOf (or notCommands)")
                continue
            }
            let installed = onImage.contains(package)
            #expect(installed, "\(span.file): `\(span.text)` needs \(package), which image/build.sh does not install")
        }
    }

    /// The table is Debian's truth: where the host has a command, dpkg says which package it is.
    @Test func theCommandTableAgreesWithDpkg() throws {
        for (command, package) in Self.packageOf where package != "beeldzorg" {
            for directory in ["/usr/bin", "/bin", "/usr/sbin", "/sbin"] {
                let path = "\(directory)/\(command)"
                let process = Process()
                process.executableURL = URL(fileURLWithPath: "/usr/bin/dpkg-query")
                process.arguments = ["-S", path]
                let out = Pipe()
                process.standardOutput = out
                process.standardError = FileHandle.nullDevice
                try process.run()
                let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
                process.waitUntilExit()
                guard process.terminationStatus == 0 else { continue }
                let owner = text.split(separator: ":").first.map { String($0) } ?? ""
                #expect(owner == package, "\(path) belongs to \(owner), the table says \(package)")
                break
            }
        }
    }
}
