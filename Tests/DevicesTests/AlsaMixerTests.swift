// The ALSA simple mixer against a real control: PulseAudio's, through alsa-lib's `pulse`
// control plugin (this host has no sound card). Every level is read back by amixer.
import Devices
import Foundation
import Testing
import TestSupport

@Suite(.serialized) struct AlsaMixerTests {
    /// "Master [40%] [on]" → (40, true), from amixer's `sget` output.
    static func amixerLevel(_ output: String) -> (percent: Int, on: Bool)? {
        guard let line = output.split(separator: "\n").first(where: { $0.contains("Front Left:") }),
              let open = line.firstIndex(of: "["), let close = line[open...].firstIndex(of: "%"),
              let percent = Int(line[line.index(after: open)..<close]) else { return nil }
        return (percent, line.contains("[on]"))
    }

    /// The tablet found muted and nearly silent (someone turned it down): the daemon's levels
    /// go on within the limits, the floor lifts a level below it, and both switches are on.
    @Test func levelsAreSetWithinTheLimitsAndTheSwitchesTurnedOn() throws {
        let pulse = try PulseAudioServer()
        defer { pulse.stop() }
        _ = try pulse.amixer(["-q", "sset", "Master", "5%", "mute"])
        _ = try pulse.amixer(["-q", "sset", "Capture", "5%", "nocap"])
        #expect(Self.amixerLevel(try pulse.amixer(["sget", "Master"]))?.on == false)
        let mixerBefore = AlsaMixer(device: "beeldzorg", playbackElement: "Master", captureElement: "Capture",
                                    configurationText: pulse.alsaConfiguration(name: "beeldzorg"))
        #expect(try mixerBefore.levels() == MixerLevels(playback: 0, capture: 0), "muted elements read as 0")

        let mixer = AlsaMixer(device: "beeldzorg", playbackElement: "Master", captureElement: "Capture",
                              configurationText: pulse.alsaConfiguration(name: "beeldzorg"))
        let limits = VolumeLimits(floor: 40, ceiling: 90)
        try mixer.apply(limits.clamp(MixerLevels(playback: 10, capture: 70)))

        let master = Self.amixerLevel(try pulse.amixer(["sget", "Master"]))
        let capture = Self.amixerLevel(try pulse.amixer(["sget", "Capture"]))
        #expect(master?.percent == 40, "10 % is raised to the floor of 40 %")
        #expect(master?.on == true, "the playback switch is turned on")
        #expect(capture?.percent == 70)
        #expect(capture?.on == true, "the capture switch is turned on")
        #expect(try mixer.levels() == MixerLevels(playback: 40, capture: 70))

        try mixer.apply(limits.clamp(MixerLevels(playback: 100, capture: nil)))
        #expect(Self.amixerLevel(try pulse.amixer(["sget", "Master"]))?.percent == 90, "100 % is held at the ceiling")
        #expect(Self.amixerLevel(try pulse.amixer(["sget", "Capture"]))?.percent == 70, "capture left alone")
    }

    @Test func aMissingElementOrDeviceIsADeviceErrorNotACrash() throws {
        let pulse = try PulseAudioServer()
        defer { pulse.stop() }
        let wrongElement = AlsaMixer(device: "beeldzorg", playbackElement: "Speaker", captureElement: nil,
                                     configurationText: pulse.alsaConfiguration(name: "beeldzorg"))
        #expect(throws: DeviceError.self) { try wrongElement.apply(MixerLevels(playback: 50)) }
        let wrongDevice = AlsaMixer(device: "nothing-here", playbackElement: "Master", captureElement: nil,
                                    configurationText: pulse.alsaConfiguration(name: "beeldzorg"))
        #expect(throws: DeviceError.self) { try wrongDevice.levels() }
    }

    @Test func limitsClamp() {
        let limits = VolumeLimits(floor: 30, ceiling: 80)
        #expect(limits.clamp(0) == 30)
        #expect(limits.clamp(55) == 55)
        #expect(limits.clamp(120) == 80)
        #expect(VolumeLimits(floor: 50, ceiling: 20).ceiling == 50)
    }
}
