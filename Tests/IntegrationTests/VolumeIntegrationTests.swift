import Control
import Foundation
import TestSupport
import Testing

/// The built beeldzorgd owning the levels of a real mixer (a private PulseAudio server's,
/// through alsa-lib's `pulse` control plugin): set at start from the configuration and
/// unmuted, set by `beeldzorgctl volume` within the limits, set again after someone muted it,
/// and set from the organisation's provisioning document. Every level is read back by amixer.
@Suite("Volume through the daemon", .serialized)
struct VolumeIntegrationTests {
    static func level(_ pulse: PulseAudioServer, _ element: String) -> (percent: Int, on: Bool)? {
        guard let output = try? pulse.amixer(["sget", element]),
              let line = output.split(separator: "\n").first(where: { $0.contains("Front Left:") }),
              let open = line.firstIndex(of: "["), let close = line[open...].firstIndex(of: "%"),
              let percent = Int(line[line.index(after: open)..<close]) else { return nil }
        return (percent, line.contains("[on]"))
    }

    @Test func theDaemonKeepsTheLevelsWithinTheLimitsAndUnmuted() async throws {
        let pulse = try PulseAudioServer()
        defer { pulse.stop() }
        let server = try ProvisioningIntegrationTests.OrganisationServer()
        defer { server.stop() }
        // Found muted and nearly silent.
        _ = try pulse.amixer(["-q", "sset", "Master", "5%", "mute"])
        _ = try pulse.amixer(["-q", "sset", "Capture", "5%", "nocap"])

        let daemon = try DaemonUnderTest(extraConfig: """
            provisioning:
              url: https://127.0.0.1:\(server.port)/api/v1/tablets/t1/config
              token_file: \(server.tokenFile)
              ca_file: \(server.caFile)
              interval_minutes: 60
            """, audioConfig: """
              mixer: pulse
              playback_mixer: Master
              capture_mixer: Capture
              volume_floor: 40
              volume_ceiling: 90
              volume: 75
              capture_volume: 60
            """)
        daemon.environment = ["PULSE_SERVER": pulse.server]
        try daemon.start()
        try await daemon.waitUntilReady()

        try await daemon.waitFor("the configured levels, unmuted", timeout: .seconds(15)) {
            Self.level(pulse, "Master").map { $0 == (75, true) } == true
                && Self.level(pulse, "Capture").map { $0 == (60, true) } == true
        }

        // The technician: below the floor is held at the floor.
        let low = try runCtl(["volume", "10"], socket: daemon.socketPath)
        #expect(low.status == 0, "\(low.error)")
        #expect(low.output.contains("speaker: 40%"), "\(low.output)")
        #expect(low.output.contains("held at the floor"), "\(low.output)")
        #expect(Self.level(pulse, "Master")?.percent == 40)
        let shown = try runCtl(["volume", "--json"], socket: daemon.socketPath)
        let report = try ControlCoding.decoder.decode(VolumeReport.self, from: Data(shown.output.utf8))
        #expect(report.playback == 40 && report.capture == 60 && report.mixerPlayback == 40 && report.mixerCapture == 60)
        #expect(report.floor == 40 && report.ceiling == 90 && report.source == "technician")
        let bad = try runCtl(["volume", "150"], socket: daemon.socketPath)
        #expect(bad.status != 0)
        #expect(Self.level(pulse, "Master")?.percent == 40, "a refused level changes nothing")

        // Someone mutes it behind the daemon's back: it is set again.
        _ = try pulse.amixer(["-q", "sset", "Master", "mute"])
        try await daemon.waitFor("the speaker unmuted again", timeout: .seconds(25)) {
            Self.level(pulse, "Master").map { $0 == (40, true) } == true
        }

        // The organisation sets this client's levels; the ceiling holds.
        try """
            {"schemaVersion": 1, "contacts": [], "settings": {"volume": "95", "capture_volume": "55"}}
            """.write(toFile: server.directory + "/doc.json", atomically: true, encoding: .utf8)
        let sync = try runCtl(["provision", "sync"], socket: daemon.socketPath)
        #expect(sync.status == 0, "\(sync.error)")
        try await daemon.waitFor("the provisioned levels", timeout: .seconds(25)) {
            Self.level(pulse, "Master").map { $0 == (90, true) } == true
                && Self.level(pulse, "Capture").map { $0 == (55, true) } == true
        }

        // Kept across a restart: the mixer found at 5 % again is set back to them.
        #expect(await daemon.stop() == 0)
        _ = try pulse.amixer(["-q", "sset", "Master", "5%", "mute"])
        try daemon.start()
        try await daemon.waitUntilReady()
        try await daemon.waitFor("the kept levels after a restart", timeout: .seconds(15)) {
            Self.level(pulse, "Master").map { $0 == (90, true) } == true
        }
        #expect(await daemon.stop() == 0)
    }
}
