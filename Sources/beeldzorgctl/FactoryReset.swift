import ArgumentParser
import BeeldzorgConfig
import Foundation

/// `beeldzorgctl factory-reset`: wipes everything personal so the tablet can go to a new
/// client; the image and the configuration templates stay.
struct FactoryResetCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "factory-reset",
        abstract: "Erase the client's data (database, credentials, logs) for a new client.",
        discussion: """
            Stops beeldzorgd (when systemd runs it), then deletes: the database with its \
            -wal/-shm/-journal files and any moved-aside `.corrupt-*` copies, everything else \
            in /var/lib/beeldzorg, /etc/beeldzorg/credentials/* (SIP password, provisioning \
            token) and the configured password file, the provisioned configuration (it names \
            the client; without it the tablet is "not provisioned" and waits for the next \
            installation), and the journal's log files. The image, the CA files and the \
            example configuration stay. Then it verifies: every place it erased is empty, and \
            no file left in /etc/beeldzorg or /var/lib/beeldzorg holds the client's \
            display_name. Asks you to type "wissen" (or "reset") first; \
            without a terminal it refuses unless --yes is given. Start beeldzorgd again (or \
            provision the tablet) afterwards.

            Needs root on the tablet: as anyone else (tech included) it refuses before \
            touching anything, saying what it could not do, and exits 4.

            Exit status: 0 everything was wiped and verified; 1 something could not be \
            removed or looked at, or the verification found something left (listed); 2 not \
            confirmed; 4 not root; 64 wrong usage.
            """
    )

    @Flag(name: .long, help: "Do not ask; erase at once (for scripts).")
    var yes = false

    @Option(name: .long, help: ArgumentHelp("Work on the tree under this directory instead of / (for tests and image builds); systemd and the journal are then left alone.", valueName: "dir"))
    var root: String = "/"

    @Option(name: .long, help: "The daemon's configuration file, inside --root (for the database and password file paths).")
    var config: String = Configuration.defaultPath

    @Flag(name: .long, help: "Print machine-readable JSON instead of text.")
    var json = false

    static let stateDirectory = "/var/lib/beeldzorg"
    static let credentialsDirectory = "/etc/beeldzorg/credentials"

    struct Step: Encodable {
        var action: String
        var ok: Bool
        var detail: String?
    }

    struct Answer: Encodable {
        var ok: Bool
        var removed: [String]
        var failed: [Step]
        var steps: [Step]
        /// What the verification looked at and found clean.
        var verified: [String]
    }

    var isRealRoot: Bool { URL(fileURLWithPath: root).standardizedFileURL.path == "/" }

    func inRoot(_ path: String) -> String {
        isRealRoot ? path : URL(fileURLWithPath: root).appendingPathComponent(path).standardizedFileURL.path
    }

    func run() throws {
        // As tech the state directory (0700 beeldzorg), the credentials and the journal are out
        // of reach and systemctl stop is refused: erasing nothing and saying "done" would send
        // the tablet to the next client with the last one's data on it.
        if isRealRoot && geteuid() != 0 {
            fail("""
                factory-reset must run as root: as \(Self.userName) it cannot stop beeldzorgd, cannot \
                look into \(Self.stateDirectory) (the call log, contacts) or \(Self.credentialsDirectory) \
                (SIP password, provisioning token), and cannot remove the journal. Nothing was erased.
                """, code: "permission-denied")
            throw ExitStatus.permissionDenied
        }
        if !yes {
            guard isatty(STDIN_FILENO) != 0 else {
                report("refusing: there is no terminal to confirm on; add --yes to erase without asking")
                throw TechnicianExit.notConfirmed
            }
            print("""
                This erases ALL of the client's data on this tablet: call history, contacts, \
                credentials and logs\(isRealRoot ? "" : " (under \(root))"). It cannot be undone.
                Type "wissen" (or "reset") to continue: 
                """, terminator: "")
            let answer = readLine()?.trimmingCharacters(in: .whitespaces).lowercased()
            guard answer == "wissen" || answer == "reset" else {
                report("not confirmed; nothing was erased")
                throw TechnicianExit.notConfirmed
            }
        }

        var steps: [Step] = []
        var removed: [String] = []
        let targets = targets()
        // Read before the configuration goes: what would give the client away if it stayed.
        let clientName = (try? Configuration.load(path: inRoot(config)))?.account.displayName?
            .trimmingCharacters(in: .whitespaces)
        if isRealRoot {
            steps.append(Self.runTolerated(["systemctl", "stop", "beeldzorgd"], action: "stop beeldzorgd"))
        } else {
            steps.append(Step(action: "stop beeldzorgd", ok: true, detail: "skipped (--root)"))
        }

        for target in targets {
            let outcome = wipe(target)
            removed += outcome.removed
            steps += outcome.failed
        }
        let verification = verify(targets, clientName: clientName)
        steps += verification.failed

        if isRealRoot {
            steps.append(Self.runTolerated(["journalctl", "--rotate"], action: "rotate the journal"))
            steps.append(Self.runTolerated(["journalctl", "--vacuum-time=1s"], action: "remove the journal's log files"))
        } else {
            steps.append(Step(action: "remove the journal's log files", ok: true, detail: "skipped (--root)"))
        }

        let failed = steps.filter { !$0.ok }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
            let data = try encoder.encode(Answer(ok: failed.isEmpty, removed: removed, failed: failed, steps: steps,
                                                 verified: verification.clean))
            print(String(decoding: data, as: UTF8.self))
        } else {
            for path in removed { print("removed \(path)") }
            if removed.isEmpty { print("no personal files found") }
            for line in verification.clean { print("\(mark(true)) verified: \(line)") }
            for step in steps where step.detail != nil || !step.ok {
                print("\(mark(step.ok)) \(step.action)\(step.detail.map { ": \($0)" } ?? "")")
            }
            print(failed.isEmpty
                ? Terminal.good("Factory reset done: \(removed.count) files removed.")
                : Terminal.bad("Factory reset incomplete: \(failed.count) step(s) failed (see above)."))
        }
        if !failed.isEmpty { throw ExitStatus.problem }
    }

    enum Target {
        /// Everything inside the directory; the directory itself stays (systemd owns it).
        case contents(of: String)
        /// A database file with its companions and moved-aside copies.
        case database(String)
        case file(String)
    }

    /// What a factory reset deletes, as absolute paths inside `--root`. The configuration
    /// last: the others are found through it.
    func targets() -> [Target] {
        var targets: [Target] = [.contents(of: inRoot(Self.stateDirectory)), .contents(of: inRoot(Self.credentialsDirectory))]
        if let configuration = try? Configuration.load(path: inRoot(config)) {
            targets.append(.database(inRoot(configuration.databasePath)))
            if let password = configuration.account.passwordFile { targets.append(.file(inRoot(password))) }
        } else {
            targets.append(.database(inRoot(DatabaseOptions.defaultPath)))
        }
        targets.append(.file(inRoot(config)))
        return targets
    }

    /// After the wipe: each target is gone or empty, and no file left under the daemon's
    /// directories (configuration and state, at most 1 MiB each, as the daemon reads) holds
    /// the client's name. Returns what was found clean, and a failed step for anything else.
    func verify(_ targets: [Target], clientName: String?) -> (clean: [String], failed: [Step]) {
        let fm = FileManager.default
        var clean: [String] = []
        var failed: [Step] = []
        for target in targets {
            switch target {
            case .contents(let directory):
                let left = (try? fm.contentsOfDirectory(atPath: directory)) ?? []
                if left.isEmpty { clean.append("\(directory) is empty") } else {
                    failed.append(Step(action: "verify \(directory) is empty", ok: false, detail: "still there: \(left.sorted().joined(separator: ", "))"))
                }
            case .database(let file):
                let directory = (file as NSString).deletingLastPathComponent
                let name = (file as NSString).lastPathComponent
                let left = ((try? fm.contentsOfDirectory(atPath: directory)) ?? []).filter { $0.hasPrefix(name) }
                if left.isEmpty { clean.append("no database \(file)") } else {
                    failed.append(Step(action: "verify the database is gone", ok: false, detail: "still there: \(left.sorted().joined(separator: ", "))"))
                }
            case .file(let file):
                var st = stat()
                if lstat(file, &st) != 0 { clean.append("no \(file)") } else {
                    failed.append(Step(action: "verify \(file) is gone", ok: false, detail: "still there"))
                }
            }
        }
        guard let clientName, clientName.count >= 2 else { return (clean, failed) }
        let needle = Array(clientName.utf8)
        var holding: [String] = []
        for directory in [inRoot("/etc/beeldzorg"), inRoot(Self.stateDirectory)] {
            guard let walker = fm.enumerator(atPath: directory) else { continue }
            while let relative = walker.nextObject() as? String {
                let path = "\(directory)/\(relative)"
                guard let attributes = try? fm.attributesOfItem(atPath: path), attributes[.type] as? FileAttributeType == .typeRegular,
                      (attributes[.size] as? Int ?? 0) <= 1 << 20 else { continue }
                guard let data = fm.contents(atPath: path) else {
                    failed.append(Step(action: "verify \(path) does not name the client", ok: false, detail: "cannot be read"))
                    continue
                }
                if Self.contains(Array(data), needle) { holding.append(path) }
            }
        }
        if holding.isEmpty {
            clean.append("the client's name is in no file under \(inRoot("/etc/beeldzorg")) or \(inRoot(Self.stateDirectory))")
        } else {
            failed.append(Step(action: "verify nothing names the client", ok: false,
                               detail: "the display_name is still in \(holding.sorted().joined(separator: ", "))"))
        }
        return (clean, failed)
    }

    static func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
        guard !needle.isEmpty, haystack.count >= needle.count else { return false }
        for start in 0...(haystack.count - needle.count) where haystack[start] == needle[0] {
            if haystack[start..<(start + needle.count)].elementsEqual(needle) { return true }
        }
        return false
    }

    func wipe(_ target: Target) -> (removed: [String], failed: [Step]) {
        let fm = FileManager.default
        var paths: [String] = []
        switch target {
        case .contents(let directory):
            var st = stat()
            if stat(directory, &st) != 0 && errno != ENOENT || stat(directory, &st) == 0 && access(directory, R_OK | X_OK) != 0 {
                // Not "no files": the files may well be there.
                return ([], [Step(action: "look into \(directory)", ok: false, detail: String(cString: strerror(EACCES)))])
            }
            let entries = (try? fm.contentsOfDirectory(atPath: directory)) ?? []
            paths = entries.sorted().map { "\(directory)/\($0)" }
        case .database(let file):
            let directory = (file as NSString).deletingLastPathComponent
            let name = (file as NSString).lastPathComponent
            let entries = (try? fm.contentsOfDirectory(atPath: directory)) ?? []
            let companions = Set([name, name + "-wal", name + "-shm", name + "-journal"])
            paths = entries.filter { companions.contains($0) || $0.hasPrefix(name + ".corrupt-") }.sorted().map { "\(directory)/\($0)" }
        case .file(let file):
            var st = stat()
            if lstat(file, &st) == 0 { paths = [file] }
        }
        var removed: [String] = []
        var failed: [Step] = []
        for path in paths {
            do {
                try fm.removeItem(atPath: path)
                removed.append(path)
            } catch {
                failed.append(Step(action: "remove \(path)", ok: false, detail: (error as NSError).localizedDescription))
            }
        }
        return (removed, failed)
    }

    /// Runs a system tool; a tool or unit that is absent is not a failure (a tablet without
    /// systemd, a journal that keeps nothing), anything else that fails is.
    static func runTolerated(_ command: [String], action: String) -> Step {
        guard let executable = LogsCommand.findExecutable(command[0]) else {
            return Step(action: action, ok: true, detail: "skipped: \(command[0]) is not installed")
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = Array(command.dropFirst())
        let errors = Pipe()
        process.standardError = errors
        process.standardOutput = FileHandle.nullDevice
        do {
            try process.run()
        } catch {
            return Step(action: action, ok: false, detail: "\(error)")
        }
        let message = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        process.waitUntilExit()
        if process.terminationStatus == 0 { return Step(action: action, ok: true, detail: nil) }
        // systemctl: 5 = unit not loaded; "System has not been booted with systemd" = no systemd.
        let absent = message.contains("not loaded") || message.contains("not found") || message.contains("not been booted with systemd")
            || message.contains("Failed to connect to bus")
        return Step(action: action, ok: absent, detail: absent ? "skipped: \(message)" : message)
    }

    static var userName: String {
        getpwuid(geteuid()).map { String(cString: $0.pointee.pw_name) } ?? "uid \(geteuid())"
    }

    private func fail(_ message: String, code: String) {
        if json {
            let object: [String: Any] = ["ok": false, "error": ["code": code, "message": message]]
            if let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) {
                print(String(decoding: data, as: UTF8.self))
            }
        } else {
            var standardError = FileHandle.standardError
            print("beeldzorgctl: \(message)", to: &standardError)
        }
    }

    private func report(_ message: String) {
        if json {
            let object: [String: Any] = ["ok": false, "error": ["code": "not-confirmed", "message": message]]
            if let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) {
                print(String(decoding: data, as: UTF8.self))
            }
        } else {
            var standardError = FileHandle.standardError
            print("beeldzorgctl: \(message)", to: &standardError)
        }
    }
}
