import BeeldzorgConfig
import Testing

/// `media.liveness_timeout_seconds`: how long nothing may come from the other side before the
/// call ends as "connection lost" (issue 15). Default 15 s, 5…120.
@Suite struct LivenessConfigurationTests {
    @Test func theDefaultIsFifteenSeconds() throws {
        #expect(try Configuration.parse(minimalConfiguration).media.livenessTimeoutSeconds == 15)
    }

    @Test func aValueIsRead() throws {
        let config = try Configuration.parse(minimalConfiguration + "\nmedia:\n  liveness_timeout_seconds: 30")
        #expect(config.media.livenessTimeoutSeconds == 30)
    }

    @Test(arguments: ["2", "121", "soon"])
    func aValueOutOfRangeIsRefusedWithItsKey(value: String) {
        do {
            _ = try Configuration.parse(minimalConfiguration + "\nmedia:\n  liveness_timeout_seconds: \(value)")
            Issue.record("liveness_timeout_seconds: \(value) was accepted")
        } catch {
            #expect(error.key == "media.liveness_timeout_seconds")
        }
    }

    @Test func anUnknownKeyInTheSectionIsRefused() {
        #expect(throws: ConfigError.self) {
            try Configuration.parse(minimalConfiguration + "\nmedia:\n  liveness_timout_seconds: 30")
        }
    }
}
