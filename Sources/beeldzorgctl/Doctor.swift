import ArgumentParser
import BeeldzorgConfig
import Control
import Devices
import Foundation
import Store

/// `beeldzorgctl doctor`: the installer's "good to go".
struct DoctorCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "doctor",
        abstract: "Check everything the tablet needs and say what to do about each problem.",
        discussion: """
            Checks the configuration, the clock, beeldzorgd and its call state, registration, \
            the database, the button, camera, microphone and speaker, the TLS CA file, caller \
            trust (edge proxies configured), the \
            prompts and the centrale's posts. While beeldzorgd runs, the camera and microphone \
            are tested by the daemon (never during a call); when it is not running, doctor \
            says so and opens them itself.

            Exit status: the number of failed checks (0 = good to go; at most 63).
            """
    )

    @OptionGroup var options: TechnicianOptions

    struct Check: Encodable {
        var name: String
        var ok: Bool
        var detail: String
        var fix: String?

        enum Keys: String, CodingKey { case name, ok, detail, fix }

        /// `fix` is always present, null when the check passed, so scripts can rely on the shape.
        func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: Keys.self)
            try c.encode(name, forKey: .name)
            try c.encode(ok, forKey: .ok)
            try c.encode(detail, forKey: .detail)
            try c.encode(fix, forKey: .fix)
        }
    }

    struct Answer: Encodable {
        var ok: Bool
        var failures: Int
        var checks: [Check]
    }

    func run() throws {
        let checks = Doctor(options: options).run()
        let failures = checks.filter { !$0.ok }.count
        if options.json {
            options.printJSON(Answer(ok: failures == 0, failures: failures, checks: checks))
        } else {
            print(Self.render(checks))
        }
        if failures > 0 { throw ExitCode(Int32(min(failures, 63))) }
    }

    static func render(_ checks: [Check]) -> String {
        let width = (checks.map(\.name.count).max() ?? 0) + 2
        var lines: [String] = []
        for check in checks {
            lines.append("\(mark(check.ok)) \(check.name.padding(toLength: width, withPad: " ", startingAt: 0))\(check.detail)")
            if let fix = check.fix, !check.ok {
                lines.append(String(repeating: " ", count: width + 2) + "→ " + fix)
            }
        }
        let failures = checks.filter { !$0.ok }.count
        lines.append("")
        lines.append(failures == 0
            ? Terminal.good("All \(checks.count) checks passed: good to go.")
            : Terminal.bad("\(failures) of \(checks.count) checks failed."))
        return lines.joined(separator: "\n")
    }
}

/// The checks themselves, in the order a technician would work through them.
struct Doctor {
    typealias Check = DoctorCommand.Check
    var options: TechnicianOptions
    var now = Date()

    // Where things are when the configuration cannot be read: the image's defaults.
    static let defaultButton = "/dev/beeldzorg/button"
    static let defaultCamera = "/dev/beeldzorg/camera"

