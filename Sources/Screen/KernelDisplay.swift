// The panel through the kernel: DRM/KMS with dumb buffers (libdrm), or the Linux framebuffer
// as the fallback. The only file that imports CDRM.

private import CDRM
import Foundation
import Synchronization

/// Opens the configured display. `auto` tries the DRM card nodes, then `/dev/fb0`; a path
/// under `/dev/dri/` is DRM, any other path is a framebuffer device.
public enum KernelDisplay {
    public static func open(_ device: String) throws(ScreenOutputError) -> any ScreenOutput {
        if device == "auto" {
            var reasons: [String] = []
            for card in ["/dev/dri/card0", "/dev/dri/card1", "/dev/dri/card2"] {
                do {
                    return try DRMOutput(path: card)
                } catch {
                    reasons.append(error.description)
                }
            }
            do {
                return try FramebufferOutput(path: "/dev/fb0")
            } catch {
                reasons.append(error.description)
            }
            throw ScreenOutputError(device: "auto", detail: "no usable display (" + reasons.joined(separator: "; ") + ")")
        }
        if device.hasPrefix("/dev/dri/") { return try DRMOutput(path: device) }
        return try FramebufferOutput(path: device)
    }

    fileprivate static func errno(_ what: String) -> String {
        let code = Glibc.errno
        return "\(what): \(String(cString: strerror(code))) (errno \(code))"
    }
}

/// One connector of a DRM/KMS device: the first connected connector, its preferred mode,
/// two XRGB8888 dumb buffers, a modeset at open, and a page flip per frame (waiting for the
/// previous flip so a frame is never torn). If the driver refuses page flips, the frame is
/// shown with a CRTC set instead. The previous CRTC is restored at close.
public final class DRMOutput: ScreenOutput {
    public let width: Int
    public let height: Int
    public let description: String
    private let fd: Int32
    private let path: String
    private let crtcID: UInt32
    private let connectorID: UInt32
    private struct Buffer {
        var handle: UInt32
        var framebuffer: UInt32
        var pitch: Int
        var size: Int
        var memory: UnsafeMutableRawPointer
    }
    private struct State {
        var buffers: [Buffer]
        var front = 0
        var flipPending = false
        var flipWorks = true
        var savedCrtc: UnsafeMutablePointer<drmModeCrtc>?
        var mode: drmModeModeInfo
        var closed = false
    }
    private let state: Mutex<State>

