import BeeldzorgConfig
import Testing

/// `audio.echo_cancellation` switches the call's echo canceller (Media/EchoCanceller.swift).
@Suite struct EchoCancellationConfigurationTests {
    private static let base = minimalConfiguration + "\naudio:\n  echo_cancellation: VALUE"

    @Test(arguments: [("true", true), ("false", false)])
    func theSwitchIsRead(value: String, expected: Bool) throws {
        let config = try Configuration.parse(Self.base.replacingOccurrences(of: "VALUE", with: value))
        #expect(config.audio.echoCancellation == expected)
    }

    @Test func aValueThatIsNotABooleanIsRefusedWithItsLine() {
        do {
            _ = try Configuration.parse(Self.base.replacingOccurrences(of: "VALUE", with: "maybe"))
            Issue.record("echo_cancellation: maybe was accepted")
        } catch {
            #expect(error.key == "audio.echo_cancellation")
            #expect(error.line == 11)
            #expect(error.message.contains("true or false"))
        }
    }
}