    func run() -> [Check] {
        var checks: [Check] = []
        let configuration: Configuration?
        switch options.loadConfiguration() {
        case .success(let loaded):
            configuration = loaded
            checks.append(Check(name: "configuration", ok: true,
                                detail: "\(options.config): \(loaded.centrale.posts.count) posts, \(loaded.centrale.policy.rawValue), \(loaded.transport.rawValue)"))
        case .failure(let error):
            configuration = nil
            var fix = error.key.isEmpty
                ? "Put a valid configuration at \(options.config) (see beeldzorgd.example.yaml)"
                : "Correct '\(error.key)'\(error.line.map { " on line \($0)" } ?? "") of \(options.config)"
            fix += ", then run `beeldzorgd --check-config --config \(options.config)`. Other checks below use the image's default paths."
            checks.append(Check(name: "configuration", ok: false, detail: error.description, fix: fix))
        }

        checks.append(clockCheck())

        let socket = options.socketPath(configuration)
        let daemon = DaemonState.query(socket: socket)
        checks.append(contentsOf: daemonChecks(daemon, socket: socket))

        checks.append(storeCheck(configuration, daemon: daemon))
        checks.append(buttonCheck(configuration))
        checks.append(contentsOf: mediaChecks(configuration, daemon: daemon, socket: socket))

        if let configuration {
            checks.append(tlsCheck(configuration))
            checks.append(callerTrustCheck(configuration))
            checks.append(promptsCheck(configuration))
            let posts = configuration.centrale.posts
            checks.append(Check(
                name: "posts", ok: !posts.isEmpty,
                detail: posts.isEmpty ? "no centrale posts configured" : posts.map { "\($0.id) \($0.uri)" }.joined(separator: ", "),
                fix: "Add the centrale's posts under centrale.posts in \(options.config)."))
        }
        // A fix is advice for a failure only.
        return checks.map { check in
            var check = check
            if check.ok { check.fix = nil }
            return check
        }
    }

    /// Whether this tablet has its configuration. Without it systemd skips beeldzorgd
    /// (`ConditionPathExists=` in the unit), so starting the daemon is no advice.
    var provisioned: Bool { FileManager.default.fileExists(atPath: options.config) }

    /// What to do on a tablet that was never provisioned. Not `systemctl start beeldzorgd`:
    /// systemd skips the unit without a configuration, and the `tech` user may not start it.
    static func provisionFix(_ config: String) -> String {
        "This tablet is not provisioned: \(config) does not exist, so systemd does not start beeldzorgd. "
            + "Provision it: put its configuration and credentials in beeldzorg/provision/ on the ESP (the "
            + "installer's step, see README \"The device image\") and reboot; the first boot installs them "
            + "and starts beeldzorgd. Then run doctor again."
    }

    /// Who may call in, and how the tablet knows who calls: only the edge proxies' flows, the
    /// caller being what they assert (issue 15). Without edge proxies (a lab or demo set-up)
    /// anyone can claim a contact's address, so this fails: contacts still ring, but nobody
    /// is auto-answered.
    func callerTrustCheck(_ configuration: Configuration) -> Check {
        let proxies = configuration.edgeProxies
        return Check(
            name: "caller trust", ok: !proxies.isEmpty,
            detail: proxies.isEmpty
                ? "no edge proxy configured: nothing is trusted, any host can claim a contact's address; auto-answer is off"
                : "calls are taken only from the edge proxies (\(proxies.joined(separator: ", "))); auto-answer as each contact has it",
            fix: "A tablet in a home needs the centrale's edge proxies under edge_proxies in \(options.config); "
                + "without them it is a lab set-up.")
    }

    func clockCheck() -> Check {
        let year = Calendar(identifier: .gregorian).component(.year, from: now)
        let text = now.formatted(Date.ISO8601FormatStyle())
        return Check(name: "clock", ok: year >= 2025, detail: text,
                     fix: "The clock is wrong, so TLS certificates will be refused. Check `timedatectl status` and that the network's time server (NTP) is reachable.")
    }

    /// The phase of a daemon that did not start for a configuration fault and only says so
    /// (`NeedsServiceMode` in the daemon): it holds no devices and registers nowhere.
    static let needsServicePhase = "needsService"

