import BeeldzorgConfig
import Testing

/// `audio.mixer`, `.playback_mixer`, `.capture_mixer`, `.volume_floor`, `.volume_ceiling`,
/// `.volume`, `.capture_volume` (Daemon/VolumeService.swift).
@Suite struct VolumeConfigurationTests {
    @Test func defaultsAndTheMixerDerivedFromThePlaybackDevice() throws {
        let config = try Configuration.parse(minimalConfiguration)
        #expect(config.audio.playbackMixer == "Master" && config.audio.captureMixer == "Capture")
        #expect(config.audio.volumeFloor == 40 && config.audio.volumeCeiling == 100)
        #expect(config.audio.volume == 80 && config.audio.captureVolume == 80)
        #expect(config.audio.mixerDevice == "default")
        let card = try Configuration.parse(minimalConfiguration + "\naudio:\n  playback: plughw:1,0")
        #expect(card.audio.mixerDevice == "hw:1")
    }

    @Test func everyKeyIsRead() throws {
        let config = try Configuration.parse(minimalConfiguration + """

            audio:
              mixer: hw:2
              playback_mixer: Speaker
              capture_mixer: none
              volume_floor: 30
              volume_ceiling: 90
              volume: 70
              capture_volume: 65
            """)
        #expect(config.audio.mixerDevice == "hw:2")
        #expect(config.audio.playbackMixer == "Speaker" && config.audio.captureMixer == nil)
        #expect(config.audio.volumeFloor == 30 && config.audio.volumeCeiling == 90)
        #expect(config.audio.volume == 70 && config.audio.captureVolume == 65)
    }

    @Test func aCeilingBelowTheFloorOrAFloorOfZeroIsRefusedByName() {
        do {
            _ = try Configuration.parse(minimalConfiguration + "\naudio:\n  volume_floor: 60\n  volume_ceiling: 50")
            Issue.record("a ceiling below the floor was accepted")
        } catch {
            #expect(error.key == "audio.volume_ceiling")
        }
        do {
            // A floor of 0 would let a path leave the client without sound.
            _ = try Configuration.parse(minimalConfiguration + "\naudio:\n  volume_floor: 0")
            Issue.record("a floor of 0 was accepted")
        } catch {
            #expect(error.key == "audio.volume_floor")
        }
    }
}
