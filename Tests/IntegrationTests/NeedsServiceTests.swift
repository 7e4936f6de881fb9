import Control
import Foundation
import Screen
import Testing

/// A configuration fault on a tablet under systemd (issue 17, problem 3): the built daemon, as
/// the unit runs it (`--on-config-fault needs-service`, an unprivileged uid), stays up instead
/// of exiting into a restart loop with a dead button: the screen says "needs service", the
/// status LED winks its needs-service pattern, `beeldzorgctl status` lists the fault with key,
/// line and path and exits 1, every other command is refused with it, and SIGTERM ends it
/// with 0.
///
/// The daemon runs in a mount namespace of the test's own: a fake LED class directory is
/// bound over `/sys/class/leds` (the host has none) and a directory of the test's over
/// `/run/beeldzorg`, so the image's default paths are used exactly as on the tablet.
@Suite(.serialized) struct NeedsServiceTests {
    final class Tablet: @unchecked Sendable {
        let setup: ConfigurationFaultTests.Setup
        let leds: String
        let run: String
        var led: String { leds + "/beeldzorg:status" }
        var socket: String { run + "/control.sock" }
        let process = Process()
        let output: URL

        init() throws {
            setup = try ConfigurationFaultTests.Setup()
            leds = setup.directory + "/leds"
            run = setup.directory + "/run"
            output = URL(fileURLWithPath: setup.directory + "/daemon.log")
            let fm = FileManager.default
            let uid = ConfigurationFaultTests.daemonUID
            try fm.createDirectory(atPath: led, withIntermediateDirectories: true)
            try fm.createDirectory(atPath: run, withIntermediateDirectories: true)
            chown(run, uid, uid)
            // What udev/70-beeldzorg.rules leaves: the timer trigger selected, the two delay
            // attributes writable by the daemon's user.
            for (name, value) in [("brightness", "0"), ("trigger", "none [timer] heartbeat"), ("delay_on", "500"), ("delay_off", "500")] {
                try "\(value)\n".write(toFile: "\(led)/\(name)", atomically: false, encoding: .utf8)
                chown("\(led)/\(name)", uid, uid)
            }
            chown(setup.passwordFile, uid, uid)
        }

        func start() throws {
            let uid = ConfigurationFaultTests.daemonUID
            let script = """
                set -e
                mount -t tmpfs tmpfs /sys/class
                mkdir /sys/class/leds
                mount --bind "$1" /sys/class/leds
                mount -t tmpfs tmpfs /run
                mkdir /run/beeldzorg
                mount --bind "$2" /run/beeldzorg
                shift 2
                exec setpriv --reuid=\(uid) --regid=\(uid) --clear-groups -- "$@"
                """
            FileManager.default.createFile(atPath: output.path, contents: nil)
            let log = try FileHandle(forWritingTo: output)
            process.executableURL = URL(fileURLWithPath: "/usr/bin/unshare")
            // unshare and sh exec: the PID is the daemon's, so SIGTERM reaches it.
            process.arguments = ["--mount", "--propagation", "private", "--", "/bin/sh", "-c", script, "sh", leds, run,
                                 Binaries.daemon.path, "--config", setup.config, "--on-config-fault", "needs-service"]
            process.standardOutput = log
            process.standardError = log
            process.standardInput = FileHandle.nullDevice
            try process.run()
        }

        var log: String { (try? String(contentsOf: output, encoding: .utf8)) ?? "" }

        func waitFor(_ what: String, _ condition: () throws -> Bool) async throws {
            let deadline = ContinuousClock.now + .seconds(20)
            while ContinuousClock.now < deadline {
                if try condition() { return }
                guard process.isRunning else {
                    throw HarnessError("beeldzorgd exited (\(process.terminationStatus)) waiting for \(what)\n\(log)")
                }
                try await Task.sleep(for: .milliseconds(50))
            }
            throw HarnessError("timed out waiting for \(what)\n\(log)")
        }

