import Foundation
@testable import Store

/// A fresh directory under the system temp dir, removed by `cleanup()`.
struct TempDir {
    let path: String

    init() throws {
        path = NSTemporaryDirectory() + "beeldzorg-store-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    var dbPath: String { path + "/beeldzorg.sqlite" }

    func cleanup() {
        try? FileManager.default.removeItem(atPath: path)
    }

    func files() throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: path).sorted()
    }
}

/// Whole-second dates: the database keeps milliseconds, so these round-trip exactly.
func t(_ seconds: Int) -> Date {
    Date(timeIntervalSince1970: 1_800_000_000 + TimeInterval(seconds))
}

func contact(
    _ id: String, _ name: String, _ uri: String, role: ContactRole = .family, order: Int,
    autoAnswer: Int? = nil
) -> Contact {
    Contact(
        id: id, displayName: name, sipURI: uri, role: role, autoAnswerSeconds: autoAnswer,
        photoRef: nil, sortOrder: order)
}
