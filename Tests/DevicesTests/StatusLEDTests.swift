import Devices
import Foundation
import Testing

/// A directory laid out like /sys/class/leds with one LED in it.
private func fakeLEDClass(name: String, maxBrightness: String = "255\n") -> TempDir {
    let dir = TempDir()
    let led = dir.file(name)
    try! FileManager.default.createDirectory(atPath: led, withIntermediateDirectories: true)
    for (file, content) in [("brightness", "0\n"), ("max_brightness", maxBrightness),
                            ("trigger", "[none] timer heartbeat\n"), ("delay_on", "500\n"), ("delay_off", "500\n")] {
        _ = FileManager.default.createFile(atPath: led + "/" + file, contents: Data(content.utf8))
    }
    return dir
}

private func attribute(_ dir: TempDir, _ led: String, _ name: String) -> String {
    (try? String(contentsOfFile: dir.file(led) + "/" + name, encoding: .utf8)) ?? "<missing>"
}

@Suite("Status LED through the LED class")
struct StatusLEDTests {
    @Test func everyIndicatorHasItsOwnPattern() {
        let patterns = IndicatorState.allCases.map(LEDPattern.init)
        #expect(Set(patterns.map(\.description)).count == IndicatorState.allCases.count)
        #expect(LEDPattern(.idle) == .off)
        #expect(LEDPattern(.inCall) == .on)
        guard case .blink(let cOn, let cOff) = LEDPattern(.calling),
              case .blink(let rOn, let rOff) = LEDPattern(.ringing) else {
            Issue.record("calling and ringing must blink")
            return
        }
        #expect(rOn + rOff < cOn + cOff, "ringing blinks faster than calling")
        for state in [IndicatorState.fault, .unreachable] {
            guard case .blink = LEDPattern(state) else {
                Issue.record("\(state) must blink")
                continue
            }
        }
    }

    @Test func everyPatternIsWrittenAsTheTimerTriggersTwoDelays() {
        let dir = fakeLEDClass(name: "beeldzorg:green:button")
        defer { dir.cleanup() }
        let led = SysfsLED(name: "beeldzorg:green:button", classDirectory: dir.path)
        #expect(led.isPresent)

        led.show(.ringing)
        #expect(attribute(dir, led.name, "trigger") == "timer\n", "the trigger is selected once where it was not")
        #expect(attribute(dir, led.name, "delay_on") == "125\n")
        #expect(attribute(dir, led.name, "delay_off") == "125\n")

        led.show(.inCall)
        #expect(attribute(dir, led.name, "delay_off") == "0\n", "steady on: never off")
        #expect(attribute(dir, led.name, "delay_on") != "0\n")

        led.show(.fault)
        #expect(attribute(dir, led.name, "delay_on") == "100\n")
        #expect(attribute(dir, led.name, "delay_off") == "1900\n")

        led.show(.idle)
        #expect(attribute(dir, led.name, "delay_on") == "0\n", "off: never on")
        #expect(attribute(dir, led.name, "delay_off") != "0\n", "both 0 would mean a 1 Hz blink to the kernel")
        #expect(attribute(dir, led.name, "brightness") == "0\n", "brightness is never written: that removes the trigger")
    }

    /// As on the tablet: udev selected the trigger and gave the daemon's group the two delay
    /// attributes; `trigger` and `brightness` are not writable. Every pattern still shows.
    @Test func onlyTheTwoDelaysNeedToBeWritable() throws {
        let dir = fakeLEDClass(name: "status")
        defer { dir.cleanup() }
        let led = dir.file("status")
        _ = FileManager.default.createFile(atPath: led + "/trigger", contents: Data("none [timer] heartbeat\n".utf8))
        for name in ["trigger", "brightness", "max_brightness"] {
            try FileManager.default.setAttributes([.posixPermissions: 0o444], ofItemAtPath: led + "/" + name)
        }
        let light = SysfsLED(name: "status", classDirectory: dir.path)
        for state in IndicatorState.allCases {
            light.show(state)
            switch LEDPattern(state) {
            case .off: #expect(attribute(dir, "status", "delay_on") == "0\n")
            case .on: #expect(attribute(dir, "status", "delay_off") == "0\n")
            case .blink(let on, let off):
                #expect(attribute(dir, "status", "delay_on") == "\(on.components.seconds * 1000 + on.components.attoseconds / 1_000_000_000_000_000)\n")
                #expect(attribute(dir, "status", "delay_off") == "\(off.components.seconds * 1000 + off.components.attoseconds / 1_000_000_000_000_000)\n")
            }
        }
        // (Tests run as root, whom the modes do not stop: what shows it is that neither was written.)
        #expect(attribute(dir, "status", "trigger") == "none [timer] heartbeat\n")
        #expect(attribute(dir, "status", "brightness") == "0\n")
    }

    @Test func repeatedPatternIsNotRewritten() {
        let dir = fakeLEDClass(name: "status")
        defer { dir.cleanup() }
        let led = SysfsLED(name: "status", classDirectory: dir.path)
        led.show(.inCall)
        // Someone (a technician's echo) changes the LED; the same pattern again is a no-op,
        // a different one is applied.
        _ = FileManager.default.createFile(atPath: dir.file("status") + "/delay_off", contents: Data("7\n".utf8))
        led.show(.inCall)
        #expect(attribute(dir, "status", "delay_off") == "7\n")
        led.show(.idle)
        #expect(attribute(dir, "status", "delay_on") == "0\n")
    }

    @Test func missingLEDIsNotAnError() {
        let dir = TempDir()
        defer { dir.cleanup() }
        let led = SysfsLED(name: "absent", classDirectory: dir.path)
        #expect(!led.isPresent)
        for state in IndicatorState.allCases { led.show(state) }
        #expect(!FileManager.default.fileExists(atPath: dir.file("absent")), "nothing is created")
    }

    @Test func recordingLightKeepsTheSequence() {
        let light = RecordingLight()
        light.show(.calling)
        light.show(.inCall)
        #expect(light.patterns == [LEDPattern(.calling), .on])
    }
}
