import Foundation
import TestSupport
import Testing

/// Configuration faults found in the field (issue 17, problem 3): each is refused by
/// `beeldzorgd --check-config` and by the daemon's start with exit status 78, and the message
/// names the key, its line and the file — not `Error: noSuchFilesystemObject`.
@Suite(.serialized) struct ConfigurationFaultTests {
    /// A directory with a good TLS configuration: a CA from a throwaway PKI, a 0600 password
    /// file, edge proxy and post on loopback ports nobody listens on (nothing is dialled:
    /// every case stops before SIP starts, or is only checked).
    final class Setup: @unchecked Sendable {
        let directory: String
        var config: String { directory + "/beeldzorgd.yaml" }
        var caFile: String { directory + "/ca.pem" }
        var passwordFile: String { directory + "/sip-password" }

        init() throws {
            directory = NSTemporaryDirectory() + "bz-cfg-" + UUID().uuidString.prefix(8)
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            _ = try TestPKI(directory: directory)
            // The prompts the daemon reads, copied here: the daemon runs as another uid, which
            // may not be able to enter the checkout (a clone made with mode 0700).
            try FileManager.default.copyItem(atPath: Binaries.packageRoot.appendingPathComponent("prompts").path,
                                             toPath: directory + "/prompts")
            try "secret\n".write(toFile: passwordFile, atomically: true, encoding: .utf8)
            chmod(passwordFile, 0o600)
            try write(caFile: caFile, passwordFile: passwordFile)
        }

        /// Line 5 is password_file, line 8 is ca_file (the tests check the line numbers).
        func write(caFile: String, passwordFile: String, screen: String = "none",
                   controlSocket: String? = nil, statusLED: String? = nil) throws {
            try """
                account:
                  user: tablet-test
                  domain: 127.0.0.1
                  listen_host: 127.0.0.1
                  password_file: \(passwordFile)
                transport: tls
                edge_proxies: ["sip:127.0.0.1:9;transport=tls"]
                ca_file: \(caFile)
                centrale:
                  posts:
                    - id: post-1
                      uri: sips:post1@127.0.0.1:9
                button:
                  device: fifo:\(directory)/button
                camera:
                  device: test-pattern
                audio:
                  capture: silence
                  playback: "null"
                screen:
                  device: \(screen)
                database: \(directory)/beeldzorg.sqlite
                control_socket: \(controlSocket ?? directory + "/control.sock")
                prompts: \(directory)/prompts
                \(statusLED.map { "status_led: \($0)" } ?? "")

                """.write(toFile: config, atomically: true, encoding: .utf8)
        }

        deinit { try? FileManager.default.removeItem(atPath: directory) }
    }

    /// An unprivileged uid (and its own gid, no supplementary groups) to run the daemon as,
    /// the way systemd runs it as `beeldzorg`: only then is "can the daemon's user read it"
    /// a question the kernel answers. No password-database entry is needed for `setpriv`.
    static let daemonUID: uid_t = 61_917