    func daemonChecks(_ daemon: DaemonState, socket: String) -> [Check] {
        switch daemon {
        case .running(let report) where report.call.phase == Self.needsServicePhase:
            let faults = report.faults.filter { $0.hasPrefix("configuration: ") }.map { String($0.dropFirst("configuration: ".count)) }
            return [Check(
                name: "daemon", ok: false,
                detail: "beeldzorgd \(report.daemon.version) did not start: it needs service (the screen says so, the button calls nobody): \(faults.joined(separator: "; "))",
                fix: "Correct what is named above, check with `beeldzorgd --check-config`, then `systemctl restart beeldzorgd`.")]
        case .running(let report):
            var checks = [Check(
                name: "daemon", ok: report.call.phase != "fault",
                detail: "beeldzorgd \(report.daemon.version) running, pid \(report.daemon.pid), call state \(report.call.phase)\(report.daemon.demo ? " (demo)" : "")",
                fix: "The call flow is in its fault state: see `beeldzorgctl status` for the fault and `beeldzorgctl logs --since 1h` for why.")]
            if report.registration.isEmpty {
                checks.append(Check(name: "registration", ok: true, detail: "no edge proxy configured: calls go straight to the posts"))
            }
            for registration in report.registration {
                let ok = registration.state == "registered" || registration.state == "notConfigured"
                checks.append(Check(
                    name: "registration", ok: ok,
                    detail: "\(registration.proxy): \(registration.state)\(registration.detail.map { " (\($0))" } ?? "")",
                    fix: "Check the network and the SIP account (user, password file) with the centrale; `beeldzorgctl logs --since 1h` shows the registrar's answers."))
            }
            return checks
        case .notRunning(let reason):
            return [Check(name: "daemon", ok: false, detail: reason + "; registration and call state are unknown",
                          fix: provisioned
                            ? "Start it: `systemctl start beeldzorgd`. If it stops again, `beeldzorgctl logs --since 1h` says why."
                            : Self.provisionFix(options.config))]
        case .noPermission(let reason):
            return [Check(name: "daemon", ok: false, detail: reason,
                          fix: "Run doctor as root, or add your user to the beeldzorg-tech group and log in again.")]
        case .broken(let reason):
            return [Check(name: "daemon", ok: false, detail: "beeldzorgd does not answer properly on \(socket): \(reason)",
                          fix: "Restart it: `systemctl restart beeldzorgd`, then run doctor again.")]
        }
    }

    func storeCheck(_ configuration: Configuration?, daemon: DaemonState) -> Check {
        let path = configuration?.databasePath ?? DatabaseOptions.defaultPath
        let name = "store"
        if case .running(let report) = daemon, !report.store.healthy {
            return Check(name: name, ok: false, detail: "beeldzorgd reports: \(report.store.detail ?? "unhealthy") (\(report.store.path))",
                         fix: "The damaged file was moved aside (see above). Restart beeldzorgd; if it keeps happening, the storage may be failing.")
        }
        let fm = FileManager.default
        if case .running(let report) = daemon, !fm.isReadableFile(atPath: path) {
            // tech cannot open the 0700 state directory; the daemon, which owns the file, can.
            return Check(name: name, ok: true, detail: "\(report.store.path): healthy (reported by beeldzorgd)")
        }
        let directory = (path as NSString).deletingLastPathComponent
        if access(directory, X_OK) != 0 && errno == EACCES {
            return Check(name: name, ok: false, detail: "\(directory) is closed to you and beeldzorgd is not running to report on \(path)",
                         fix: "Start beeldzorgd (`systemctl start beeldzorgd`) or run doctor as root.")
        }
        guard fm.fileExists(atPath: path) else {
            return Check(name: name, ok: false, detail: "no database at \(path)",
                         fix: provisioned
                            ? "beeldzorgd creates it on its first start: start beeldzorgd (`systemctl start beeldzorgd`)."
                            : "beeldzorgd creates it on its first start, after provisioning. " + Self.provisionFix(options.config))
        }
        guard fm.isReadableFile(atPath: path) else {
            return Check(name: name, ok: false, detail: "no permission to read \(path)",
                         fix: "Run doctor as root or as a member of the beeldzorg-tech group.")
        }
        do {
            let store = try BeeldzorgStore.openReadOnly(path: path)
            defer { try? store.close() }
            let findings = try store.integrityCheck()
            guard findings == ["ok"] else {
                return Check(name: name, ok: false, detail: "\(path) is damaged: \(findings.prefix(3).joined(separator: "; "))",
                             fix: "Restart beeldzorgd: it moves a damaged database aside and starts a fresh one (contacts come back at the next provisioning).")
            }
            return Check(name: name, ok: true, detail: "\(path): integrity ok")
        } catch {
            return Check(name: name, ok: false, detail: "cannot open \(path): \(error)",
                         fix: "Start beeldzorgd once so it creates or repairs the database, then run doctor again.")
        }
    }

