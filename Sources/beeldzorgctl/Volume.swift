import ArgumentParser
import Control
import Foundation

/// `beeldzorgctl volume [LEVEL] [--capture LEVEL]`: the technician's view of the levels, and
/// a way to set them. Through the daemon, which owns the levels, keeps them in its store and
/// holds them within the configured floor and ceiling (a level outside is held at the limit).
struct VolumeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "volume",
        abstract: "Show the speaker and microphone levels, or set them (percent, within the configured limits).",
        discussion: """
            Without LEVEL shows both levels, what the mixer reads now and the limits. With LEVEL \
            sets the speaker level (prompts, ringing and calls alike); --capture sets the \
            microphone's. A level below audio.volume_floor is raised to it, one above \
            audio.volume_ceiling lowered to it. The level stands until the organisation's \
            provisioning sets a new one.
            """
    )

    @OptionGroup var connection: ConnectionOptions

    @Argument(help: "Speaker level to set, 0…100 percent.")
    var level: Int?

    @Option(name: .long, help: "Microphone level to set, 0…100 percent.")
    var capture: Int?

    func validate() throws {
        for value in [level, capture].compactMap({ $0 }) where !(0...100).contains(value) {
            throw ValidationError("a level is 0…100 percent, got \(value)")
        }
    }

    func run() throws {
        let response = try connection.client.send(ControlRequest(cmd: .volume, level: level, captureLevel: capture))
        guard response.ok else {
            let error = response.error ?? ControlError(.internal, "unknown error")
            connection.report(error: error.message, code: error.code.rawValue)
            throw ExitStatus.problem
        }
        let report = try response.decodeResult(VolumeReport.self)
        if connection.json {
            print(String(decoding: try ControlCoding.encoder.encode(report), as: UTF8.self))
        } else {
            print(Self.text(report, asked: (level, capture)), terminator: "")
        }
        if report.problem != nil { throw ExitStatus.problem }
    }

    static func text(_ report: VolumeReport, asked: (playback: Int?, capture: Int?)) -> String {
        func line(_ name: String, _ kept: Int, _ read: Int?, _ asked: Int?) -> String {
            var text = "\(name): \(kept)%"
            if let read, read != kept { text += " (mixer reads \(read)%)" } else if read == nil { text += " (mixer not read)" }
            if let asked, asked != kept { text += " — asked \(asked)%, held at the \(asked < kept ? "floor" : "ceiling")" }
            return text + "\n"
        }
        var text = line("speaker", report.playback, report.mixerPlayback, asked.playback)
        text += line("microphone", report.capture, report.mixerCapture, asked.capture)
        text += "limits: \(report.floor)…\(report.ceiling)% (set by \(report.source))\n"
        if let problem = report.problem { text += "problem: \(problem)\n" }
        return text
    }
}