    public init(path: String) throws(ScreenOutputError) {
        self.path = path
        func fail(_ detail: String) -> ScreenOutputError { ScreenOutputError(device: path, detail: detail) }
        let fd = Glibc.open(path, O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { throw fail(KernelDisplay.errno("cannot open")) }
        var buffers: [Buffer] = []
        var saved: UnsafeMutablePointer<drmModeCrtc>?
        func cleanUp() {
            for buffer in buffers { Self.release(buffer, fd: fd) }
            if let saved { drmModeFreeCrtc(saved) }
            Glibc.close(fd)
        }
        guard let resources = drmModeGetResources(fd) else {
            cleanUp()
            throw fail("not a DRM/KMS device (" + KernelDisplay.errno("drmModeGetResources") + ")")
        }
        defer { drmModeFreeResources(resources) }
        // The first connected connector with at least one mode.
        var chosen: (connector: UInt32, mode: drmModeModeInfo, encoder: UInt32, possibleEncoders: [UInt32])?
        for index in 0..<Int(resources.pointee.count_connectors) {
            guard let connector = drmModeGetConnector(fd, resources.pointee.connectors[index]) else { continue }
            defer { drmModeFreeConnector(connector) }
            guard cdrm_connected(connector) != 0, connector.pointee.count_modes > 0 else { continue }
            let modes = (0..<Int(connector.pointee.count_modes)).map { connector.pointee.modes[$0] }
            let mode = modes.first(where: { withUnsafePointer(to: $0) { cdrm_mode_preferred($0) != 0 } }) ?? modes[0]
            let encoders = (0..<Int(connector.pointee.count_encoders)).map { connector.pointee.encoders[$0] }
            chosen = (connector.pointee.connector_id, mode, connector.pointee.encoder_id, encoders)
            break
        }
        guard let chosen else {
            cleanUp()
            throw fail("no connected connector with a mode")
        }
        // The CRTC: the one the connector's encoder drives now, else any its encoders can use.
        var crtc: UInt32 = 0
        if chosen.encoder != 0, let encoder = drmModeGetEncoder(fd, chosen.encoder) {
            crtc = encoder.pointee.crtc_id
            drmModeFreeEncoder(encoder)
        }
        if crtc == 0 {
            search: for encoderID in chosen.possibleEncoders {
                guard let encoder = drmModeGetEncoder(fd, encoderID) else { continue }
                defer { drmModeFreeEncoder(encoder) }
                for index in 0..<Int(resources.pointee.count_crtcs) where encoder.pointee.possible_crtcs & (1 << UInt32(index)) != 0 {
                    crtc = resources.pointee.crtcs[index]
                    break search
                }
            }
        }
        guard crtc != 0 else {
            cleanUp()
            throw fail("no CRTC can drive connector \(chosen.connector)")
        }
        let width = Int(chosen.mode.hdisplay), height = Int(chosen.mode.vdisplay)
        for _ in 0..<2 {
            var handle: UInt32 = 0, pitch: UInt32 = 0, size: UInt64 = 0
            guard cdrm_create_dumb(fd, UInt32(width), UInt32(height), &handle, &pitch, &size) == 0 else {
                let reason = KernelDisplay.errno("cannot create a dumb buffer")
                cleanUp()
                throw fail(reason)
            }
            var framebuffer: UInt32 = 0
            guard drmModeAddFB(fd, UInt32(width), UInt32(height), 24, 32, pitch, handle, &framebuffer) == 0 else {
                let reason = KernelDisplay.errno("drmModeAddFB")
                _ = cdrm_destroy_dumb(fd, handle)
                cleanUp()
                throw fail(reason)
            }
            var offset: UInt64 = 0
            guard cdrm_map_dumb(fd, handle, &offset) == 0,
                  let memory = mmap(nil, Int(size), PROT_READ | PROT_WRITE, MAP_SHARED, fd, off_t(offset)),
                  memory != MAP_FAILED else {
                let reason = KernelDisplay.errno("cannot map a dumb buffer")
                drmModeRmFB(fd, framebuffer)
                _ = cdrm_destroy_dumb(fd, handle)
                cleanUp()
                throw fail(reason)
            }
            memset(memory, 0, Int(size))
            buffers.append(Buffer(handle: handle, framebuffer: framebuffer, pitch: Int(pitch), size: Int(size), memory: memory))
        }
        saved = drmModeGetCrtc(fd, crtc)
        var connector = chosen.connector
        var mode = chosen.mode
        guard drmModeSetCrtc(fd, crtc, buffers[0].framebuffer, 0, 0, &connector, 1, &mode) == 0 else {
            let reason = KernelDisplay.errno("modeset failed (is another program, e.g. a console or compositor, the DRM master?)")
            cleanUp()
            throw fail(reason)
        }
        self.fd = fd
        self.width = width
        self.height = height
        crtcID = crtc
        connectorID = chosen.connector
        let name = withUnsafeBytes(of: mode.name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        description = "DRM \(path) connector \(chosen.connector) \(name)@\(mode.vrefresh)"
        state = Mutex(State(buffers: buffers, savedCrtc: saved, mode: mode))
    }

    deinit { close() }

    public func present(_ image: ScreenImage) throws(ScreenOutputError) {
        precondition(image.width == width && image.height == height, "render at the output's size")
        let result: Result<Void, ScreenOutputError> = state.withLock { state in
            guard !state.closed else { return .failure(ScreenOutputError(device: path, detail: "closed")) }
            if state.flipPending {
                // One flip in flight at a time. A flip whose event does not come within
                // 100 ms (many frames) is taken as lost rather than blocking the screen.
                _ = cdrm_wait_flip(fd, 100)
                state.flipPending = false
            }
            let back = 1 - state.front
            let buffer = state.buffers[back]
            Self.copy(image, into: buffer)
            if state.flipWorks {
                if drmModePageFlip(fd, crtcID, buffer.framebuffer, cdrm_page_flip_event(), nil) == 0 {
                    state.flipPending = true
                    state.front = back
                    return .success(())
                }
                // Some drivers cannot flip: set the CRTC per frame from now on. (EBUSY is a
                // flip still queued after all: only this frame goes the slow way.)
                if Glibc.errno != EBUSY { state.flipWorks = false }
            }
            var connector = connectorID
            guard drmModeSetCrtc(fd, crtcID, buffer.framebuffer, 0, 0, &connector, 1, &state.mode) == 0 else {
                return .failure(ScreenOutputError(device: path, detail: KernelDisplay.errno("drmModeSetCrtc")))
            }
            state.front = back
            return .success(())
        }
        try result.get()
    }

    public func close() {
        state.withLock { state in
            guard !state.closed else { return }
            state.closed = true
            if state.flipPending { _ = cdrm_wait_flip(fd, 100) }
            if let saved = state.savedCrtc {
                var connector = connectorID
                var mode = saved.pointee.mode
                _ = drmModeSetCrtc(fd, saved.pointee.crtc_id, saved.pointee.buffer_id, saved.pointee.x, saved.pointee.y,
                                   &connector, 1, &mode)
                drmModeFreeCrtc(saved)
            }
            for buffer in state.buffers { Self.release(buffer, fd: fd) }
            Glibc.close(fd)
        }
    }

    private static func release(_ buffer: Buffer, fd: Int32) {
        munmap(buffer.memory, buffer.size)
        drmModeRmFB(fd, buffer.framebuffer)
        _ = cdrm_destroy_dumb(fd, buffer.handle)
    }

    private static func copy(_ image: ScreenImage, into buffer: Buffer) {
        image.pixels.withUnsafeBytes { source in
            let rowBytes = image.width * 4
            for row in 0..<image.height {
                memcpy(buffer.memory + row * buffer.pitch, source.baseAddress! + row * rowBytes, rowBytes)
            }
        }
    }
}

/// The Linux framebuffer (`/dev/fb0`): for panels without a KMS driver. 32 bits per pixel
/// only (XRGB8888, what simplefb/efifb/vesafb give at that depth); one buffer, copied row by
/// row, so a frame can tear — acceptable for a fallback.
public final class FramebufferOutput: ScreenOutput {
    public let width: Int
    public let height: Int
    public let description: String
    private let fd: Int32
    private let path: String
    private let lineLength: Int
    // Written once in init, unmapped once in close() behind `closed`.
    nonisolated(unsafe) private let mapping: (memory: UnsafeMutableRawPointer, length: Int)
    private let closed = Mutex(false)

    public init(path: String) throws(ScreenOutputError) {
        self.path = path
        func fail(_ detail: String) -> ScreenOutputError { ScreenOutputError(device: path, detail: detail) }
        let fd = Glibc.open(path, O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { throw fail(KernelDisplay.errno("cannot open")) }
        var variable = fb_var_screeninfo()
        var fixed = fb_fix_screeninfo()
        guard cdrm_fb_ioctl(fd, cdrm_FBIOGET_VSCREENINFO(), &variable) == 0 else {
            let reason = KernelDisplay.errno("not a framebuffer device (FBIOGET_VSCREENINFO)")
            Glibc.close(fd)
            throw fail(reason)
        }
        guard cdrm_fb_ioctl(fd, cdrm_FBIOGET_FSCREENINFO(), &fixed) == 0 else {
            let reason = KernelDisplay.errno("FBIOGET_FSCREENINFO")
            Glibc.close(fd)
            throw fail(reason)
        }
        guard variable.bits_per_pixel == 32, variable.red.offset == 16, variable.green.offset == 8,
              variable.blue.offset == 0 else {
            Glibc.close(fd)
            throw fail("unsupported pixel format: \(variable.bits_per_pixel) bpp, red at bit \(variable.red.offset) (XRGB8888 needed)")
        }
        let length = Int(fixed.smem_len)
        guard let memory = mmap(nil, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), memory != MAP_FAILED else {
            let reason = KernelDisplay.errno("cannot map the framebuffer")
            Glibc.close(fd)
            throw fail(reason)
        }
        self.fd = fd
        width = Int(variable.xres)
        height = Int(variable.yres)
        lineLength = Int(fixed.line_length)
        mapping = (memory, length)
        description = "framebuffer \(path) \(width)×\(height)"
    }

    deinit { close() }

    public func present(_ image: ScreenImage) throws(ScreenOutputError) {
        precondition(image.width == width && image.height == height, "render at the output's size")
        guard !closed.withLock({ $0 }) else { throw ScreenOutputError(device: path, detail: "closed") }
        image.pixels.withUnsafeBytes { source in
            let rowBytes = image.width * 4
            for row in 0..<image.height where (row + 1) * lineLength <= mapping.length {
                memcpy(mapping.memory + row * lineLength, source.baseAddress! + row * rowBytes, rowBytes)
            }
        }
    }

    public func close() {
        let first = closed.withLock { closed in
            defer { closed = true }
            return !closed
        }
        guard first else { return }
        munmap(mapping.memory, mapping.length)
        Glibc.close(fd)
    }
}