        func stop() async -> Int32 {
            if process.isRunning { kill(process.processIdentifier, SIGTERM) }
            let deadline = ContinuousClock.now + .seconds(10)
            while process.isRunning && ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(20)) }
            if process.isRunning {
                kill(process.processIdentifier, SIGKILL)
                process.waitUntilExit()
                return -1
            }
            return process.terminationStatus
        }

        func attribute(_ name: String) -> String {
            ((try? String(contentsOfFile: "\(led)/\(name)", encoding: .utf8)) ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
        }

        deinit {
            if process.isRunning {
                kill(process.processIdentifier, SIGKILL)
                process.waitUntilExit()
            }
        }
    }

    /// A missing CA file: screen, LED and status say "needs service" and name the fault.
    @Test func aMissingCAFileShowsNeedsServiceInsteadOfExiting() async throws {
        let tablet = try Tablet()
        let missing = tablet.setup.directory + "/no-such-ca.pem"
        try tablet.setup.write(caFile: missing, passwordFile: tablet.setup.passwordFile, screen: "offscreen",
                               controlSocket: "/run/beeldzorg/control.sock", statusLED: "beeldzorg:status")
        try tablet.start()
        defer { Task { [tablet] in _ = await tablet.stop() } }

        try await tablet.waitFor("the control socket") { FileManager.default.fileExists(atPath: tablet.socket) }
        let status = try runCtl(["status", "--json"], socket: tablet.socket)
        #expect(status.status == 0, "status --json answers: \(status.output) \(status.error)")
        let report = try ControlCoding.decoder.decode(StatusReport.self, from: Data(status.output.utf8))
        #expect(report.call.phase == "needsService")
        #expect(report.registration.isEmpty)
        #expect(report.faults.contains { $0.contains("'ca_file' (line 8): \(missing): does not exist") }, "\(report.faults)")

        let text = try runCtl(["status"], socket: tablet.socket)
        #expect(text.status == 1, "status with a fault exits 1")
        #expect(text.output.contains("needs service"), "\(text.output)")

        // The light: the needs-service wink, 100 ms on, 400 ms off.
        try await tablet.waitFor("the needs-service light") {
            tablet.attribute("delay_on") == "100" && tablet.attribute("delay_off") == "400"
        }

        // The screen: the fault background and the needs-service sentences' white text.
        let png = tablet.setup.directory + "/screen.png"
        let shot = try runCtl(["screenshot", png], socket: tablet.socket)
        #expect(shot.status == 0, "\(shot.error)")
        let image = try PNGCodec.read(png)
        #expect(image[0, 0] == Colour.faultBackground)
        #expect(image.pixels.filter { $0 == Colour.text }.count > 5_000, "no text on the needs-service screen")

        // Nothing else: a press is refused with the fault, never dialled.
        let press = try runCtl(["press"], socket: tablet.socket)
        #expect(press.status == 1)
        #expect(press.error.contains("needs service") && press.error.contains("ca_file"), "\(press.error)")

        // doctor does not call a needs-service daemon healthy.
        let doctor = try runCtl(["doctor", "--config", tablet.setup.config, "--json"], socket: tablet.socket)
        #expect(doctor.status != 0)
        let checks = (try JSONSerialization.jsonObject(with: Data(doctor.output.utf8)) as? [String: Any])?["checks"] as? [[String: Any]] ?? []
        let daemonCheck = checks.first { $0["name"] as? String == "daemon" }
        #expect(daemonCheck?["ok"] as? Bool == false, "\(doctor.output)")
        #expect((daemonCheck?["detail"] as? String)?.contains("needs service") == true, "\(doctor.output)")
        #expect((daemonCheck?["detail"] as? String)?.contains("'ca_file' (line 8)") == true, "\(doctor.output)")
        #expect(!checks.contains { $0["name"] as? String == "registration" && $0["ok"] as? Bool == true }, "\(doctor.output)")

        #expect(tablet.process.isRunning, "the daemon must stay up\n\(tablet.log)")

        // The technician puts the CA in place: the daemon notices and ends needs-service with
        // 75, for systemd's Restart=always to start it for real.
        try FileManager.default.copyItem(atPath: tablet.setup.caFile, toPath: missing)
        let deadline = ContinuousClock.now + .seconds(20)
        while tablet.process.isRunning && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(50)) }
        #expect(!tablet.process.isRunning, "still in needs-service after the fix\n\(tablet.log)")
        if !tablet.process.isRunning {
            #expect(tablet.process.terminationStatus == 75, "\(tablet.log)")
        }
    }

    /// A configuration that cannot even be parsed: the image's default socket and LED.
    @Test func anUnreadableConfigurationStillAnswersOnTheDefaultSocket() async throws {
        let tablet = try Tablet()
        try "account: [this is not\n".write(toFile: tablet.setup.config, atomically: true, encoding: .utf8)
        try tablet.start()
        defer { Task { [tablet] in _ = await tablet.stop() } }

        try await tablet.waitFor("the default control socket") { FileManager.default.fileExists(atPath: tablet.socket) }
        let status = try runCtl(["status", "--json"], socket: tablet.socket)
        #expect(status.status == 0)
        let report = try ControlCoding.decoder.decode(StatusReport.self, from: Data(status.output.utf8))
        #expect(report.call.phase == "needsService")
        #expect(report.faults.contains { $0.contains(tablet.setup.config) }, "\(report.faults)")
        try await tablet.waitFor("the needs-service light") {
            tablet.attribute("delay_on") == "100" && tablet.attribute("delay_off") == "400"
        }
        #expect(await tablet.stop() == 0, "\(tablet.log)")
    }
}
