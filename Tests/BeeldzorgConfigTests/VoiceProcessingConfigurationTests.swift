import BeeldzorgConfig
import Testing

/// `media.voice.*` switches gain control, noise suppression and the high-pass filter
/// (Media/EchoCanceller.swift, `VoiceProcessing`); each is on unless switched off.
@Suite struct VoiceProcessingConfigurationTests {
    @Test func allOnByDefault() throws {
        let config = try Configuration.parse(minimalConfiguration)
        #expect(config.media.voice == Configuration.Voice(gainControl: true, noiseSuppression: true, highPassFilter: true))
        let withSection = try Configuration.parse(minimalConfiguration + "\nmedia:\n  voice:\n    agc: true")
        #expect(withSection.media.voice == Configuration.Voice())
    }

    @Test func eachSwitchIsReadOnItsOwn() throws {
        let config = try Configuration.parse(minimalConfiguration
            + "\nmedia:\n  voice:\n    agc: false\n    noise_suppression: true\n    high_pass_filter: false")
        #expect(config.media.voice == Configuration.Voice(gainControl: false, noiseSuppression: true, highPassFilter: false))
        let noNoise = try Configuration.parse(minimalConfiguration + "\nmedia:\n  voice:\n    noise_suppression: false")
        #expect(noNoise.media.voice == Configuration.Voice(gainControl: true, noiseSuppression: false, highPassFilter: true))
    }

    @Test func aBadValueOrAnUnknownKeyIsRefusedByName() {
        do {
            _ = try Configuration.parse(minimalConfiguration + "\nmedia:\n  voice:\n    agc: loud")
            Issue.record("agc: loud was accepted")
        } catch {
            #expect(error.key == "media.voice.agc")
            #expect(error.message.contains("true or false"))
        }
        do {
            _ = try Configuration.parse(minimalConfiguration + "\nmedia:\n  voice:\n    echo: false")
            Issue.record("an unknown key was accepted")
        } catch {
            #expect(error.key == "media.voice.echo")
        }
    }
}
