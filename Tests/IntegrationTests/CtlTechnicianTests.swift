import Control
import Foundation
import Testing

/// The field technician's beeldzorgctl commands against the built binaries: doctor, the
/// device tests (through a running daemon and directly), a test call to the demo centrale,
/// logs and factory-reset on a throw-away tree.
@Suite(.serialized) struct CtlTechnicianTests {
    /// Decodes a command's JSON output into a dictionary.
    func object(_ text: String) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any], "not a JSON object: \(text)")
    }

    func checks(_ doctor: [String: Any]) throws -> [String: [String: Any]] {
        let list = try #require(doctor["checks"] as? [[String: Any]])
        var byName: [String: [String: Any]] = [:]
        for check in list {
            let name = try #require(check["name"] as? String)
            #expect(check["ok"] is Bool && check["detail"] is String && check.keys.contains("fix"), "check shape: \(check)")
            byName[name] = check
        }
        return byName
    }

    @Test func doctorWithTheDemoDaemonRunningPassesEveryCheck() async throws {
        let daemon = try DaemonUnderTest()
        try daemon.start()
        try await daemon.waitUntilReady()

        let json = try runCtl(["doctor", "--config", daemon.configPath, "--json"], socket: nil)
        let answer = try object(json.output)
        let failing = (answer["checks"] as? [[String: Any]] ?? []).filter { $0["ok"] as? Bool != true }
        // The demo has no edge proxy: nothing is trusted, which is the one check that fails
        // (issue 15); everything else passes.
        #expect(failing.map { $0["name"] as? String } == ["caller trust"], "failing: \(failing)")
        #expect(json.status == 1, "failing: \(failing)")
        #expect(answer["failures"] as? Int == 1)
        let byName = try checks(answer)
        #expect((byName["caller trust"]?["detail"] as? String)?.contains("auto-answer is off") == true)
        for name in ["configuration", "clock", "daemon", "registration", "store", "button", "camera", "camera test",
                     "microphone", "speaker", "TLS CA file", "prompts", "posts"] {
            #expect(byName[name]?["ok"] as? Bool == true, "\(name): \(byName[name] ?? [:])")
        }
        #expect((byName["daemon"]?["detail"] as? String)?.contains("call state idle") == true)
        // While the daemon runs it tests the camera and microphone itself.
        #expect((byName["microphone"]?["detail"] as? String)?.contains("tested by beeldzorgd") == true)
        #expect(byName["daemon"]?["fix"] is NSNull)

        let text = try runCtl(["doctor", "--config", daemon.configPath], socket: nil)
        #expect(text.status == 1)
        #expect(text.output.contains("✓ daemon"))
        #expect(text.output.contains("✗ caller trust"))
        #expect(text.output.contains("edge_proxies"))
        #expect(await daemon.stop() == 0)
    }

    @Test func deviceTestsRunThroughTheDaemonWithTheStandIns() async throws {
        let daemon = try DaemonUnderTest()
        try daemon.start()
        try await daemon.waitUntilReady()

        // Camera: the test pattern, one frame saved as a PPM image.
        let image = daemon.directory.appendingPathComponent("frame.ppm").path
        let camera = try runCtl(["test", "camera", "--config", daemon.configPath, "--seconds", "1", "--save", image, "--json"], socket: nil)
        #expect(camera.status == 0, "\(camera.output) \(camera.error)")
        let cameraAnswer = try object(camera.output)
        #expect(cameraAnswer["via"] as? String == "daemon")
        let cameraResult = try #require(cameraAnswer["result"] as? [String: Any])
        let width = try #require(cameraResult["width"] as? Int)
        let height = try #require(cameraResult["height"] as? Int)
        #expect(cameraResult["pixelFormat"] as? String == "I420")
        let rate = try #require(cameraResult["measuredFramesPerSecond"] as? Double)
        #expect(rate > 0 && rate < 40, "measured \(rate) frames/s from a 25 frames/s pattern")
        let ppm = try Data(contentsOf: URL(fileURLWithPath: image))
        let header = "P6\n\(width) \(height)\n255\n"
        #expect(ppm.prefix(header.utf8.count) == Data(header.utf8))
        #expect(ppm.count == header.utf8.count + width * height * 3)

        // Microphone: tone:440 at amplitude 0.3 → peak 20·log10(0.3) ≈ −10.5 dBFS and, for a
        // sine, RMS = peak/√2 → ≈ −13.5 dBFS.
        let mic = try runCtl(["test", "mic", "--config", daemon.configPath, "--json"], socket: nil)
        #expect(mic.status == 0, "\(mic.output) \(mic.error)")
        let micAnswer = try object(mic.output)
        #expect(micAnswer["via"] as? String == "daemon")
        let micResult = try #require(micAnswer["result"] as? [String: Any])
        let rms = try #require(micResult["rmsDBFS"] as? Double)
        let peak = try #require(micResult["peakDBFS"] as? Double)
        #expect(abs(rms - 20 * log10(0.3 / 2.0.squareRoot())) < 0.5, "RMS \(rms) dBFS")
        #expect(abs(peak - 20 * log10(0.3)) < 0.5, "peak \(peak) dBFS")
        #expect(micResult["samples"] as? Int == 3 * 48_000)

        let speaker = try runCtl(["test", "speaker", "--config", daemon.configPath, "--json"], socket: nil)
        #expect(speaker.status == 0, "\(speaker.error)")
        #expect(try object(speaker.output)["via"] as? String == "daemon")

        // The daemon holds the button: it hands the next press to the test instead of
        // calling the centrale.
        let pressLater = Task {
            try await Task.sleep(for: .seconds(1))
            try daemon.button("long")
        }
        let button = try runCtl(["test", "button", "--config", daemon.configPath, "--timeout", "10", "--json"], socket: nil)
        try await pressLater.value
        #expect(button.status == 0, "\(button.error)")
        let buttonAnswer = try object(button.output)
        #expect(buttonAnswer["via"] as? String == "daemon")
        #expect((buttonAnswer["result"] as? [String: Any])?["event"] as? String == "longPress")
        #expect(try daemon.status().call.phase == "idle")
        // No press within the time: a failed test, and the next press is the client's again.
        let silent = try runCtl(["test", "button", "--config", daemon.configPath, "--timeout", "1"], socket: nil)
        #expect(silent.status == 1)
        try daemon.button("press")
        try await daemon.waitFor("the press to call the centrale", timeout: .seconds(10)) {
            try daemon.status().call.phase != "idle"
        }
        #expect(await daemon.stop() == 0)
    }

    @Test func aTestCallReachesTheDemoCentraleAndDeviceTestsWaitDuringACall() async throws {
        let daemon = try DaemonUnderTest()
        try daemon.start()
        try await daemon.waitUntilReady()

        let call = try runCtl(["test", "call", "--config", daemon.configPath, "--hold", "1", "--json"], socket: nil)
        #expect(call.status == 0, "\(call.output) \(call.error)")
        let result = try #require(try object(call.output)["result"] as? [String: Any])
        #expect(result["answered"] as? Bool == true)
        let setup = try #require(result["setupSeconds"] as? Double)
        #expect(setup > 0 && setup < 20)
        let media = try #require(result["media"] as? [String: Any])
        #expect((media["audioPacketsReceived"] as? Int ?? 0) > 0)
        #expect(media["authenticationFailures"] as? Int == 0)
        // It hung up and the call is in the log like any other.
        #expect(try daemon.status().call.phase == "idle")
        let records = try #require(try daemon.client.send(ControlRequest(cmd: .calls)).result)
        let list = try #require(try JSONSerialization.jsonObject(with: records) as? [[String: Any]])
        #expect(list.first?["direction"] as? String == "outgoing")

        // In a call the camera and microphone belong to the call.
        try daemon.button("press")
        try await daemon.waitForPhase("inCall", timeout: .seconds(20))
        let mic = try runCtl(["test", "mic", "--config", daemon.configPath], socket: nil)
        #expect(mic.status == 5)
        #expect(mic.error.contains("call is in progress"))
        let refused = try daemon.client.send(ControlRequest(cmd: .testCamera, seconds: 0.5))
        #expect(refused.ok == false)
        #expect(refused.error?.code == .unavailable)
        let doctor = try object(try runCtl(["doctor", "--config", daemon.configPath, "--json"], socket: nil).output)
        let byName = try checks(doctor)
        #expect((byName["microphone"]?["detail"] as? String)?.contains("not tested") == true)
        #expect(try daemon.status().call.phase == "inCall")
        try daemon.button("long")
        #expect(await daemon.stop() == 0)
    }

    @Test func withoutTheDaemonDoctorSaysSoAndStillChecksWhatItCan() async throws {
        // Run the daemon once so there is a database, then stop it.
        let daemon = try DaemonUnderTest()
        try daemon.start()
        try await daemon.waitUntilReady()
        #expect(await daemon.stop() == 0)

        let json = try runCtl(["doctor", "--config", daemon.configPath, "--json"], socket: nil)
        let answer = try object(json.output)
        let failures = try #require(answer["failures"] as? Int)
        #expect(failures > 0)
        #expect(json.status == Int32(failures))
        let byName = try checks(answer)
        #expect(byName["daemon"]?["ok"] as? Bool == false)
        #expect((byName["daemon"]?["detail"] as? String)?.contains("not running") == true)
        #expect((byName["daemon"]?["fix"] as? String)?.contains("systemctl start beeldzorgd") == true)
        #expect(byName["configuration"]?["ok"] as? Bool == true)
        #expect(byName["store"]?["ok"] as? Bool == true, "\(byName["store"] ?? [:])")
        #expect((byName["microphone"]?["detail"] as? String)?.contains("opened by doctor") == true)

        let text = try runCtl(["doctor", "--config", daemon.configPath], socket: nil)
        #expect(text.output.contains("✗ daemon"))
        #expect(text.output.contains("beeldzorgd is not running"))

        // Device tests open the stand-ins directly now; a test call needs the daemon.
        let mic = try object(try runCtl(["test", "mic", "--config", daemon.configPath, "--seconds", "0.5", "--json"], socket: nil).output)
        #expect(mic["via"] as? String == "direct")
        let rms = try #require((mic["result"] as? [String: Any])?["rmsDBFS"] as? Double)
        #expect(abs(rms - 20 * log10(0.3 / 2.0.squareRoot())) < 0.5)
        let camera = try runCtl(["test", "camera", "--config", daemon.configPath, "--seconds", "0.5"], socket: nil)
        #expect(camera.status == 0, "\(camera.error)")
        #expect(camera.output.contains("tested directly"))
        let call = try runCtl(["test", "call", "--config", daemon.configPath], socket: nil)
        #expect(call.status == 3)

        // test button reads the configured button itself: a long press through the FIFO.
        let process = Process()
        process.executableURL = Binaries.ctl
        process.arguments = ["test", "button", "--config", daemon.configPath, "--timeout", "10", "--json"]
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.nullDevice
        process.standardInput = FileHandle.nullDevice
        try process.run()
        defer { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
        // The FIFO takes a writer only once the CLI has opened it for reading.
        let deadline = ContinuousClock.now + .seconds(5)
        while (try? daemon.button("long")) == nil {
            #expect(ContinuousClock.now < deadline, "the CLI never opened the button FIFO")
            if ContinuousClock.now >= deadline { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        let output = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
        let button = try object(String(decoding: output, as: UTF8.self))
        #expect((button["result"] as? [String: Any])?["event"] as? String == "longPress")
    }

    @Test func doctorWithABrokenConfigurationNamesTheKey() throws {
        let daemon = try DaemonUnderTest()
        let broken = daemon.directory.appendingPathComponent("broken.yaml").path
        let text = try String(contentsOfFile: daemon.configPath, encoding: .utf8)
            .replacingOccurrences(of: "policy: ring_all", with: "policy: everyone")
        try text.write(toFile: broken, atomically: true, encoding: .utf8)

        let json = try runCtl(["doctor", "--config", broken, "--json"], socket: nil)
        #expect(json.status > 0)
        let byName = try checks(try object(json.output))
        let configuration = try #require(byName["configuration"])
        #expect(configuration["ok"] as? Bool == false)
        #expect((configuration["detail"] as? String)?.contains("centrale.policy") == true, "\(configuration)")
        #expect((configuration["fix"] as? String)?.contains("centrale.policy") == true)
        // The rest is still checked, with the image's default paths.
        #expect(byName["clock"] != nil && byName["store"] != nil && byName["button"] != nil)
    }

    @Test func factoryResetRemovesExactlyThePersonalFiles() throws {
        let fm = FileManager.default
        let root = fm.temporaryDirectory.appendingPathComponent("bz-reset-\(UUID().uuidString.prefix(8))")
        defer { try? fm.removeItem(at: root) }
        func put(_ path: String, _ text: String = "x") throws {
            let url = root.appendingPathComponent(path)
            try fm.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try text.write(to: url, atomically: true, encoding: .utf8)
        }
        let config = """
            account:
              user: tablet
              domain: example.org
              display_name: Mevrouw Jansen
              password_file: /etc/beeldzorg/credentials/sip-password
            transport: udp
            srtp: required
            centrale:
              posts:
                - id: a
                  uri: sip:a@example.org
            database: /data/client.sqlite
            """
        let personal = [
            "var/lib/beeldzorg/beeldzorg.sqlite", "var/lib/beeldzorg/beeldzorg.sqlite-wal",
            "var/lib/beeldzorg/beeldzorg.sqlite-shm", "var/lib/beeldzorg/beeldzorg.sqlite.corrupt-20261120T101010Z",
            "var/lib/beeldzorg/provisioning-cache.json",
            "etc/beeldzorg/credentials/sip-password", "etc/beeldzorg/credentials/provisioning-token",
            "data/client.sqlite", "data/client.sqlite-wal", "data/client.sqlite.corrupt-20261121T090000Z",
            // The configuration names the client (display_name): the tablet goes back to "not provisioned".
            "etc/beeldzorg/beeldzorgd.yaml",
        ]
        let kept = [
            "etc/beeldzorg/beeldzorgd.example.yaml", "etc/beeldzorg/centrale-ca.pem", "usr/bin/beeldzorgd",
            "data/README", "usr/share/beeldzorg/prompts/nl.txt",
        ]
        for path in personal + kept { try put(path) }
        try put("etc/beeldzorg/beeldzorgd.yaml", config)

        // Without a terminal and without --yes: refused, nothing touched.
        let refused = try ctlWithoutTerminal(["factory-reset", "--root", root.path])
        #expect(refused.status == 2)
        #expect(refused.error.contains("--yes"))
        for path in personal { #expect(fm.fileExists(atPath: root.appendingPathComponent(path).path)) }

        let reset = try ctlWithoutTerminal(["factory-reset", "--yes", "--root", root.path, "--json"])
        #expect(reset.status == 0, "\(reset.output) \(reset.error)")
        let answer = try object(reset.output)
        #expect(answer["ok"] as? Bool == true)
        let removed = Set((answer["removed"] as? [String] ?? []).map { String($0.dropFirst(root.standardizedFileURL.path.count + 1)) })
        #expect(removed == Set(personal))
        for path in personal { #expect(!fm.fileExists(atPath: root.appendingPathComponent(path).path), "\(path) survived") }
        for path in kept { #expect(fm.fileExists(atPath: root.appendingPathComponent(path).path), "\(path) was removed") }
        // The directories stay for systemd (StateDirectory) and the next provisioning.
        #expect(fm.fileExists(atPath: root.appendingPathComponent("var/lib/beeldzorg").path))
        #expect(fm.fileExists(atPath: root.appendingPathComponent("etc/beeldzorg/credentials").path))
        // And it says what it checked afterwards.
        let verified = answer["verified"] as? [String] ?? []
        #expect(verified.contains { $0.contains("credentials is empty") }, "\(verified)")
        #expect(verified.contains { $0.contains("the client's name is in no file") }, "\(verified)")
    }

    /// Issue 17.2: the reset proves it. A file it does not know about that still names the
    /// client (an installer's note left in /etc/beeldzorg) makes it fail, naming the file;
    /// the rest is erased all the same.
    @Test func factoryResetFailsWhenSomethingLeftNamesTheClient() throws {
        let fm = FileManager.default
        let root = fm.temporaryDirectory.appendingPathComponent("bz-reset-\(UUID().uuidString.prefix(8))")
        defer { try? fm.removeItem(at: root) }
        func put(_ path: String, _ text: String) throws {
            let url = root.appendingPathComponent(path)
            try fm.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try text.write(to: url, atomically: true, encoding: .utf8)
        }
        let config = """
            account:
              user: tablet
              domain: example.org
              display_name: Mevrouw Jansen
            transport: udp
            srtp: required
            centrale:
              posts:
                - id: a
                  uri: sip:a@example.org
            """
        try put("etc/beeldzorg/beeldzorgd.yaml", config)
        try put("var/lib/beeldzorg/beeldzorg.sqlite", "calls")
        try put("etc/beeldzorg/installatie-notitie.txt", "Geplaatst bij Mevrouw Jansen, 2e verdieping")
        try put("etc/beeldzorg/beeldzorgd.example.yaml", "display_name: \"Mevrouw Voorbeeld\"")

        let reset = try ctlWithoutTerminal(["factory-reset", "--yes", "--root", root.path, "--json"])
        #expect(reset.status == 1, "\(reset.output) \(reset.error)")
        let answer = try object(reset.output)
        #expect(answer["ok"] as? Bool == false)
        let failed = (answer["failed"] as? [[String: Any]] ?? []).compactMap { $0["detail"] as? String }
        #expect(failed.contains { $0.contains("installatie-notitie.txt") } && !failed.contains { $0.contains("example") }, "\(failed)")
        #expect(!fm.fileExists(atPath: root.appendingPathComponent("var/lib/beeldzorg/beeldzorg.sqlite").path))
        #expect(!fm.fileExists(atPath: root.appendingPathComponent("etc/beeldzorg/beeldzorgd.yaml").path))

        // Text output: the same, for a technician reading it.
        try put("etc/beeldzorg/beeldzorgd.yaml", config)
        let text = try ctlWithoutTerminal(["factory-reset", "--yes", "--root", root.path], environment: ["NO_COLOR": "1"])
        #expect(text.status == 1)
        #expect(text.output.contains("installatie-notitie.txt") && text.output.contains("Factory reset incomplete"), "\(text.output)")
    }

    @Test func logsSaysSoWhenThereIsNoJournalctl() throws {
        let logs = try ctlWithoutTerminal(["logs", "--since", "1h"], environment: ["PATH": "/nonexistent", "NO_COLOR": "1"])
        #expect(logs.status == 1)
        #expect(logs.error.contains("journalctl is not installed"))
    }

    /// beeldzorgctl with standard input from /dev/null (never the terminal the tests run in).
    func ctlWithoutTerminal(_ arguments: [String], environment: [String: String]? = nil) throws -> (status: Int32, output: String, error: String) {
        let process = Process()
        process.executableURL = Binaries.ctl
        process.arguments = arguments
        if let environment { process.environment = environment }
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let output = out.fileHandleForReading.readDataToEndOfFile()
        let error = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: output, as: UTF8.self), String(decoding: error, as: UTF8.self))
    }
}
