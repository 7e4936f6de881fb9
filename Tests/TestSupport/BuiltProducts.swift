public import Foundation

/// Where the package's built executables (beeldzorgd, beeldzorgctl, sip-benchmark, …) are for a
/// test that runs them: the first directory above the test bundle that holds `beeldzorgd`,
/// else `.build/debug` under the current directory.
public enum BuiltProducts {
    public static let directory: URL = {
        var url = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        while url.pathComponents.count > 1 {
            url.deleteLastPathComponent()
            if FileManager.default.isExecutableFile(atPath: url.appendingPathComponent("beeldzorgd").path) {
                return url
            }
        }
        return URL(fileURLWithPath: FileManager.default.currentDirectoryPath).appendingPathComponent(".build/debug")
    }()

    /// The executable `name` in `directory`.
    public static func path(_ name: String) -> String { directory.appendingPathComponent(name).path }

    /// The package's root (for `prompts/` and other checked-in files).
    public static var packageRoot: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }
}