    func buttonCheck(_ configuration: Configuration?) -> Check {
        let device = configuration?.button.device ?? Self.defaultButton
        let fix = "Check the button's cable; `ls -l /dev/beeldzorg/` should list `button` (udev names it). On a new tablet model, see udev/README for matching its key."
        if device == "stdin" {
            return Check(name: "button", ok: true, detail: "keyboard on standard input (demo)")
        }
        if device.hasPrefix("fifo:") {
            let path = String(device.dropFirst(5))
            return Check(name: "button", ok: Self.exists(path), detail: "FIFO \(path)\(Self.exists(path) ? "" : " missing")",
                         fix: "The FIFO is made by beeldzorgd at start; start beeldzorgd.")
        }
        if Self.isCharacterDevice(device) {
            return Check(name: "button", ok: true, detail: "\(device) present")
        }
        return Check(name: "button", ok: false,
                     detail: Self.exists(device) ? "\(device) is not a device node" : "\(device) not found", fix: fix)
    }

    /// Camera and microphone are tested by the daemon while it runs (never during a call),
    /// and opened directly only when it does not run.
    func mediaChecks(_ configuration: Configuration?, daemon: DaemonState, socket: String) -> [Check] {
        let camera = configuration?.camera.device ?? Self.defaultCamera
        let cameraFix = "Check the camera's cable; `ls -l /dev/beeldzorg/` should list `camera`. `beeldzorgctl test camera --save frame.ppm` shows what it sees."
        let microphoneFix = "Check that the microphone is connected and the PCM in audio.capture exists (`arecord -L`); unmute it in `alsamixer`."
        let speakerFix = "Check the PCM in audio.playback exists (`aplay -L`) and nothing else holds it; then `beeldzorgctl test speaker`."
        var checks: [Check] = []
        let cameraPresent = camera == "test-pattern" || Self.isCharacterDevice(camera)
        checks.append(Check(name: "camera", ok: cameraPresent,
                            detail: camera == "test-pattern" ? "test pattern (stand-in)" : "\(camera) \(cameraPresent ? "present" : "not found")",
                            fix: cameraFix))
        guard let configuration else { return checks }

        // A needs-service daemon holds no devices: doctor opens them itself.
        var daemon = daemon
        if case .running(let report) = daemon, report.call.phase == Self.needsServicePhase {
            daemon = .notRunning("needs service")
        }
        switch daemon {
        case .running(let report) where report.call.phase != "idle":
            let note = "not tested: a call is in progress (\(report.call.phase)); run doctor again afterwards"
            checks.append(Check(name: "camera test", ok: true, detail: note))
            checks.append(Check(name: "microphone", ok: true, detail: note))
        case .running:
            let client = ControlClient(socketPath: socket, timeout: .seconds(10))
            if cameraPresent {
                checks.append(remote(client, ControlRequest(cmd: .testCamera, seconds: 0.5), name: "camera test", fix: cameraFix) {
                    (r: LocalDevices.CameraResult) in "\(r.width)×\(r.height) \(r.pixelFormat), \(String(format: "%.0f", r.measuredFramesPerSecond)) frames/s (tested by beeldzorgd)"
                })
            }
            checks.append(remote(client, ControlRequest(cmd: .testMicrophone, seconds: 0.5), name: "microphone", fix: microphoneFix) {
                (r: LocalDevices.MicrophoneResult) in "\(r.device) opens; level \(String(format: "%.1f", r.rmsDBFS)) dBFS RMS (tested by beeldzorgd)"
            })
            checks.append(Check(name: "speaker", ok: true, detail: "\(configuration.audio.playback): held by beeldzorgd for prompts (`beeldzorgctl test speaker` plays one)"))
            return checks
        case .notRunning, .noPermission, .broken:
            if cameraPresent {
                do {
                    let (result, _) = try LocalDevices.grab(configuration, seconds: 0.5, keepFrame: false)
                    checks.append(Check(name: "camera test", ok: true,
                                        detail: "\(result.width)×\(result.height), \(String(format: "%.0f", result.measuredFramesPerSecond)) frames/s (opened by doctor)"))
                } catch {
                    checks.append(Check(name: "camera test", ok: false, detail: "\(error)", fix: cameraFix))
                }
            }
            do {
                let result = try LocalDevices.record(configuration.audio.capture, seconds: 0.3)
                checks.append(Check(name: "microphone", ok: true,
                                    detail: "\(result.device) opens; level \(String(format: "%.1f", result.rmsDBFS)) dBFS RMS (opened by doctor)"))
            } catch {
                checks.append(Check(name: "microphone", ok: false, detail: "\(error)", fix: microphoneFix))
            }
            checks.append(speakerOpens(configuration.audio.playback, fix: speakerFix))
        }
        return checks
    }

