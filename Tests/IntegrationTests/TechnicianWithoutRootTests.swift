import Control
import Foundation
import Testing

/// The technician works without root (issue 17, Deliver 1): `calls` and `contacts` as a user
/// in the technicians' group get the client's data from the built daemon over its control
/// socket (the daemon checks SO_PEERCRED/SO_PEERGROUPS), while the database itself stays
/// closed to them (0600 in a 0711 directory, as the image's 0700 state directory is to `tech`);
/// a user outside the group is refused even when the socket's mode lets it in; `factory-reset`
/// as a non-root user erases nothing and says so with a non-zero exit. Users are uids without
/// password entries, made with `setpriv`, like `tech` and an intruder on the tablet.
@Suite(.serialized) struct TechnicianWithoutRootTests {
    static let technicians: gid_t = 61_920
    static let tech: uid_t = 61_921
    static let stranger: uid_t = 61_922

    /// beeldzorgctl as `uid`, with `groups` as its supplementary groups.
    func ctl(as uid: uid_t, groups: [gid_t], _ arguments: [String]) throws -> (status: Int32, output: String, error: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
        let groupArgument = groups.isEmpty ? ["--clear-groups"] : ["--groups=" + groups.map(String.init).joined(separator: ",")]
        process.arguments = ["--reuid=\(uid)", "--regid=\(uid)"] + groupArgument + ["--", Binaries.ctl.path] + arguments
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        var environment = ProcessInfo.processInfo.environment
        environment["NO_COLOR"] = "1"
        process.environment = environment
        try process.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        let errData = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self), String(decoding: errData, as: UTF8.self))
    }

    @Test func techReadsCallsAndContactsThroughTheDaemonAndOthersAreRefused() async throws {
        let daemon = try DaemonUnderTest(extraConfig: "control_group: \"\(Self.technicians)\"\n")
        try daemon.start()
        try await daemon.waitUntilReady()
        // The state as on the image: the database only for its owner, the directory passable
        // (for the socket) but not listable.
        chmod(daemon.directory.path, 0o711)
        chmod(daemon.databasePath, 0o600)
        var st = stat()
        #expect(stat(daemon.socketPath, &st) == 0 && st.st_gid == Self.technicians && st.st_mode & 0o777 == 0o660,
                "the socket belongs to the technicians' group, mode 0660")

        // A call the client did not take: a stranger, rejected and logged.
        let callIn = try runCtl(["demo", "call-in", "--from", "sip:onbekend@127.0.0.1"], socket: daemon.socketPath)
        #expect(callIn.status == 0, "\(callIn.error)")

        let tech = [Self.technicians]
        try await daemon.waitFor("the call in tech's calls", timeout: .seconds(10)) {
            let calls = try ctl(as: Self.tech, groups: tech, ["calls", "--json", "--socket", daemon.socketPath])
            return calls.status == 0 && calls.output.contains("sip:onbekend@127.0.0.1")
        }
        let table = try ctl(as: Self.tech, groups: tech, ["calls", "--socket", daemon.socketPath, "--since", "1h"])
        #expect(table.status == 0 && table.output.contains("notAContact"), "\(table.output) \(table.error)")
        let contacts = try ctl(as: Self.tech, groups: tech, ["contacts", "--json", "--socket", daemon.socketPath])
        #expect(contacts.status == 0, "\(contacts.error)")
        #expect(contacts.output.contains("\"displayName\" : \"Marieke\""), "\(contacts.output)")

        // doctor as tech: the store is judged by the daemon, not "no permission".
        let doctor = try ctl(as: Self.tech, groups: tech, ["doctor", "--config", daemon.configPath, "--json"])
        let checks = (try JSONSerialization.jsonObject(with: Data(doctor.output.utf8)) as? [String: Any])?["checks"] as? [[String: Any]] ?? []
        let store = checks.first { $0["name"] as? String == "store" }
        #expect(store?["ok"] as? Bool == true, "\(doctor.output) \(doctor.error)")

        // The file itself is closed to tech: only the daemon's answer got it there.
        let direct = try ctl(as: Self.tech, groups: tech, ["contacts", "--database", daemon.databasePath,
                                                         "--socket", daemon.directory.path + "/no-daemon.sock"])
        #expect(direct.status == 4, "\(direct.output) \(direct.error)")
        #expect(direct.error.contains("beeldzorgd is not running") && direct.error.contains("root"), "\(direct.error)")

        // Without the group the socket's mode keeps a user out...
        let outside = try ctl(as: Self.stranger, groups: [], ["contacts", "--socket", daemon.socketPath])
        #expect(outside.status == 4, "\(outside.error)")
        // ... and if the mode were opened by mistake, the daemon still refuses personal data,
        // while status (no personal data beyond the last call's peer) stays a socket-mode matter.
        chmod(daemon.socketPath, 0o666)
        for command in ["calls", "contacts"] {
            let refused = try ctl(as: Self.stranger, groups: [], [command, "--socket", daemon.socketPath])
            #expect(refused.status == 4, "\(command): \(refused.output) \(refused.error)")
            #expect(refused.error.contains("only root and members of the \(Self.technicians) group"), "\(refused.error)")
            #expect(!refused.output.contains("Marieke") && !refused.output.contains("onbekend"))
        }
        // A group the stranger has as its primary gid counts as membership too (SO_PEERCRED).
        let primary = Process()
        primary.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
        primary.arguments = ["--reuid=\(Self.stranger)", "--regid=\(Self.technicians)", "--clear-groups", "--",
                             Binaries.ctl.path, "contacts", "--json", "--socket", daemon.socketPath]
        primary.standardOutput = FileHandle.nullDevice
        primary.standardError = FileHandle.nullDevice
        try primary.run()
        primary.waitUntilExit()
        #expect(primary.terminationStatus == 0)
        #expect(await daemon.stop() == 0)
    }

    /// `logs` for a user the journal would show nothing of beeldzorgd's: refused with exit 4
    /// and the way in, instead of journalctl's empty answer and 0. In the systemd-journal
    /// group (as the image's tech is) it gets past that check.
    @Test func logsSaysWhenTheJournalIsClosedToTheUser() throws {
        let refused = try ctl(as: Self.tech, groups: [Self.technicians], ["logs", "--lines", "1"])
        #expect(refused.status == 4, "\(refused.output) \(refused.error)")
        #expect(refused.error.contains("systemd-journal"), "\(refused.error)")
        if let journal = getgrnam("systemd-journal")?.pointee.gr_gid {
            let allowed = try ctl(as: Self.tech, groups: [Self.technicians, journal], ["logs", "--lines", "1"])
            #expect(allowed.status != 4, "\(allowed.error)")
        }
    }

    /// `factory-reset --yes` as tech used to print "no personal files found" and exit 0 with
    /// everything still there. Now it refuses, erases nothing and exits 4; and with a tree it
    /// cannot look into (`--root`), the unreadable directory is a failure, not "no files".
    @Test func factoryResetAsTechSaysWhatItCouldNotDo() async throws {
        let tech = [Self.technicians]
        let real = try ctl(as: Self.tech, groups: tech, ["factory-reset", "--yes"])
        #expect(real.status == 4, "\(real.output) \(real.error)")
        #expect(real.error.contains("must run as root") && real.error.contains("Nothing was erased"), "\(real.error)")
        #expect(!real.output.contains("Factory reset done"))

        let tree = FileManager.default.temporaryDirectory.appendingPathComponent("bz-reset-\(UUID().uuidString.prefix(8))").path
        defer { try? FileManager.default.removeItem(atPath: tree) }
        let state = tree + "/var/lib/beeldzorg"
        try FileManager.default.createDirectory(atPath: state, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: tree + "/etc/beeldzorg/credentials", withIntermediateDirectories: true)
        try "calls".write(toFile: state + "/beeldzorg.sqlite", atomically: true, encoding: .utf8)
        chmod(state, 0o700)
        let partial = try ctl(as: Self.tech, groups: tech, ["factory-reset", "--yes", "--root", tree])
        #expect(partial.status == 1, "\(partial.output) \(partial.error)")
        #expect(partial.output.contains("look into \(state)"), "\(partial.output)")
        #expect(partial.output.contains("Factory reset incomplete"), "\(partial.output)")
        #expect(FileManager.default.fileExists(atPath: state + "/beeldzorg.sqlite"))
    }
}
