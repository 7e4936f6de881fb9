import BeeldzorgConfig
import Testing

@Suite struct ScreenConfigurationTests {
    @Test func withoutASectionTheScreenIsFoundAutomatically() throws {
        let screen = try Configuration.parse(minimalConfiguration).screen
        #expect(screen == Configuration.Screen(device: "auto", dimAfterSeconds: 120,
                                               font: "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"))
    }

    @Test func everyKeyIsRead() throws {
        let text = minimalConfiguration + "\nscreen:\n  device: /dev/dri/card1\n  dim_after_seconds: 0\n  font: /opt/fonts/Atkinson.ttf\n"
        #expect(try Configuration.parse(text).screen
            == Configuration.Screen(device: "/dev/dri/card1", dimAfterSeconds: 0, font: "/opt/fonts/Atkinson.ttf"))
        #expect(try Configuration.parse(minimalConfiguration + "\nscreen:\n  device: offscreen\n").screen.device == "offscreen")
    }

    @Test func mistakesNameTheKeyAndLine() {
        #expect(throws: ConfigError(key: "screen.device", line: 11,
                                    message: "'hdmi' is not auto, offscreen, none or a device path (/dev/dri/card0, /dev/fb0)")) {
            try Configuration.parse(minimalConfiguration + "\nscreen:\n  device: hdmi\n")
        }
        #expect(throws: ConfigError.self) { try Configuration.parse(minimalConfiguration + "\nscreen:\n  dim_after_seconds: -5\n") }
        do {
            _ = try Configuration.parse(minimalConfiguration + "\nscreen:\n  dim_after_seconds: 99999999\n")
            Issue.record("out-of-range dim time accepted")
        } catch {
            #expect(error.key == "screen.dim_after_seconds" && error.line == 11)
        }
        #expect(throws: ConfigError(key: "screen.brightness", line: 11, message: "unknown key")) {
            try Configuration.parse(minimalConfiguration + "\nscreen:\n  brightness: 80\n")
        }
    }
}
