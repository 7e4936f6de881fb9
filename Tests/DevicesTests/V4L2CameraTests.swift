@testable import Devices
import Foundation
import Testing

@Suite("V4L2 camera (no /dev/video here: the parts that do not need one)")
struct V4L2CameraTests {
    @Test func packsPaddedRowsIntoTightI420() {
        // 4x2 image with 8-byte rows: Y rows then U and V rows at half the stride.
        let width = 4, height = 2, stride = 8
        var source = [UInt8](repeating: 0xEE, count: stride * height + 2 * (stride / 2) * (height / 2))
        for x in 0..<width { source[x] = UInt8(x); source[stride + x] = UInt8(10 + x) }
        let uStart = stride * height, vStart = uStart + stride / 2
        source[uStart] = 100; source[uStart + 1] = 101
        source[vStart] = 200; source[vStart + 1] = 201
        let packed = source.withUnsafeBytes { packI420($0, width: width, height: height, bytesPerLine: stride) }
        #expect(packed == [0, 1, 2, 3, 10, 11, 12, 13, 100, 101, 200, 201])
    }

    @Test func tightBuffersAreCopiedAsIsAndShortOnesRejected() {
        let tight = (0..<(6 * 4 * 3 / 2)).map { UInt8($0) }
        #expect(tight.withUnsafeBytes { packI420($0, width: 6, height: 4, bytesPerLine: 6) } == tight)
        #expect(tight.dropLast().withUnsafeBytes { packI420($0, width: 6, height: 4, bytesPerLine: 6) } == nil)
    }

    @Test func listsVideoNodesInNumericOrder() {
        let dir = TempDir()
        defer { dir.cleanup() }
        for name in ["video11", "video2", "video0", "vhci", "videox"] {
            _ = FileManager.default.createFile(atPath: dir.file(name), contents: Data())
        }
        #expect(V4L2Camera.videoNodes(in: dir.path) == ["video0", "video2", "video11"].map(dir.file))
    }

    @Test func noCameraIsNotFound() {
        let dir = TempDir()
        defer { dir.cleanup() }
        let camera = V4L2Camera(configuration: V4L2CameraConfiguration(devicePath: dir.file("camera"), deviceDirectory: dir.path))
        do {
            _ = try camera.open(CameraFormat())
            Issue.record("opened a camera that does not exist")
        } catch let error as DeviceError {
            #expect(error.kind == .notFound)
        } catch {
            Issue.record("unexpected \(error)")
        }
        #expect(throws: DeviceError.self) { try camera.nextFrame() }
        camera.close()
    }

    @Test func aFileThatIsNotACameraIsRejected() {
        let dir = TempDir()
        defer { dir.cleanup() }
        _ = FileManager.default.createFile(atPath: dir.file("camera"), contents: Data("not a camera".utf8))
        let camera = V4L2Camera(configuration: V4L2CameraConfiguration(devicePath: dir.file("camera"), deviceDirectory: dir.path))
        do {
            _ = try camera.open(CameraFormat())
            Issue.record("a regular file passed for a camera")
        } catch let error as DeviceError {
            #expect(error.kind == .unsupported, "\(error)")
            #expect(error.detail.hasPrefix("v4l2_open"), "libv4l2 queries the capabilities itself")
        } catch {
            Issue.record("unexpected \(error)")
        }
    }
}
