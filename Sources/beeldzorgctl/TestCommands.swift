import ArgumentParser
import BeeldzorgConfig
import Control
import Devices
import Foundation

/// `beeldzorgctl test …`: one device (or a whole call) at a time, with a verdict.
struct TestCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "test",
        abstract: "Test the button, camera, microphone, speaker, or a call to the centrale.",
        discussion: """
            While beeldzorgd runs, the camera, microphone and speaker are tested BY the daemon \
            (it owns them), and never during a call. When it is not running, the devices are \
            opened directly, as configured (--config).

            Exit status: 0 passed; 1 the device failed the test; 3 beeldzorgd is not running \
            (test call); 4 no permission; 5 refused because a call is in progress or \
            beeldzorgd holds the device; 64 wrong usage.
            """,
        subcommands: [Button.self, Camera.self, Microphone.self, Speaker.self, Call.self]
    )

    /// `{"ok":…,"via":"daemon"|"direct","verdict":"…","result":{…}}`
    struct Answer<Result: Encodable>: Encodable {
        var ok: Bool
        var via: String
        var verdict: String
        var result: Result
    }

    /// Who runs the test: the daemon when it runs, otherwise this process.
    enum Route {
        case daemon(ControlClient, StatusReport)
        case direct(Configuration)
    }

    static func route(_ options: TechnicianOptions) throws -> Route {
        let configuration = try? options.loadConfiguration().get()
        let socket = options.socketPath(configuration)
        switch DaemonState.query(socket: socket) {
        case .running(let report):
            return .daemon(ControlClient(socketPath: socket, timeout: .seconds(15)), report)
        case .noPermission(let message):
            options.report(error: message, code: "permission-denied")
            throw ExitStatus.permissionDenied
        case .broken(let message):
            options.report(error: message, code: "io")
            throw ExitStatus.problem
        case .notRunning:
            return .direct(try loadedConfiguration(options))
        }
    }

    static func loadedConfiguration(_ options: TechnicianOptions) throws -> Configuration {
        switch options.loadConfiguration() {
        case .success(let configuration):
            return configuration
        case .failure(let error):
            options.report(error: "beeldzorgd is not running and its configuration is unusable: \(error)", code: "config")
            throw ExitStatus.problem
        }
    }

    /// Refuses while the client is in a call (or one is being set up).
    static func refuseDuringCall(_ report: StatusReport, _ options: TechnicianOptions) throws {
        guard report.call.phase == "idle" else {
            options.report(error: "a call is in progress (\(report.call.phase)); try again when the tablet is idle", code: "busy")
            throw TechnicianExit.busy
        }
    }

    /// Sends a test request to the daemon; a refusal becomes exit 5 (busy) or 1.
    static func ask<T: Decodable>(_ client: ControlClient, _ request: ControlRequest, _ options: TechnicianOptions) throws -> T {
        let response: ControlResponse
        do {
            response = try client.send(request)
        } catch {
            options.report(error: "\(error)", code: "io")
            throw ExitStatus.problem
        }
        guard response.ok else {
            let error = response.error ?? ControlError(.internal, "unknown error")
            options.report(error: error.message, code: error.code.rawValue)
            throw error.message.contains("call is in progress") ? TechnicianExit.busy : ExitStatus.problem
        }
        return try response.decodeResult(T.self)
    }

    static func finish<T: Encodable>(_ options: TechnicianOptions, ok: Bool, via: String, verdict: String, result: T, text: [String]) throws {
        if options.json {
            options.printJSON(Answer(ok: ok, via: via, verdict: verdict, result: result))
        } else {
            for line in text { print(line) }
            print("\(mark(ok)) \(verdict)")
        }
        if !ok { throw ExitStatus.problem }
    }

    // MARK: - camera

    struct Camera: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "camera",
            abstract: "Grab frames for a moment; report size, format and the measured frame rate.",
            discussion: "Exit status: 0 frames arrived at a usable rate; 1 no frames or too slow; 5 a call is in progress."
        )

        @OptionGroup var options: TechnicianOptions

        @Option(name: .long, help: ArgumentHelp("Save the last frame as a PPM image here.", valueName: "file.ppm"))
        var save: String?

        @Option(name: .long, help: "How long to grab frames (0.2 to 4 seconds).")
        var seconds: Double = 2

        func validate() throws {
            guard (0.2...4).contains(seconds) else { throw ValidationError("--seconds must be between 0.2 and 4") }
        }

        func run() throws {
            var result: LocalDevices.CameraResult
            var frame: VideoFrame?
            let via: String
            switch try TestCommand.route(options) {
            case .daemon(let client, let report):
                try TestCommand.refuseDuringCall(report, options)
                result = try TestCommand.ask(client, ControlRequest(cmd: .testCamera, seconds: seconds, includeFrame: save != nil), options)
                if save != nil, let encoded = result.frame, let planes = Data(base64Encoded: encoded),
                   planes.count == result.width * result.height * 3 / 2 {
                    frame = VideoFrame(width: result.width, height: result.height, planes: [UInt8](planes), timestamp: .zero)
                }
                result.frame = nil
                via = "daemon"
            case .direct(let configuration):
                do {
                    (result, frame) = try LocalDevices.grab(configuration, seconds: seconds, keepFrame: save != nil)
                } catch {
                    options.report(error: "\(error)", code: "device")
                    throw ExitStatus.problem
                }
                via = "direct"
            }
            var text = ["camera \(result.device): \(result.width)×\(result.height) \(result.pixelFormat), \(String(format: "%.1f", result.measuredFramesPerSecond)) frames/s measured over \(result.seconds) s (\(result.frames) frames; asked for \(result.requestedFramesPerSecond)) — tested \(via == "daemon" ? "by beeldzorgd" : "directly")"]
            if let save {
                guard let frame else {
                    options.report(error: "no frame to save", code: "device")
                    throw ExitStatus.problem
                }
                do {
                    try PPMImage.encode(frame).write(to: URL(fileURLWithPath: save))
                    text.append("saved one frame as \(save)")
                } catch {
                    options.report(error: "cannot write \(save): \(error.localizedDescription)", code: "io")
                    throw ExitStatus.problem
                }
            }
            let fastEnough = result.measuredFramesPerSecond >= Double(result.requestedFramesPerSecond) / 2
            let verdict = fastEnough
                ? "the camera delivers pictures"
                : "the camera is too slow (\(String(format: "%.1f", result.measuredFramesPerSecond)) of \(result.requestedFramesPerSecond) frames/s): check lighting, the cable or USB bandwidth"
            try TestCommand.finish(options, ok: fastEnough, via: via, verdict: verdict, result: result, text: text)
        }
    }

    // MARK: - microphone

    struct Microphone: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "mic",
            abstract: "Record for 3 seconds and report the RMS and peak level in dBFS.",
            discussion: """
                0 dBFS is the loudest a sample can be; normal speech at arm's length is around \
                −30 to −15 dBFS RMS. Speak or clap while it records.

                Exit status: 0 sound was heard; 1 silence (below −60 dBFS peak), clipping, or the \
                device failed; 5 a call is in progress.
                """
        )

        @OptionGroup var options: TechnicianOptions

        @Option(name: .long, help: "How long to record (0.2 to 4 seconds).")
        var seconds: Double = 3

        func validate() throws {
            guard (0.2...4).contains(seconds) else { throw ValidationError("--seconds must be between 0.2 and 4") }
        }

        func run() throws {
            let result: LocalDevices.MicrophoneResult
            let via: String
            switch try TestCommand.route(options) {
            case .daemon(let client, let report):
                try TestCommand.refuseDuringCall(report, options)
                result = try TestCommand.ask(client, ControlRequest(cmd: .testMicrophone, seconds: seconds), options)
                via = "daemon"
            case .direct(let configuration):
                if !options.json { print("recording \(seconds) s from \(configuration.audio.capture)…") }
                do {
                    result = try LocalDevices.record(configuration.audio.capture, seconds: seconds)
                } catch {
                    options.report(error: "\(error)", code: "device")
                    throw ExitStatus.problem
                }
                via = "direct"
            }
            let silent = result.peakDBFS < -60
            let clipping = result.clippedSamples > result.samples / 1000
            let verdict = silent
                ? "nothing heard: check that the microphone is connected and not muted (alsamixer)"
                : clipping ? "too loud: \(result.clippedSamples) samples at full scale; lower the capture gain (alsamixer)"
                : "the microphone hears sound"
            let text = ["microphone \(result.device): RMS \(String(format: "%.1f", result.rmsDBFS)) dBFS, peak \(String(format: "%.1f", result.peakDBFS)) dBFS over \(result.seconds) s at \(result.sampleRate) Hz — tested \(via == "daemon" ? "by beeldzorgd" : "directly")"]
            try TestCommand.finish(options, ok: !silent && !clipping, via: via, verdict: verdict, result: result, text: text)
        }
    }

    // MARK: - speaker

    struct Speaker: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "speaker",
            abstract: "Play a spoken prompt (\"U bent verbonden.\") on the tablet's speaker.",
            discussion: "Listen for it. Exit status: 0 it was played; 1 the speaker or prompt failed; 5 a call is in progress."
        )

        @OptionGroup var options: TechnicianOptions

        struct Result: Codable {
            var device: String
            var prompt: String
        }

        func run() async throws {
            let result: Result
            let via: String
            switch try TestCommand.route(options) {
            case .daemon(let client, let report):
                try TestCommand.refuseDuringCall(report, options)
                result = try TestCommand.ask(client, ControlRequest(cmd: .testSpeaker), options)
                via = "daemon"
            case .direct(let configuration):
                let key = PromptCatalog.Key.connected
                do {
                    let library = try PromptLibrary(promptsDirectory: configuration.promptsDirectory, language: configuration.language)
                    let clip = try library.clip(key)
                    let player = PromptPlayer(sink: LocalDevices.speaker(configuration.audio.playback))
                    _ = try await player.play(clip)
                } catch {
                    options.report(error: "the prompt could not be played on \(configuration.audio.playback): \(error)", code: "device")
                    throw ExitStatus.problem
                }
                result = Result(device: configuration.audio.playback, prompt: key)
                via = "direct"
            }
            try TestCommand.finish(options, ok: true, via: via, verdict: "prompt '\(result.prompt)' played on \(result.device): did you hear it?",
                                   result: result, text: [])
        }
    }

    // MARK: - button

    struct Button: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "button",
            abstract: "Wait for a press of the button and report it as short or long.",
            discussion: """
                While beeldzorgd runs, it hands the next press to this test instead of calling \
                the centrale (only when the tablet is idle, and only until --timeout). When it \
                does not run, the button is read directly.

                Exit status: 0 a press was seen; 1 no press within --timeout or the button is \
                missing; 5 a call is in progress.
                """
        )

        @OptionGroup var options: TechnicianOptions

        @Option(name: .long, help: "Seconds to wait for a press.")
        var timeout: Double = 15

        struct Result: Codable {
            var device: String
            var event: String?
            var waitedSeconds: Double
        }

        func run() async throws {
            let configuration: Configuration
            switch try TestCommand.route(options) {
            case .daemon(let routed, let report):
                try TestCommand.refuseDuringCall(report, options)
                if !options.json { print("press the button (short or long) within \(Int(timeout)) s…") }
                let client = ControlClient(socketPath: routed.socketPath, timeout: .seconds(Int64(timeout) + 5))
                let answer: DaemonResult = try TestCommand.ask(client, ControlRequest(cmd: .testButton, seconds: timeout), options)
                let event = answer.event.flatMap(ButtonEvent.init(rawValue:))
                let result = Result(device: "beeldzorgd", event: answer.event, waitedSeconds: answer.waitedSeconds)
                try TestCommand.finish(options, ok: event == .shortPress || event == .longPress, via: "daemon",
                                       verdict: Self.verdict(event, waited: answer.waitedSeconds, timeout: timeout), result: result, text: [])
                return
            case .direct(let loaded):
                configuration = loaded
            }
            let button = configuration.button
            let timing = ButtonTiming(debounce: .milliseconds(button.debounceMilliseconds),
                                      longPress: .milliseconds(button.longPressMilliseconds))
            let source: any ButtonSource
            if button.device == "stdin" {
                source = LineButtonSource.standardInput(keyCode: UInt16(button.keyCode), timing: timing)
            } else if button.device.hasPrefix("fifo:") {
                do {
                    source = try LineButtonSource.fifo(path: String(button.device.dropFirst(5)), keyCode: UInt16(button.keyCode), timing: timing)
                } catch {
                    options.report(error: "button \(button.device) unusable: \(error)", code: "device")
                    throw ExitStatus.problem
                }
            } else {
                guard Doctor.isCharacterDevice(button.device) else {
                    options.report(error: "no button at \(button.device): check its cable and `ls -l /dev/beeldzorg/`", code: "device")
                    throw ExitStatus.problem
                }
                source = EvdevButton(configuration: EvdevButtonConfiguration(
                    devicePath: button.device, keyCode: UInt16(button.keyCode), timing: timing))
            }
            if !options.json { print("press the button (short or long) within \(Int(timeout)) s…") }
            let start = ContinuousClock.now
            let event = await Self.firstPress(source, timeout: .milliseconds(Int(timeout * 1000)))
            source.stop()
            let waited = (ContinuousClock.now - start).seconds
            let result = Result(device: button.device, event: event?.rawValue, waitedSeconds: (waited * 10).rounded() / 10)
            let ok = event == .shortPress || event == .longPress
            try TestCommand.finish(options, ok: ok, via: "direct", verdict: Self.verdict(event, waited: waited, timeout: timeout),
                                   result: result, text: [])
        }

        /// What beeldzorgd's `test-button` answers.
        struct DaemonResult: Decodable {
            var event: String?
            var waitedSeconds: Double
        }

        static func verdict(_ event: ButtonEvent?, waited: Double, timeout: Double) -> String {
            switch event {
            case .shortPress: "short press seen after \(String(format: "%.1f", waited)) s"
            case .longPress: "long press seen after \(String(format: "%.1f", waited)) s"
            case .stuck: "the button reports as stuck (held down): check that it is not jammed"
            case .released, nil: "no press within \(Int(timeout)) s: check the button's cable and `ls -l /dev/beeldzorg/button`"
            }
        }

        static func firstPress(_ source: any ButtonSource, timeout: Duration) async -> ButtonEvent? {
            let events = source.events()
            return await withTaskGroup(of: ButtonEvent?.self) { group in
                group.addTask {
                    for await event in events where event != .released { return event }
                    return nil
                }
                group.addTask {
                    try? await Task.sleep(for: timeout)
                    return nil
                }
                let first = await group.next() ?? nil
                source.stop()
                group.cancelAll()
                return first
            }
        }
    }

    // MARK: - call

    struct Call: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "call",
            abstract: "Call the centrale through beeldzorgd, report the set-up time and media, hang up.",
            discussion: """
                Presses the button over the control socket, exactly as the client would: the \
                call goes through the normal call flow and appears in `beeldzorgctl calls`. Tell \
                the centrale before you use this on a live tablet: a post will ring. Set-up time \
                is from the press to the answer (measured here, within 50 ms). With an echoing \
                centrale (the demo), received versus sent packets shows loss.

                Exit status: 0 the centrale answered; 1 it did not; 3 beeldzorgd is not running; \
                5 a call is already in progress.
                """
        )

        @OptionGroup var options: TechnicianOptions

        @Option(name: .long, help: "Seconds to wait for an answer.")
        var timeout: Double = 40

        @Option(name: .long, help: "Seconds to stay in the call before hanging up, to measure media.")
        var hold: Double = 3

        struct Result: Codable {
            var answered: Bool
            var setupSeconds: Double?
            var reachedPhase: String
            var peer: String?
            var heldSeconds: Double
            var media: StatusReport.Media?
            /// 1 − received/sent; meaningful only with an echoing centrale.
            var echoLossPercent: Double?
        }

        func run() async throws {
            let configuration = try? options.loadConfiguration().get()
            let socket = options.socketPath(configuration)
            let client = ControlClient(socketPath: socket, timeout: .seconds(5))
            let report: StatusReport
            switch DaemonState.query(socket: socket) {
            case .running(let running): report = running
            case .notRunning(let message):
                options.report(error: message + " — a test call needs it: `systemctl start beeldzorgd`", code: "daemon-not-running")
                throw ExitStatus.daemonNotRunning
            case .noPermission(let message):
                options.report(error: message, code: "permission-denied")
                throw ExitStatus.permissionDenied
            case .broken(let message):
                options.report(error: message, code: "io")
                throw ExitStatus.problem
            }
            try TestCommand.refuseDuringCall(report, options)
            if !options.json { print("calling the centrale…") }

            let start = ContinuousClock.now
            let _: StatusReport.Call = try TestCommand.ask(client, ControlRequest(cmd: .press, kind: "short"), options)
            var phase = "callingCentrale"
            var peer: String?
            var answeredAfter: Duration?
            // The call flow passes through callingCentrale/ringingOut; idle, unreachable or
            // fault before inCall means nobody answered.
            while ContinuousClock.now - start < .milliseconds(Int(timeout * 1000)) {
                let status = try Self.status(client)
                phase = status.call.phase
                peer = status.call.peer
                if phase == "inCall" {
                    answeredAfter = ContinuousClock.now - start
                    break
                }
                if ["idle", "unreachable", "fault"].contains(phase) { break }
                try await Task.sleep(for: .milliseconds(50))
            }

            var media: StatusReport.Media?
            var held = 0.0
            if let answeredAfter {
                if !options.json { print("answered after \(String(format: "%.2f", answeredAfter.seconds)) s; staying \(hold) s in the call…") }
                try await Task.sleep(for: .milliseconds(Int(hold * 1000)))
                held = hold
                media = try Self.status(client).media
            }
            // Hang up (or cancel a call still ringing) like the client would.
            let stillBusy = try Self.status(client).call.phase
            if stillBusy != "idle" {
                let _: StatusReport.Call = try TestCommand.ask(client, ControlRequest(cmd: .press, kind: "long"), options)
                // Back to idle before we report, so a following test or doctor finds it free.
                let hangUp = ContinuousClock.now
                while try Self.status(client).call.phase != "idle", ContinuousClock.now - hangUp < .seconds(10) {
                    try await Task.sleep(for: .milliseconds(50))
                }
            }

            var loss: Double?
            if let media, media.audioPacketsSent > 0 {
                loss = max(0, 100 * (1 - Double(media.audioPacketsReceived) / Double(media.audioPacketsSent)))
            }
            let result = Result(answered: answeredAfter != nil, setupSeconds: answeredAfter.map { ($0.seconds * 100).rounded() / 100 },
                                reachedPhase: phase, peer: peer, heldSeconds: held, media: media, echoLossPercent: loss)
            var text: [String] = []
            if let media {
                text.append("media: audio \(media.audioPacketsSent) sent / \(media.audioPacketsReceived) received, video \(media.videoFramesSent) sent / \(media.videoFramesDecoded) decoded, \(media.authenticationFailures) SRTP failures")
                if let loss { text.append("echo loss (only meaningful with an echoing centrale): \(String(format: "%.1f", loss)) %") }
                text.append("jitter: not reported by this beeldzorgd")
            }
            let verdict = answeredAfter.map { "the centrale answered (\(peer ?? "a post")) after \(String(format: "%.2f", $0.seconds)) s; hung up" }
                ?? "the centrale did not answer within \(Int(timeout)) s (call state: \(phase)); see `beeldzorgctl logs --since 5m`"
            try TestCommand.finish(options, ok: answeredAfter != nil, via: "daemon", verdict: verdict, result: result, text: text)
        }

        static func status(_ client: ControlClient) throws -> StatusReport {
            try client.send(ControlRequest(cmd: .status)).decodeResult(StatusReport.self)
        }
    }
}
