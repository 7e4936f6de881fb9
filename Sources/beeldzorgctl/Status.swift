import ArgumentParser
import BeeldzorgConfig
import Control
import Foundation

struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show the tablet's state at a glance: call, registration, devices, last call, store."
    )

    @OptionGroup var connection: ConnectionOptions

    @Option(name: .long, help: "The daemon's configuration file, for the checks made when it is not running.")
    var config: String = ProcessInfo.processInfo.environment["BEELDZORG_CONFIG"] ?? "/etc/beeldzorg/beeldzorgd.yaml"

    func run() throws {
        let response: ControlResponse
        do {
            response = try connection.send(ControlRequest(cmd: .status))
        } catch let code as ExitCode where code == ExitStatus.daemonNotRunning {
            if !connection.json { printOfflineChecks() }
            throw code
        }
        if connection.json {
            connection.printJSON(response)
            return
        }
        let report = try response.decodeResult(StatusReport.self)
        print(Self.render(report))
        if !report.faults.isEmpty { throw ExitStatus.problem }
    }

    /// Without the daemon: what can be known without opening a camera or microphone — the
    /// configuration, the store and the button. `doctor` tests the rest.
    private func printOfflineChecks() {
        guard let options = try? TechnicianOptions.parse(["--config", config, "--socket", connection.socket]) else { return }
        let doctor = Doctor(options: options)
        var checks: [DoctorCommand.Check] = []
        let configuration: Configuration?
        switch options.loadConfiguration() {
        case .success(let loaded):
            configuration = loaded
            checks.append(.init(name: "configuration", ok: true, detail: "\(config) loads", fix: nil))
        case .failure(let error):
            configuration = nil
            checks.append(.init(name: "configuration", ok: false, detail: error.description, fix: nil))
        }
        checks.append(doctor.storeCheck(configuration, daemon: .notRunning("")))
        checks.append(doctor.buttonCheck(configuration))
        print("What can be checked without it (`beeldzorgctl doctor` checks everything):")
        // The check lines only: doctor's "good to go" verdict does not apply without the daemon.
        let rendered = DoctorCommand.render(checks.map { var check = $0; check.fix = nil; return check })
        print(rendered.split(separator: "\n", omittingEmptySubsequences: false).prefix { !$0.isEmpty }.joined(separator: "\n"))
    }

    static func render(_ report: StatusReport) -> String {
        var lines: [String] = []
        let mode = report.daemon.demo ? " (demo)" : ""
        lines.append(Terminal.bold("Beeldzorg tablet") + " — beeldzorgd \(report.daemon.version), pid \(report.daemon.pid), up \(duration(report.daemon.uptimeSeconds))\(mode)")
        func row(_ label: String, _ value: String) {
            lines.append(label.padding(toLength: 14, withPad: " ", startingAt: 0) + value)
        }
        var call = report.call.phase
        if let peer = report.call.peer { call += " — \(peer)" }
        if report.call.callbackPending { call += " (callback request queued)" }
        row("Call", call)
        for (index, missed) in (report.call.missed ?? []).enumerated() {
            row(index == 0 ? "Missed calls" : "", "\(missed.name), \(missed.at.formatted(date: .abbreviated, time: .shortened)) (on the screen until the next call with them)")
        }
        row("Network", report.network ? Terminal.good("up") : Terminal.bad("down"))
        if report.registration.isEmpty {
            row("Registration", "none configured")
        }
        for (index, registration) in report.registration.enumerated() {
            let state = registration.state == "registered" ? Terminal.good(registration.state) : Terminal.bad(registration.state)
            let detail = registration.detail.map { " (\($0))" } ?? ""
            row(index == 0 ? "Registration" : "", "\(registration.proxy)  \(state)\(detail)")
        }
        for (index, device) in report.devices.enumerated() {
            let mark = device.present ? Terminal.good("✓") : Terminal.bad("✗")
            let detail = device.detail.map { " — \($0)" } ?? ""
            row(index == 0 ? "Devices" : "", "\(mark) \(device.name.padding(toLength: 11, withPad: " ", startingAt: 0)) \(device.source)\(detail)")
        }
        if let last = report.lastCall {
            let time = last.startedAt.formatted(date: .abbreviated, time: .shortened)
            let length = last.durationSeconds.map { ", \(duration($0))" } ?? ""
            row("Last call", "\(last.direction) \(last.peer), \(time), \(last.outcome)\(length)")
        } else {
            row("Last call", "none yet")
        }
        row("Store", (report.store.healthy ? Terminal.good("ok") : Terminal.bad("fault")) + " \(report.store.path)" + (report.store.detail.map { " — \($0)" } ?? ""))
        if let media = report.media {
            row("Media", "audio \(media.audioPacketsSent) sent / \(media.audioPacketsReceived) received, video \(media.videoFramesSent) sent / \(media.videoFramesDecoded) decoded, \(media.authenticationFailures) SRTP failures"
                + (media.heldByPost == true ? "; held by the post (nothing sent until it resumes)" : ""))
        }
        if report.faults.isEmpty {
            row("Faults", Terminal.good("none"))
        } else {
            for (index, fault) in report.faults.enumerated() {
                row(index == 0 ? "Faults" : "", Terminal.bad(fault))
            }
        }
        return lines.joined(separator: "\n")
    }

    static func duration(_ seconds: Int) -> String {
        if seconds < 60 { return "\(seconds) s" }
        if seconds < 3600 { return "\(seconds / 60) min \(seconds % 60) s" }
        return "\(seconds / 3600) h \((seconds % 3600) / 60) min"
    }
}

struct PressCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "press",
        abstract: "Press the tablet's button, exactly as the hardware would (short, or --long)."
    )

    @OptionGroup var connection: ConnectionOptions

    @Flag(name: .long, help: "A long press (hang up or cancel).")
    var long = false

    func run() throws {
        let response = try connection.send(ControlRequest(cmd: .press, kind: long ? "long" : "short"))
        if connection.json {
            connection.printJSON(response)
        } else {
            let call = try? response.decodeResult(StatusReport.Call.self)
            print("pressed (\(long ? "long" : "short")); call is now \(call?.phase ?? "?")")
        }
    }
}

struct DemoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Drive the built-in demo centrale (only when beeldzorgd runs with --demo).",
        subcommands: [CallIn.self]
    )

    struct CallIn: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "call-in",
            abstract: "Let the demo centrale call the tablet, as a post or a family member would."
        )

        @OptionGroup var connection: ConnectionOptions

        @Option(name: .long, help: "The caller's SIP address (one not on the contact list is rejected).")
        var from: String?

        func run() throws {
            let response = try connection.send(ControlRequest(cmd: .demoCallIn, from: from))
            if connection.json {
                connection.printJSON(response)
            } else {
                print("the demo centrale is calling the tablet\(from.map { " as \($0)" } ?? "")")
            }
        }
    }
}
