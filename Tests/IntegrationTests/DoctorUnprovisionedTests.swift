import Foundation
import Testing

/// `beeldzorgctl doctor` on a tablet that was never provisioned (no configuration file, so
/// systemd skips beeldzorgd): it advises provisioning, not `systemctl start beeldzorgd`, which
/// would be skipped and which the `tech` user may not run anyway.
@Suite struct DoctorUnprovisionedTests {
    @Test func doctorOnAnUnprovisionedTabletAdvisesProvisioning() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("bz-unprov-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let config = directory.appendingPathComponent("beeldzorgd.yaml").path  // never written
        let socket = directory.appendingPathComponent("control.sock").path

        let json = try runCtl(["doctor", "--config", config, "--json"], socket: socket)
        let answer = try #require(try JSONSerialization.jsonObject(with: Data(json.output.utf8)) as? [String: Any], "\(json.output)")
        let checks = try #require(answer["checks"] as? [[String: Any]])
        let daemon = try #require(checks.first { $0["name"] as? String == "daemon" })
        #expect(daemon["ok"] as? Bool == false)
        let fix = try #require(daemon["fix"] as? String)
        #expect(fix.contains("not provisioned") && fix.contains("beeldzorg/provision/"), "\(fix)")
        #expect(!fix.contains("systemctl start"), "\(fix)")
        // No check on an unprovisioned tablet advises starting the daemon.
        #expect(!json.output.contains("systemctl start beeldzorgd"), "\(json.output)")
    }
}