    /// Runs the built beeldzorgd with a deadline; (status, stdout + stderr). With `asDaemonUser`
    /// it runs through `setpriv` as `daemonUID`.
    func daemon(_ arguments: [String], asDaemonUser: Bool = false) async throws -> (status: Int32, output: String) {
        let process = Process()
        if asDaemonUser {
            let id = Self.daemonUID
            process.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
            process.arguments = ["--reuid=\(id)", "--regid=\(id)", "--clear-groups", "--", Binaries.daemon.path] + arguments
        } else {
            process.executableURL = Binaries.daemon
            process.arguments = arguments
        }
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("bz-cfg-\(UUID().uuidString.prefix(8)).log")
        FileManager.default.createFile(atPath: output.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: output) }
        let log = try FileHandle(forWritingTo: output)
        process.standardOutput = log
        process.standardError = log
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let deadline = ContinuousClock.now + .seconds(20)
        while process.isRunning && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            Issue.record("beeldzorgd \(arguments) did not exit within 20 s")
        }
        return (process.terminationStatus, (try? String(contentsOf: output, encoding: .utf8)) ?? "")
    }

    /// `--check-config` and a real start both exit 78 naming key, line and path.
    func expectRefused(_ setup: Setup, key: String, line: Int, path: String, saying words: [String],
                       asDaemonUser: Bool = false) async throws {
        for arguments in [["--check-config", "--config", setup.config], ["--config", setup.config]] {
            let run = try await daemon(arguments, asDaemonUser: asDaemonUser)
            #expect(run.status == 78, "\(arguments): status \(run.status)\n\(run.output)")
            #expect(run.output.contains("'\(key)' (line \(line)): \(path):"), "\(arguments):\n\(run.output)")
            for word in words {
                #expect(run.output.contains(word), "'\(word)' missing:\n\(run.output)")
            }
            #expect(!run.output.contains("noSuchFilesystemObject"))
        }
    }

    @Test func theGoodConfigurationPasses() async throws {
        let setup = try Setup()
        let run = try await daemon(["--check-config", "--config", setup.config])
        #expect(run.status == 0, "\(run.output)")
        #expect(run.output.contains("ok"))
    }

    @Test func aMissingCAFileIsRefused() async throws {
        let setup = try Setup()
        let missing = setup.directory + "/no-such-ca.pem"
        try setup.write(caFile: missing, passwordFile: setup.passwordFile)
        try await expectRefused(setup, key: "ca_file", line: 8, path: missing, saying: ["does not exist"])
    }

    @Test func aGarbageCAFileIsRefused() async throws {
        let setup = try Setup()
        try "this is not a certificate\n".write(toFile: setup.caFile, atomically: true, encoding: .utf8)
        try await expectRefused(setup, key: "ca_file", line: 8, path: setup.caFile, saying: ["no readable PEM certificate"])
    }

    @Test func anExpiredCACertificateIsNamedWithItsDate() async throws {
        let setup = try Setup()
        let d = setup.directory
        // OpenSSL 3.0's `req -x509` cannot back-date; `openssl ca -selfsign` can.
        try FileManager.default.createDirectory(atPath: d + "/db", withIntermediateDirectories: true)
        FileManager.default.createFile(atPath: d + "/db/index.txt", contents: nil)
        try "01\n".write(toFile: d + "/db/serial", atomically: true, encoding: .utf8)
        try """
            [ca]
            default_ca = test
            [test]
            database = db/index.txt
            new_certs_dir = db
            serial = db/serial
            default_md = sha256
            policy = any
            x509_extensions = v3_ca
            unique_subject = no
            [any]
            commonName = supplied
            [v3_ca]
            basicConstraints = critical,CA:TRUE
            keyUsage = critical,keyCertSign,cRLSign

            """.write(toFile: d + "/ca.cnf", atomically: true, encoding: .utf8)
        try openssl(["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                     "-keyout", "old.key", "-out", "old.csr", "-subj", "/CN=Old centrale CA"], in: d)
        try openssl(["ca", "-batch", "-config", "ca.cnf", "-selfsign", "-keyfile", "old.key", "-in", "old.csr",
                     "-out", "ca.pem", "-notext", "-startdate", "20240101000000Z", "-enddate", "20240301120000Z"], in: d)
        try await expectRefused(setup, key: "ca_file", line: 8, path: setup.caFile,
                                saying: ["expired on 2024-03-01 12:00:00 UTC", "CN=Old centrale CA"])
    }

    @Test func aPasswordFileOthersCanReadIsRefused() async throws {
        let setup = try Setup()
        chmod(setup.passwordFile, 0o644)
        try await expectRefused(setup, key: "account.password_file", line: 5, path: setup.passwordFile,
                                saying: ["mode 0644", "0600"])
    }

    @Test func aMissingPasswordFileIsRefused() async throws {
        let setup = try Setup()
        try FileManager.default.removeItem(atPath: setup.passwordFile)
        try await expectRefused(setup, key: "account.password_file", line: 5, path: setup.passwordFile,
                                saying: ["does not exist"])
    }

    /// The daemon's user, not root, judges readability: a password file it owns with 0600
    /// passes; one that stayed root's (an installer's `echo > file` as root) is refused,
    /// and so is a CA file in a directory closed to it. Run as an unprivileged uid.
    @Test func filesAreJudgedForTheDaemonsUser() async throws {
        let setup = try Setup()
        let uid = Self.daemonUID
        chown(setup.passwordFile, uid, uid)
        let good = try await daemon(["--check-config", "--config", setup.config], asDaemonUser: true)
        #expect(good.status == 0, "\(good.output)")
        #expect(good.output.contains("files checked for uid \(uid)"), "\(good.output)")

        chown(setup.passwordFile, 0, 0)
        try await expectRefused(setup, key: "account.password_file", line: 5, path: setup.passwordFile,
                                saying: ["uid \(uid) cannot read it"], asDaemonUser: true)

        chown(setup.passwordFile, uid, uid)
        let closed = setup.directory + "/closed"
        try FileManager.default.createDirectory(atPath: closed, withIntermediateDirectories: false)
        chmod(closed, 0o700)
        try FileManager.default.copyItem(atPath: setup.caFile, toPath: closed + "/ca.pem")
        try setup.write(caFile: closed + "/ca.pem", passwordFile: setup.passwordFile)
        try await expectRefused(setup, key: "ca_file", line: 8, path: closed + "/ca.pem",
                                saying: ["uid \(uid) cannot read it", "Permission denied"], asDaemonUser: true)
    }

    /// A secret the daemon's user owns but others may read is refused even though the daemon
    /// could read it: the mode is the fault.
    @Test func aSecretOthersCanReadIsRefusedForTheDaemonsUser() async throws {
        let setup = try Setup()
        chown(setup.passwordFile, Self.daemonUID, Self.daemonUID)
        chmod(setup.passwordFile, 0o644)
        try await expectRefused(setup, key: "account.password_file", line: 5, path: setup.passwordFile,
                                saying: ["mode 0644", "chmod 0600"], asDaemonUser: true)
    }

    /// 50 MB of YAML once took 2.68 GB to read; now the size is refused before anything is
    /// read, and the process stays small.
    @Test func aFiftyMegabyteConfigurationIsRefusedUnread() async throws {
        let setup = try Setup()
        let good = try String(contentsOfFile: setup.config, encoding: .utf8)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: setup.config))
        try handle.seekToEnd()
        let filler = Data(String(repeating: "# a comment line that makes the file big\n", count: 25_000).utf8)
        while try handle.offset() < 50_000_000 { handle.write(filler) }
        try handle.close()
        #expect(good.utf8.count < 2_000)
        for arguments in [["--check-config", "--config", setup.config], ["--config", setup.config]] {
            let run = try await daemon(arguments)
            #expect(run.status == 78, "\(run.output)")
            #expect(run.output.contains(setup.config) && run.output.contains("at most 1048576 bytes"), "\(run.output)")
        }
        var usage = rusage()
        getrusage(RUSAGE_CHILDREN.rawValue, &usage)
        // ru_maxrss (KiB) of the largest child reaped so far in this test process.
        #expect(usage.ru_maxrss < 1_000_000, "a child used \(usage.ru_maxrss) KiB")
    }
}
