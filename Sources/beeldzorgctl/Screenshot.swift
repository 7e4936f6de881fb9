import ArgumentParser
import Control
import Foundation

/// `beeldzorgctl screenshot FILE.png`: what the client sees right now, for a field
/// technician's report or a test. The daemon sends the PNG over the control socket and this
/// command writes it, so the daemon never writes a file a client names.
struct ScreenshotCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "screenshot",
        abstract: "Save exactly what is on the tablet's screen now as a PNG file."
    )

    @OptionGroup var connection: ConnectionOptions

    @Argument(help: "Where to write the PNG (overwritten if it exists).")
    var file: String

    func validate() throws {
        guard file.lowercased().hasSuffix(".png") else {
            throw ValidationError("the file name must end in .png")
        }
    }

    func run() throws {
        let response = try connection.send(ControlRequest(cmd: .screenshot))
        let result: ScreenshotResult
        do {
            result = try response.decodeResult(ScreenshotResult.self)
        } catch {
            connection.report(error: "the daemon's screenshot could not be read: \(error)", code: "malformed")
            throw ExitStatus.problem
        }
        guard let png = result.pngData else {
            connection.report(error: "the daemon's screenshot is not valid base64", code: "malformed")
            throw ExitStatus.problem
        }
        do {
            try png.write(to: URL(fileURLWithPath: file), options: .atomic)
        } catch {
            connection.report(error: "cannot write \(file): \(error.localizedDescription)", code: "io")
            throw ExitStatus.problem
        }
        if connection.json {
            let object: [String: Any] = ["file": file, "width": result.width, "height": result.height,
                                         "output": result.output, "phase": result.phase, "bytes": png.count]
            if let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) {
                print(String(decoding: data, as: UTF8.self))
            }
        } else {
            print("saved \(file): \(result.width)×\(result.height), \(result.output), call \(result.phase)")
        }
    }
}
