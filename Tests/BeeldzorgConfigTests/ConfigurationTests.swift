import BeeldzorgConfig
import Foundation
import Testing

private func packageRoot() -> URL {
    URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
}

@Suite struct ConfigurationTests {
    @Test func theShippedExampleLoadsWithItsStatedValues() throws {
        let path = packageRoot().appendingPathComponent("config/beeldzorgd.example.yaml").path
        let config = try Configuration.load(path: path)
        #expect(config.transport == .tls)
        #expect(config.centrale.policy == .ringAll)
        #expect(config.centrale.posts.map(\.id) == ["post-utrecht-1", "post-utrecht-2", "post-zwolle-1"])
        #expect(config.edgeProxies.count == 2)
        #expect(config.button.longPressMilliseconds == 2000)
        #expect(config.statusLED == "beeldzorg:status")
    }

    @Test func defaultsFillWhatAMinimalFileLeavesOut() throws {
        let config = try Configuration.parse(minimalConfiguration)
        #expect(config.centrale.policy == .ringAll)
        #expect(config.centrale.deadlineSeconds == 60)
        #expect(config.button.device == "/dev/beeldzorg/button")
        #expect(config.button.keyCode == 28)
        #expect(config.camera.width == 640 && config.camera.height == 480 && config.camera.framesPerSecond == 25)
        #expect(config.audio.echoCancellation)
        #expect(config.controlSocket == "/run/beeldzorg/control.sock")
        #expect(!config.demoCentrale)
    }

    @Test func aMisspeltKeyIsNamedWithItsLine() {
        let text = minimalConfiguration + "\n  polcy: hunt\n"
        #expect(throws: ConfigError(key: "centrale.polcy", line: 10, message: "unknown key")) {
            try Configuration.parse(text)
        }
    }

    @Test func aWrongTypeNamesTheKeyAndLine() {
        let text = minimalConfiguration.replacingOccurrences(of: "transport: udp", with: "transport: udp\nbutton:\n  long_press_ms: lang")
        do {
            _ = try Configuration.parse(text)
            Issue.record("a non-number long_press_ms was accepted")
        } catch {
            #expect(error.key == "button.long_press_ms")
            #expect(error.line == 6)
            #expect(error.message.contains("whole number"))
        }
    }

    @Test func outOfRangeAndUnknownChoicesAreRefused() {
        #expect(throws: ConfigError.self) {
            try Configuration.parse(minimalConfiguration + "\n  deadline_seconds: 3\n")
        }
        do {
            _ = try Configuration.parse(minimalConfiguration.replacingOccurrences(of: "transport: udp", with: "transport: carrier-pigeon"))
            Issue.record("an unknown transport was accepted")
        } catch {
            #expect(error.key == "transport")
            #expect(error.message.contains("udp, tcp, tls"))
        }
    }

    @Test func tlsNeedsAPinnedCAAndSRTP() {
        let tls = minimalConfiguration.replacingOccurrences(of: "transport: udp\nsrtp: off", with: "transport: tls")
        #expect(throws: ConfigError.self) { try Configuration.parse(tls) }
        let tlsNoSRTP = tls + "\nca_file: /etc/ca.pem\nsrtp: off\n"
        do {
            _ = try Configuration.parse(tlsNoSRTP)
            Issue.record("TLS without SRTP was accepted")
        } catch {
            #expect(error.key == "srtp")
        }
    }

    @Test func aCentraleWithoutPostsIsRefused() {
        let text = """
            account: {user: t, domain: d}
            transport: udp
            centrale:
              posts: []
            """
        do {
            _ = try Configuration.parse(text)
            Issue.record("no posts was accepted")
        } catch {
            #expect(error.key == "centrale.posts")
        }
    }

    @Test func badPostAddressesAndDuplicateIdsAreRefused() {
        let badURI = minimalConfiguration.replacingOccurrences(of: "sip:post1@127.0.0.1:5070", with: "post1")
        #expect(throws: ConfigError.self) { try Configuration.parse(badURI) }
        let duplicate = minimalConfiguration + "\n    - id: p1\n      uri: sip:p@h\n"
        do {
            _ = try Configuration.parse(duplicate)
            Issue.record("a duplicate post id was accepted")
        } catch {
            #expect(error.key == "centrale.posts[1].id")
        }
    }

    @Test func brokenYAMLGivesTheLine() {
        let text = "account:\n  user: [unclosed\n  domain: x\n"
        do {
            _ = try Configuration.parse(text)
            Issue.record("broken YAML was accepted")
        } catch {
            #expect(error.line != nil)
            #expect(error.message.hasPrefix("not valid YAML"))
        }
    }

    @Test func aMissingFileSaysSo() {
        do {
            _ = try Configuration.load(path: "/nonexistent/beeldzorgd.yaml")
            Issue.record("a missing file loaded")
        } catch {
            #expect(error.message.contains("cannot read /nonexistent/beeldzorgd.yaml"))
        }
    }

    @Test func anEmptyFileIsRefused() {
        #expect(throws: ConfigError(key: "", line: nil, message: "the file is empty")) {
            try Configuration.parse("")
        }
    }
}