    private func remote<T: Decodable>(_ client: ControlClient, _ request: ControlRequest, name: String, fix: String,
                                      describe: (T) -> String) -> Check {
        do {
            let response = try client.send(request)
            guard response.ok else {
                return Check(name: name, ok: false, detail: response.error?.message ?? "the daemon refused the test", fix: fix)
            }
            return Check(name: name, ok: true, detail: describe(try response.decodeResult(T.self)))
        } catch {
            return Check(name: name, ok: false, detail: "\(error)", fix: fix)
        }
    }

    private func speakerOpens(_ device: String, fix: String) -> Check {
        let sink = LocalDevices.speaker(device)
        do {
            try sink.open(AudioFormat())
            sink.close()
            return Check(name: "speaker", ok: true, detail: "\(device) opens (opened by doctor, nothing played)")
        } catch {
            return Check(name: "speaker", ok: false, detail: "speaker \(device) cannot be opened: \(error)", fix: fix)
        }
    }

    func tlsCheck(_ configuration: Configuration) -> Check {
        guard configuration.transport == .tls else {
            return Check(name: "TLS CA file", ok: true, detail: "not needed (transport \(configuration.transport.rawValue))")
        }
        guard let file = configuration.caFile else {
            return Check(name: "TLS CA file", ok: true, detail: "none configured: the system's trusted CAs are used")
        }
        let readable = FileManager.default.isReadableFile(atPath: file)
        let looksLikePEM = readable && ((try? String(contentsOfFile: file, encoding: .utf8))?.contains("-----BEGIN CERTIFICATE-----") ?? false)
        return Check(name: "TLS CA file", ok: looksLikePEM,
                     detail: readable ? (looksLikePEM ? "\(file) readable" : "\(file) holds no PEM certificate") : "\(file) missing or not readable",
                     fix: "Install the centrale's CA certificate (PEM) at \(file), readable by the beeldzorg user, or correct ca_file.")
    }

    func promptsCheck(_ configuration: Configuration) -> Check {
        let file = "\(configuration.promptsDirectory)/\(configuration.language).txt"
        do {
            let catalog = try PromptCatalog(contentsOf: file)
            return Check(name: "prompts", ok: true, detail: "\(file): \(catalog.keys.count) sentences")
        } catch {
            return Check(name: "prompts", ok: false, detail: "\(error)",
                         fix: "The tablet cannot speak without it: reinstall the image's prompts or correct `prompts:` in \(options.config).")
        }
    }

    static func exists(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0
    }

    static func isCharacterDevice(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFCHR
    }
}
